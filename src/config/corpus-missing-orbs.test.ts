// Corpus configs that use an orb version the corpus does not hold: each fails with an error that
// names the missing orb and version and says how to import it, as a server without that orb would.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileConfig } from './index.js';
import { corpusOrbResolver, corpusResolvesAll, CORPUS_DIR } from './corpus-orbs.js';

const present = existsSync(join(CORPUS_DIR, 'INDEX.tsv'));

describe.skipIf(!present)('corpus configs whose orbs the corpus lacks', () => {
  it('fail naming the orb and version, with the import command', async () => {
    const rows = readFileSync(join(CORPUS_DIR, 'INDEX.tsv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t'))
      .map((c) => ({ file: c[0]!, validity: c[6]!, orbs: (c[8] ?? '').split(' ').filter(Boolean) }))
      .filter((r) => r.validity.startsWith('valid') && r.orbs.length > 0 && !corpusResolvesAll(r.orbs));
    expect(rows.length).toBeGreaterThan(10);
    const resolver = corpusOrbResolver();
    for (const row of rows) {
      const source = readFileSync(join(CORPUS_DIR, 'configs', row.file), 'utf8');
      const r = await compileConfig(source, { orbResolver: resolver });
      expect(r.ok, row.file).toBe(false);
      if (r.ok) continue;
      const unknown = r.errors.filter((e) => e.code === 'TORUS_E_CONFIG_UNKNOWN_ORB');
      expect(unknown.length, `${row.file}: ${r.errors.map((e) => e.message).join('; ')}`).toBeGreaterThan(0);
      for (const e of unknown) {
        // e.g. `orb circleci/node@5.2.0 (alias "node") is not available … torus admin import-orb circleci/node@5.2.0`
        const text = `${e.message} ${e.hint ?? ''}`;
        const ref =
          /torus admin import-orb (\S+?)\)?$/m.exec(text)?.[1] ??
          /torus admin import-orb (\S+)/.exec(text)?.[1];
        expect(ref, text).toBeTruthy();
        expect(text).toContain(`orb ${ref!.replace(/[).,]+$/, '')} (`);
      }
      // the missing reference the index names is among those reported
      const missing = row.orbs.map((o) => o.split('=')[1]!).filter((ref) => !corpusResolvesAll([`x=${ref}`]));
      const reported = unknown.map((e) => e.message).join('\n');
      expect(
        missing.some((ref) => reported.includes(ref.replace(/@volatile$/, ''))),
        `${row.file}: ${reported}`,
      ).toBe(true);
    }
    console.log(
      `corpus configs needing an orb the corpus lacks: ${rows.length}, each refused naming the orb`,
    );
  });
});
