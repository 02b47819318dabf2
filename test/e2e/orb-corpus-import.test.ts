// Issue 5's check, end to end: every corpus orb imported by `torus admin import-orb` from an
// upstream registry (the fake, serving ../shared/corpus/orbs) through a real tinyproxy with
// BasicAuth, then the corpus configs that use them processed by the running server's
// `POST /api/v2/compile-config-with-defaults` (what `circleci config process --host` sends) exactly
// as the corpus' own resolver processes them in this process.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileConfig } from '../../src/config/index.js';
import { corpusOrbResolver, CORPUS_DIR } from '../../src/config/corpus-orbs.js';
import { CORPUS_PIPELINE_VALUES, readTsvRows } from '../harness/corpus.js';
import { startFakeOrbUpstream, type FakeOrbUpstream } from '../fakes/orb-upstream.js';
import { requireTinyproxy, startTinyproxy, type TestTinyproxy } from '../harness/tinyproxy.js';
import { NODE_FLAGS } from '../../src/ops/node-flags.js';
import { startTorusServer, TORUS_BIN, type TorusProcess } from '../harness/torus.js';

const present = existsSync(join(CORPUS_DIR, 'orbs', 'INDEX.tsv'));
const hasTinyproxy = present && requireTinyproxy('importing every corpus orb through a real tinyproxy');

function run(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...NODE_FLAGS, TORUS_BIN, ...args],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
        timeout: 300_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }),
    );
  });
}

describe.runIf(hasTinyproxy)(
  'every corpus orb imported through a proxy, then corpus configs processed by the server',
  () => {
    let fake: FakeOrbUpstream;
    let proxy: TestTinyproxy;
    let server: TorusProcess | undefined;
    const dataDir = mkdtempSync(join(tmpdir(), 'torus-orb-corpus-'));

    beforeAll(async () => {
      fake = await startFakeOrbUpstream();
      proxy = await startTinyproxy({ user: 'ops', password: 'corpus-proxy-pw' });
    });
    afterAll(async () => {
      await server?.kill('SIGTERM');
      await proxy?.stop();
      await fake?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('imports every orb the upstream serves, every request through tinyproxy', async () => {
      const namespaces = [...new Set(fake.orbNames().map((n) => n.split('/')[0]!))];
      const versions = fake.orbNames().reduce((n, orb) => n + fake.versionsOf(orb).length, 0);
      const imported = await run(['admin', 'import-orb', ...namespaces, '--upstream', fake.url], {
        TORUS_DATA_DIR: dataDir,
        TORUS_PORT: '9', // nothing listens there: no embedded server holds the database
        HTTP_PROXY: proxy.url(),
        NO_PROXY: '',
      });
      expect(imported.out).not.toContain('corpus-proxy-pw');
      expect(imported.code, imported.out).toBe(0);
      expect(fake.requests.length).toBeGreaterThan(versions);
      for (const r of fake.requests) expect(r.headers.via).toMatch(/tinyproxy/);

      // the running server holds them all, as the official CLI lists them
      server = await startTorusServer({ dataDir, localAgents: 0 });
      let listed = 0;
      let after = '';
      for (;;) {
        const res = await fetch(`${server.url}/graphql-unstable`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            query: `query ($after: String!) { orbs(first: 100, after: $after, certifiedOnly: false) {
            totalCount edges { cursor node { name versions(count: 200) { version } } } pageInfo { hasNextPage } } }`,
            variables: { after },
          }),
        });
        const body = (await res.json()) as {
          data: {
            orbs: {
              edges: Array<{ cursor: string; node: { name: string; versions: Array<{ version: string }> } }>;
              pageInfo: { hasNextPage: boolean };
            };
          };
        };
        for (const e of body.data.orbs.edges) listed += e.node.versions.length;
        if (!body.data.orbs.pageInfo.hasNextPage) break;
        after = body.data.orbs.edges[body.data.orbs.edges.length - 1]!.cursor;
      }
      expect(listed).toBe(versions);
    });

    it('processes the corpus configs that use them as the corpus resolver does', async () => {
      expect(server).toBeDefined();
      const served = new Set(
        fake.orbNames().flatMap((name) => fake.versionsOf(name).map((v) => `${name}/${v}`)),
      );
      // references REFS.tsv resolves to a folder the upstream does not serve as such (not a semver)
      const unserved = new Set(
        readTsvRows(join(CORPUS_DIR, 'orbs', 'REFS.tsv'))
          .filter(([, , , , savedAs]) => savedAs !== '-' && !served.has(savedAs!))
          .map(([ref]) => ref!),
      );
      const corpus = corpusOrbResolver();
      let compared = 0;
      const differences: string[] = [];
      for (const row of readTsvRows(join(CORPUS_DIR, 'INDEX.tsv'))) {
        const refs = (row[8] ?? '')
          .split(' ')
          .filter(Boolean)
          .map((a) => a.slice(a.indexOf('=') + 1));
        if (refs.length === 0 || refs.some((r) => unserved.has(r))) continue;
        const text = readFileSync(join(CORPUS_DIR, 'configs', row[0]!), 'utf8');
        const expected = await compileConfig(text, {
          orbResolver: corpus,
          pipelineValues: CORPUS_PIPELINE_VALUES,
        });
        const res = await fetch(`${server!.url}/api/v2/compile-config-with-defaults`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ config_yaml: text, options: { pipeline_values: CORPUS_PIPELINE_VALUES } }),
        });
        expect(res.status).toBe(200);
        const got = (await res.json()) as {
          valid: boolean;
          'output-yaml': string;
          errors: { message: string }[];
        };
        const same = expected.ok
          ? got.valid && got['output-yaml'] === expected.processedYaml
          : !got.valid && got.errors.length > 0;
        if (!same)
          differences.push(
            `${row[0]}: expected ${expected.ok ? 'valid' : 'invalid'}, got ${got.valid ? 'valid' : got.errors[0]?.message}`,
          );
        compared++;
      }
      expect(differences).toEqual([]);
      expect(compared).toBeGreaterThan(40);
    });
  },
);
