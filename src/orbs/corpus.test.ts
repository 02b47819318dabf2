// End to end over the real corpus (/work/shared/corpus): every saved corpus orb version is imported
// into the registry, and every corpus config then compiles through registryOrbResolver exactly as it
// does through the corpus' own resolver (same processed output, or the same errors). The warm
// resolution time per config and the import's are measured by bench/orbs.ts.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileConfig, type CompileResult, type OrbResolver } from '../config/index.js';
import { corpusOrbResolver, CORPUS_DIR } from '../config/corpus-orbs.js';
import { databaseKinds } from '../../test/harness/db.js';
import { CORPUS_PIPELINE_VALUES, readTsvRows } from '../../test/harness/corpus.js';
import { openTestResources, type TestResources } from '../../test/api/resources.js';
import { createOrbRegistry, readOrbSource, registryOrbResolver, type ImportItem } from './index.js';
import { parseSemver } from './names.js';

const ORBS = join(CORPUS_DIR, 'orbs');
const present = existsSync(join(ORBS, 'INDEX.tsv'));

/** Every saved orb version; `skipped`: the ones whose saved version is not a semver (see below). */
function corpusOrbs(): { items: ImportItem[]; skipped: string[] } {
  const items: ImportItem[] = [];
  const skipped: string[] = [];
  for (const [, namespace, orb, version] of readTsvRows(join(ORBS, 'INDEX.tsv'))) {
    const ref = `${namespace}/${orb}@${version}`;
    // `10.x-last`, `commit-869db08`: the corpus could not establish which version these are, and a
    // registry holds semantic versions only
    if (!parseSemver(version!)) {
      skipped.push(ref);
      continue;
    }
    items.push({
      namespace: namespace!,
      orb: orb!,
      version: version!,
      source: readOrbSource(join(ORBS, namespace!, orb!, version!)),
    });
  }
  return { items, skipped };
}

/** refs REFS.tsv resolves to a saved version that is not a semver (skipped by the import) */
function refsToUnversioned(): Set<string> {
  const out = new Set<string>();
  for (const [ref, , , version, savedAs] of readTsvRows(join(ORBS, 'REFS.tsv'))) {
    if (savedAs !== '-' && version && !parseSemver(version)) out.add(ref!);
  }
  return out;
}

interface ConfigRow {
  file: string;
  orbs: string[];
}

function corpusConfigs(): ConfigRow[] {
  return readTsvRows(join(CORPUS_DIR, 'INDEX.tsv')).map((c) => ({
    file: c[0]!,
    orbs: (c[8] ?? '')
      .split(' ')
      .filter(Boolean)
      .map((a) => a.slice(a.indexOf('=') + 1)),
  }));
}

function outcome(r: CompileResult): string {
  return r.ok ? r.processedYaml : r.errors.map((e) => `${e.code} ${e.message} ${e.hint ?? ''}`).join('\n');
}

describe.skipIf(!present).each(present ? databaseKinds() : [])(
  'corpus orbs through the registry on %s',
  (kind) => {
    let res: TestResources;

    beforeAll(async () => {
      res = await openTestResources(kind);
    });
    afterAll(async () => res?.close());

    it('imports every corpus orb, and compiles every corpus config as the corpus resolver does', async () => {
      const { items, skipped } = corpusOrbs();
      const registry = createOrbRegistry(res);
      const started = performance.now();
      const summary = await registry.importOrbVersions(items, 'system');
      const importMs = performance.now() - started;
      expect(summary.versionsCreated).toHaveLength(items.length);
      expect(skipped.length).toBeLessThan(15);
      console.log(
        `corpus import on ${kind}: ${items.length} versions of ${summary.orbsCreated.length} orbs in ` +
          `${summary.namespacesCreated.length} namespaces, ${(importMs / 1000).toFixed(2)} s ` +
          `(skipped, no semver: ${skipped.join(' ')})`,
      );
      // importing again changes nothing
      expect((await registry.importOrbVersions(items, 'system')).versionsUnchanged).toHaveLength(
        items.length,
      );

      const unversioned = refsToUnversioned();
      const corpus = corpusOrbResolver();
      const resolver = registryOrbResolver(res);
      let compared = 0;
      let withOrbs = 0;
      const skippedConfigs: string[] = [];
      const differences: string[] = [];
      for (const row of corpusConfigs()) {
        if (row.orbs.some((r) => unversioned.has(r))) {
          skippedConfigs.push(row.file);
          continue;
        }
        const text = readFileSync(join(CORPUS_DIR, 'configs', row.file), 'utf8');
        const compile = (orbResolver: OrbResolver) =>
          compileConfig(text, { orbResolver, pipelineValues: CORPUS_PIPELINE_VALUES });
        const [viaCorpus, viaRegistry] = [outcome(await compile(corpus)), outcome(await compile(resolver))];
        if (viaCorpus !== viaRegistry)
          differences.push(`${row.file}:\n${viaCorpus.slice(0, 300)}\n---\n${viaRegistry.slice(0, 300)}`);
        compared++;
        if (row.orbs.length > 0) withOrbs++;
      }
      console.log(
        `corpus configs on ${kind}: ${compared} compiled alike through both resolvers (${withOrbs} with orbs); ` +
          `skipped, using an unversioned corpus orb: ${skippedConfigs.join(' ')}`,
      );
      expect(differences).toEqual([]);
      expect(withOrbs).toBeGreaterThan(40);
      expect(skippedConfigs.length).toBeLessThan(5);
    });
  },
);
