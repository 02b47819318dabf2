// `torus admin import-orb|export-orb` and `torus orb pack` as a user runs them: the real `torus`
// command in child processes, on the embedded database in temporary data directories, reading the
// fake upstream registry (test/fakes/orb-upstream.ts) through a real tinyproxy when it is here.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOrbUpstream, type FakeOrbUpstream } from '../../test/fakes/orb-upstream.js';
import { freePort } from '../../test/harness/net.js';
import { runTorus, type TorusRun } from '../../test/harness/torus.js';
import { requireTinyproxy, startTinyproxy, type TestTinyproxy } from '../../test/harness/tinyproxy.js';
import { CORPUS_DIR, packOrb } from '../config/corpus-orbs.js';

function torus(args: string[], env: Record<string, string>): Promise<TorusRun> {
  // nothing listens on port 9: the embedded-server check finds no server; and a fresh embedded
  // database takes a while to create on a busy machine
  return runTorus(args, { TORUS_PORT: '9', ...env }, 300_000);
}

const hasTinyproxy = requireTinyproxy('torus admin import-orb through a real tinyproxy');

describe('torus admin import-orb / export-orb', () => {
  let fake: FakeOrbUpstream;
  let proxy: TestTinyproxy | undefined;
  const dirs: string[] = [];
  const dataDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'torus-orb-cli-'));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    fake = await startFakeOrbUpstream();
    if (hasTinyproxy) proxy = await startTinyproxy({ user: 'ops', password: 'cli-proxy-pw' });
  });
  afterAll(async () => {
    await proxy?.stop();
    await fake?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('imports through HTTP_PROXY, exports to a .tar.gz, and imports that on another server', async () => {
    const first = dataDir();
    fake.requests.length = 0;
    const imported = await torus(['admin', 'import-orb', 'circleci/jq', 'artsy', '--upstream', fake.url], {
      TORUS_DATA_DIR: first,
      ...(proxy ? { HTTP_PROXY: proxy.url() } : {}),
    });
    expect(imported.stderr).toBe('');
    expect(imported.code).toBe(0);
    const jq = fake.versionsOf('circleci/jq');
    expect(imported.stdout).toContain(`Imported from ${fake.url}:`);
    expect(imported.stdout).toContain(
      `versions imported: ${jq.length}: ${jq.map((v) => `circleci/jq@${v}`).join(', ')}`,
    );
    const artsy = fake.orbNames().filter((n) => n.startsWith('artsy/'));
    expect(imported.stdout).toContain(`orbs created: ${artsy.length}: ${artsy.join(', ')}`);
    if (proxy) for (const r of fake.requests) expect(r.headers.via).toMatch(/tinyproxy/);

    const tarball = join(first, 'orbs.tar.gz');
    const exported = await torus(['admin', 'export-orb', '--out', tarball], { TORUS_DATA_DIR: first });
    expect(exported.code).toBe(0);
    const versions = jq.length + artsy.length;
    expect(exported.stdout).toContain(
      `Exported ${versions} version(s) of ${artsy.length + 1} orb(s) to ${tarball}`,
    );

    const second = dataDir();
    const fromDisk = await torus(['admin', 'import-orb', '--from', tarball], { TORUS_DATA_DIR: second });
    expect(fromDisk.code).toBe(0);
    expect(fromDisk.stdout).toContain(`Imported from ${tarball}:`);
    expect(fromDisk.stdout).toContain(`versions imported: ${versions}:`);
    expect(fromDisk.stdout).toContain('namespaces created: 2: artsy, circleci');
  }, 600_000);

  it('imports one version past the proxy (NO_PROXY), then --update fetches the newer one', async () => {
    const dir = dataDir();
    const first = await torus(['admin', 'import-orb', 'circleci/jq@2.2.0', '--upstream', fake.url], {
      TORUS_DATA_DIR: dir,
      // a proxy without credentials would refuse: only a bypass succeeds
      ...(proxy ? { HTTP_PROXY: proxy.url(null), NO_PROXY: '127.0.0.0/8' } : {}),
    });
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('versions imported: 1: circleci/jq@2.2.0');
    const update = await torus(['admin', 'import-orb', '--update', '--upstream', fake.url], {
      TORUS_DATA_DIR: dir,
    });
    expect(update.code).toBe(0);
    expect(update.stdout).toContain('versions imported: 1: circleci/jq@3.0.2');
    expect(update.stdout).toContain('orbs checked: 1');
  }, 600_000);

  it('an unreachable upstream: exit 1, the report says nothing was changed', async () => {
    const port = await freePort();
    const run = await torus(
      ['admin', 'import-orb', 'circleci/node', 'artsy', '--upstream', `http://127.0.0.1:${port}`],
      { TORUS_DATA_DIR: dataDir() },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `torus: import failed: cannot reach the upstream orb registry at http://127.0.0.1:${port}/graphql-unstable`,
    );
    expect(run.stdout).toContain('FAILED: cannot reach');
    expect(run.stdout).toContain('not imported: circleci/node');
    expect(run.stdout).toContain('nothing was changed');
    expect(run.stdout).toContain('not started: artsy');
  }, 400_000);

  it('refuses what is not a target, with a clear message', async () => {
    const run = await torus(['admin', 'import-orb', 'circleci/node@latest'], { TORUS_DATA_DIR: dataDir() });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('"circleci/node@latest" is not something to import');
  });
});

// the corpus (../shared/corpus) holds the orb sources packed here
describe.skipIf(!existsSync(join(CORPUS_DIR, 'orbs')))('torus orb pack', () => {
  it('packs an orb source tree as circleci orb pack does', async () => {
    const src = join(CORPUS_DIR, 'orbs', 'circleci', 'jq', '2.2.0', 'src');
    const run = await torus(['orb', 'pack', src], {});
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(packOrb(src));
    const missing = await torus(['orb', 'pack', join(CORPUS_DIR, 'orbs')], {});
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/@orb.yml/);
  });
});
