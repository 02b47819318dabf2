// The orb importer (import.ts) over real parts: the fake upstream registry serving the shared corpus
// (test/fakes/orb-upstream.ts) on a loopback port, a real tinyproxy with BasicAuth, and the
// registry on PGlite (and PostgreSQL when the harness has it).
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  mkdirSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeOrbUpstream, type FakeOrbUpstream } from '../../test/fakes/orb-upstream.js';
import { openTestResources, truncateAll, type TestResources } from '../../test/api/resources.js';
import { databaseKinds } from '../../test/harness/db.js';
import { freePort } from '../../test/harness/net.js';
import { requireTinyproxy, startTinyproxy, type TestTinyproxy } from '../../test/harness/tinyproxy.js';
import { createAccounts } from '../accounts/index.js';
import { createProxiedFetch, proxySettingsFromEnv, type ProxiedFetch } from '../ops/index.js';
import {
  createOrbRegistry,
  createUpstreamRegistry,
  exportOrbs,
  importFromDisk,
  importFromUpstream,
  OrbImportError,
  parseImportTarget,
  updateImportedOrbs,
  type OrbRegistry,
  type UpstreamRegistry,
} from './index.js';

const SOURCE = (what: string) =>
  `version: 2.1\ndescription: ${what}\ncommands:\n  hello:\n    steps:\n      - run: echo ${what}\n`;

async function rejection(p: Promise<unknown>): Promise<OrbImportError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof OrbImportError) return err;
    throw err;
  }
  throw new Error('expected the import to fail');
}

/** every version the registry holds, as `ns/orb@v` */
async function held(registry: OrbRegistry): Promise<string[]> {
  const refs: string[] = [];
  for (let after: string | null = null; ;) {
    const page = await registry.listOrbs({ includeUnlisted: true, first: 100, after }, 'system');
    for (const o of page.items)
      for (const v of await registry.listVersions(o.fullName, 'system'))
        refs.push(`${o.fullName}@${v.version}`);
    if (!page.hasNextPage) break;
    after = page.endCursor;
  }
  return refs.sort();
}

describe('import targets', () => {
  it('reads a namespace, an orb or a version, and refuses anything else clearly', () => {
    expect(parseImportTarget('circleci')).toEqual({ kind: 'namespace', namespace: 'circleci' });
    expect(parseImportTarget('circleci/node')).toEqual({ kind: 'orb', namespace: 'circleci', orb: 'node' });
    expect(parseImportTarget('circleci/node@5')).toEqual({
      kind: 'version',
      namespace: 'circleci',
      orb: 'node',
      version: '5',
    });
    expect(() => parseImportTarget('circleci/node@dev:alpha')).toThrow(/dev versions are not imported/);
    expect(() => parseImportTarget('a/b/c')).toThrow(/not something to import/);
    expect(() => parseImportTarget('circleci/node@latest')).toThrow(/not something to import/);
    expect(() => parseImportTarget('')).toThrow(/not something to import/);
  });
});

describe.each(databaseKinds())('importing orbs from an upstream registry on %s', (kind) => {
  let res: TestResources;
  let fake: FakeOrbUpstream;
  let direct: ProxiedFetch;
  let upstream: UpstreamRegistry;
  let registry: OrbRegistry;

  beforeAll(async () => {
    res = await openTestResources(kind);
    fake = await startFakeOrbUpstream();
    direct = createProxiedFetch({});
    upstream = createUpstreamRegistry({ url: fake.url, fetch: direct });
    // a small namespace of our own for failure tests
    fake.addVersion('testns/alpha', '1.0.0', SOURCE('alpha 1.0.0'));
    fake.addVersion('testns/beta', '1.0.0', SOURCE('beta 1.0.0'));
    fake.addVersion('testns/beta', '1.1.0', SOURCE('beta 1.1.0'));
    fake.addVersion('testns/gamma', '0.1.0', SOURCE('gamma 0.1.0'));
    // an orb whose newest version upstream is not YAML
    fake.addVersion('testns/broken', '1.0.0', SOURCE('fine'));
    fake.addVersion('testns/broken', '2.0.0', 'commands: [unclosed');
  });
  afterAll(async () => {
    await direct?.close();
    await fake?.close();
    await res?.close();
  });
  beforeEach(async () => {
    await truncateAll(res);
    registry = createOrbRegistry(res);
    fake.mode = 'ok';
    fake.modeFor = undefined;
    fake.requests.length = 0;
  });

  const deps = () => ({ registry, upstream, actor: 'system' as const });

  it('imports one version, also by a partial version, with the upstream’s source and date', async () => {
    const report = await importFromUpstream(deps(), parseImportTarget('circleci/node@5.2.0'));
    expect(report).toMatchObject({
      namespacesCreated: ['circleci'],
      orbsCreated: ['circleci/node'],
      versionsCreated: ['circleci/node@5.2.0'],
      versionsUnchanged: [],
    });
    expect(report.failure).toBeUndefined();
    const v = await registry.getVersion('circleci/node@5.2.0', 'public');
    expect(v?.source).toBe(fake.sourceOf('circleci/node', '5.2.0'));
    expect(v?.imported).toBe(true);
    const orb = await registry.getOrb('circleci/node', 'public');
    expect(orb).toMatchObject({ imported: true, private: false });
    // @5 is what the upstream resolves it to: 5.3.0
    const partial = await importFromUpstream(deps(), parseImportTarget('circleci/node@5'));
    expect(partial.versionsCreated).toEqual(['circleci/node@5.3.0']);
    expect(await held(registry)).toEqual(['circleci/node@5.2.0', 'circleci/node@5.3.0']);
  });

  it('imports an orb with every version, and fetches nothing already here when run again', async () => {
    const report = await importFromUpstream(deps(), parseImportTarget('circleci/slack'));
    const versions = fake.versionsOf('circleci/slack');
    expect(report.versionsCreated.sort()).toEqual(versions.map((v) => `circleci/slack@${v}`).sort());
    for (const v of versions) {
      expect((await registry.getVersion(`circleci/slack@${v}`, 'system'))?.source).toBe(
        fake.sourceOf('circleci/slack', v),
      );
    }
    fake.requests.length = 0;
    const again = await importFromUpstream(deps(), parseImportTarget('circleci/slack'));
    expect(again.versionsCreated).toEqual([]);
    expect(again.versionsUnchanged).toHaveLength(versions.length);
    // one request for the orb's version list, no source fetched again
    expect(fake.requests).toHaveLength(1);
  });

  it('imports a namespace: every orb, every version', async () => {
    const report = await importFromUpstream(deps(), parseImportTarget('codecov'));
    expect(report.orbsCreated).toEqual(['codecov/codecov']);
    expect(await held(registry)).toEqual(
      fake
        .versionsOf('codecov/codecov')
        .map((v) => `codecov/codecov@${v}`)
        .sort(),
    );
    const artsy = await importFromUpstream(deps(), parseImportTarget('artsy'));
    expect(artsy.orbsCreated).toEqual(fake.orbNames().filter((n) => n.startsWith('artsy/')));
  });

  it('serves corpus folders the corpus counts as a reference’s answer (hmpps 10.x-last) as a version', async () => {
    const report = await importFromUpstream(deps(), parseImportTarget('ministryofjustice/hmpps@10'));
    expect(report.versionsCreated).toEqual(['ministryofjustice/hmpps@10.0.0']);
    expect((await registry.getVersion('ministryofjustice/hmpps@10', 'public'))?.version).toBe('10.0.0');
  });

  it('warns about the orbs an imported orb uses that are not here', async () => {
    const alone = await importFromUpstream(deps(), parseImportTarget('infinitered'));
    expect(alone.warnings).toEqual([
      'infinitered/publish-docs@0.5.0 uses orb circleci/node@5.1.0, which is not here: ' +
        'import it too (torus admin import-orb circleci/node@5.1.0)',
    ]);
    await truncateAll(res);
    await importFromUpstream(deps(), parseImportTarget('circleci/node@5.1.0'));
    expect((await importFromUpstream(deps(), parseImportTarget('infinitered'))).warnings).toEqual([]);
  });

  it('--update fetches the versions newer than the newest here, of every imported orb', async () => {
    await importFromUpstream(deps(), parseImportTarget('circleci/slack@4.13.1'));
    await importFromUpstream(deps(), parseImportTarget('codecov/codecov'));
    // an imported orb the upstream no longer has
    await registry.importOrbVersions(
      [{ namespace: 'gone', orb: 'away', version: '1.0.0', source: SOURCE('gone') }],
      'system',
    );
    fake.addVersion('codecov/codecov', '9.0.0', SOURCE('codecov 9'));
    const report = await updateImportedOrbs(deps());
    expect(report.orbsChecked).toBe(3);
    expect(report.versionsCreated.sort()).toEqual(
      ['circleci/slack@4.15.0', 'circleci/slack@5.1.1', 'codecov/codecov@9.0.0'].sort(),
    );
    // older versions than the newest here are not an update
    expect(await registry.getVersion('circleci/slack@4.12.1', 'system')).toBeNull();
    expect(report.warnings).toEqual([expect.stringContaining('gone/away is not at')]);
    expect((await updateImportedOrbs(deps())).versionsCreated).toEqual([]);
  });

  it('refuses to import into a namespace of this server’s own', async () => {
    const org = await createAccounts(res).createOrg('acme');
    await registry.createNamespace(org.id, 'circleci', 'system');
    const err = await rejection(importFromUpstream(deps(), parseImportTarget('circleci/node@5.2.0')));
    expect(err.code).toBe('TORUS_E_CONFLICT');
    expect(err.message).toMatch(/namespace circleci exists here and was not imported/);
    expect(await held(registry)).toEqual([]);
  });

  describe('failures', () => {
    it('an unreachable upstream: a clear error naming it, nothing changed', async () => {
      const port = await freePort();
      const nowhere = createUpstreamRegistry({
        url: `http://127.0.0.1:${port}/graphql-unstable`,
        fetch: direct,
      });
      const err = await rejection(
        importFromUpstream({ ...deps(), upstream: nowhere }, parseImportTarget('circleci/node')),
      );
      expect(err.code).toBe('TORUS_E_UNAVAILABLE');
      expect(err.message).toContain(`cannot reach the upstream orb registry at http://127.0.0.1:${port}`);
      expect(err.report).toMatchObject({ versionsCreated: [], notImported: ['circleci/node'] });
      expect(await registry.listNamespaces()).toEqual([]);
    });

    it('an upstream answering garbage: a clear error, nothing changed', async () => {
      fake.mode = 'garbage';
      const err = await rejection(importFromUpstream(deps(), parseImportTarget('artsy')));
      expect(err.message).toMatch(/answered with something that is not JSON/);
      expect(err.report.notImported).toEqual(['artsy']);
      expect(await registry.listNamespaces()).toEqual([]);
    });

    it('an upstream source that is not YAML: that orb is refused whole', async () => {
      const err = await rejection(importFromUpstream(deps(), parseImportTarget('testns/broken')));
      expect(err.code).toBe('TORUS_E_BAD_REQUEST');
      expect(err.message).toMatch(/testns\/broken@2.0.0 is not valid YAML/);
      expect(await held(registry)).toEqual([]);
    });

    it('a failure part way through a namespace: exactly what was imported, and what was not', async () => {
      // the second orb's older version fails (after its listing succeeded)
      fake.modeFor = (r) => (r.variables.orbVersionRef === 'testns/beta@1.0.0' ? 'http-error' : undefined);
      const err = await rejection(importFromUpstream(deps(), parseImportTarget('testns')));
      expect(err.report).toMatchObject({
        namespacesCreated: ['testns'],
        orbsCreated: ['testns/alpha'],
        versionsCreated: ['testns/alpha@1.0.0'],
        notImported: ['testns/beta', 'testns/broken', 'testns/gamma'],
        failure: { orb: 'testns/beta', code: 'TORUS_E_UNAVAILABLE' },
      });
      expect(err.message).toContain('HTTP 502');
      // the registry holds exactly what the report says
      expect(await held(registry)).toEqual(['testns/alpha@1.0.0']);
      // running it again continues where it stopped
      fake.modeFor = undefined;
      const again = await rejection(importFromUpstream(deps(), parseImportTarget('testns')));
      // the orb whose source is not YAML stops it, after beta
      expect(again.report.versionsCreated.sort()).toEqual(['testns/beta@1.0.0', 'testns/beta@1.1.0']);
      expect(again.report.failure?.orb).toBe('testns/broken');
      expect(await held(registry)).toEqual(['testns/alpha@1.0.0', 'testns/beta@1.0.0', 'testns/beta@1.1.0']);
    });
  });
});

const hasTinyproxy = requireTinyproxy('orb import through a real tinyproxy');

describe.skipIf(!hasTinyproxy)(
  'importing through a real tinyproxy (HTTP_PROXY with BasicAuth, NO_PROXY)',
  () => {
    let res: TestResources;
    let fake: FakeOrbUpstream;
    let proxy: TestTinyproxy;
    const fetches: ProxiedFetch[] = [];

    /** an upstream client built as `torus admin import-orb` builds it: from the environment */
    const throughEnv = (env: NodeJS.ProcessEnv) => {
      const f = createProxiedFetch(proxySettingsFromEnv(env, {}));
      fetches.push(f);
      return createUpstreamRegistry({ url: fake.url, fetch: f });
    };

    beforeAll(async () => {
      res = await openTestResources('pglite');
      fake = await startFakeOrbUpstream();
      proxy = await startTinyproxy({ user: 'importer', password: 'pr0xy-pa55' });
    });
    afterAll(async () => {
      await Promise.all(fetches.map((f) => f.close()));
      await proxy?.stop();
      await fake?.close();
      await res?.close();
    });
    beforeEach(() => truncateAll(res));

    it('imports an orb through the proxy: every request went through tinyproxy', async () => {
      const registry = createOrbRegistry(res);
      fake.requests.length = 0;
      const report = await importFromUpstream(
        { registry, actor: 'system', upstream: throughEnv({ HTTP_PROXY: proxy.url() }) },
        parseImportTarget('circleci/python'),
      );
      expect(report.versionsCreated).toHaveLength(fake.versionsOf('circleci/python').length);
      expect(fake.requests.length).toBe(1 + fake.versionsOf('circleci/python').length);
      for (const r of fake.requests) expect(r.headers.via).toMatch(/tinyproxy/);
      expect(proxy.requests()).toContain(`POST ${fake.url} HTTP/1.1`);
    });

    it('goes direct for a NO_PROXY range (the proxy, without credentials, would refuse)', async () => {
      const registry = createOrbRegistry(res);
      const logged = proxy.requests().length;
      fake.requests.length = 0;
      const report = await importFromUpstream(
        {
          registry,
          actor: 'system',
          upstream: throughEnv({ HTTP_PROXY: proxy.url(null), NO_PROXY: 'circleci.com,127.0.0.0/8' }),
        },
        parseImportTarget('circleci/jq'),
      );
      expect(report.versionsCreated).toHaveLength(fake.versionsOf('circleci/jq').length);
      expect(fake.requests.every((r) => r.headers.via === undefined)).toBe(true);
      expect(proxy.requests().length).toBe(logged);
    });

    it('a proxy refusing the credentials: the error names the proxy, not the password; nothing changed', async () => {
      const registry = createOrbRegistry(res);
      const err = await rejection(
        importFromUpstream(
          { registry, actor: 'system', upstream: throughEnv({ HTTP_PROXY: proxy.url(null) }) },
          parseImportTarget('circleci/jq'),
        ),
      );
      expect(err.message).toContain(`proxy http://127.0.0.1:${proxy.port}`);
      expect(JSON.stringify(err.report)).not.toContain('pr0xy-pa55');
      expect(await registry.listNamespaces()).toEqual([]);
    });
  },
);

describe.each(databaseKinds())('export-orb and import-orb --from (air-gapped) on %s', (kind) => {
  let source: TestResources;
  let target: TestResources;
  let fake: FakeOrbUpstream;
  let direct: ProxiedFetch;
  let dir: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([openTestResources(kind), openTestResources(kind)]);
    fake = await startFakeOrbUpstream();
    direct = createProxiedFetch({});
    const upstream = createUpstreamRegistry({ url: fake.url, fetch: direct });
    const registry = createOrbRegistry(source);
    for (const t of ['circleci/slack', 'codecov', 'circleci/jq@3.0.2'])
      await importFromUpstream({ registry, upstream, actor: 'system' }, parseImportTarget(t));
  });
  afterAll(async () => {
    await direct?.close();
    await fake?.close();
    await source?.close();
    await target?.close();
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'torus-orb-export-'));
    await truncateAll(target);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function sameVersions(a: OrbRegistry, b: OrbRegistry): Promise<void> {
    const refs = await held(a);
    expect(await held(b)).toEqual(refs);
    for (const ref of refs) {
      const [x, y] = await Promise.all([a.getVersion(ref, 'system'), b.getVersion(ref, 'system')]);
      expect(y?.source).toBe(x?.source);
      expect(y?.createdAt.toISOString()).toBe(x?.createdAt.toISOString());
    }
  }

  for (const form of ['a directory', 'a .tar.gz'] as const) {
    it(`round-trips every public orb through ${form}`, async () => {
      const out = form === 'a directory' ? join(dir, 'export') : join(dir, 'orbs.tar.gz');
      const from = createOrbRegistry(source);
      const exported = await exportOrbs(from, out);
      const expected = await held(from);
      expect(exported).toMatchObject({ orbs: 3, versions: expected.length });
      if (form === 'a directory') {
        expect(readdirSync(out).sort()).toEqual(['circleci', 'codecov', 'manifest.json']);
        expect(readFileSync(join(out, 'circleci', 'jq', '3.0.2.yml'), 'utf8')).toBe(
          fake.sourceOf('circleci/jq', '3.0.2'),
        );
      }
      const to = createOrbRegistry(target);
      const report = await importFromDisk({ registry: to, actor: 'system' }, out);
      expect(report.versionsCreated.sort()).toEqual(expected);
      expect(report.namespacesCreated.sort()).toEqual(['circleci', 'codecov']);
      await sameVersions(from, to);
      expect((await to.getOrb('circleci/slack', 'public'))?.imported).toBe(true);
      // again: all here already
      const again = await importFromDisk({ registry: to, actor: 'system' }, out);
      expect(again.versionsCreated).toEqual([]);
      expect(again.versionsUnchanged).toHaveLength(expected.length);
    });
  }

  it('imports only the target from an export: a namespace, an orb, a version, @volatile', async () => {
    const out = join(dir, 'orbs.tgz');
    await exportOrbs(createOrbRegistry(source), out);
    const to = createOrbRegistry(target);
    const deps = { registry: to, actor: 'system' as const };
    expect((await importFromDisk(deps, out, parseImportTarget('circleci/slack@4'))).versionsCreated).toEqual([
      'circleci/slack@4.15.0',
    ]);
    expect((await importFromDisk(deps, out, parseImportTarget('codecov'))).versionsCreated).toHaveLength(
      fake.versionsOf('codecov/codecov').length,
    );
    expect(
      (await importFromDisk(deps, out, parseImportTarget('circleci/slack@volatile'))).versionsCreated,
    ).toEqual(['circleci/slack@5.1.1']);
    const none = await rejection(importFromDisk(deps, out, parseImportTarget('circleci/node')));
    expect(none.code).toBe('TORUS_E_NOT_FOUND');
    expect(none.message).toMatch(/holds no version of circleci\/node/);
  });

  it('exports a namespace or one orb; refuses a non-empty directory', async () => {
    const from = createOrbRegistry(source);
    expect(await exportOrbs(from, join(dir, 'one'), { namespace: 'circleci', orb: 'jq' })).toMatchObject({
      orbs: 1,
      versions: 1,
    });
    expect((await exportOrbs(from, join(dir, 'ns'), { namespace: 'circleci' })).orbs).toBe(2);
    await expect(exportOrbs(from, join(dir, 'one'))).rejects.toThrow(/is not empty/);
    await expect(exportOrbs(from, join(dir, 'x'), { namespace: 'nope' })).rejects.toThrow(
      /namespace nope not found/,
    );
  });

  it('reads a tree assembled by hand (no manifest): <ns>/<orb>/<X.Y.Z>.yml', async () => {
    mkdirSync(join(dir, 'acme', 'tools'), { recursive: true });
    writeFileSync(join(dir, 'acme', 'tools', '1.0.0.yml'), SOURCE('tools 1'));
    writeFileSync(join(dir, 'acme', 'tools', '1.1.0.yml'), SOURCE('tools 1.1'));
    const to = createOrbRegistry(target);
    const report = await importFromDisk({ registry: to, actor: 'system' }, dir);
    expect(report.versionsCreated.sort()).toEqual(['acme/tools@1.0.0', 'acme/tools@1.1.0']);
    expect((await to.getVersion('acme/tools@1', 'public'))?.source).toBe(SOURCE('tools 1.1'));
  });

  it('refuses a damaged export, and a version here with another source, changing nothing', async () => {
    const out = join(dir, 'export');
    await exportOrbs(createOrbRegistry(source), out);
    const to = createOrbRegistry(target);
    const deps = { registry: to, actor: 'system' as const };
    const file = join(out, 'circleci', 'jq', '3.0.2.yml');
    const original = readFileSync(file, 'utf8');
    writeFileSync(file, `${original}# changed\n`);
    const damaged = await rejection(importFromDisk(deps, out));
    expect(damaged.message).toMatch(
      /circleci\/jq\/3.0.2.yml \(circleci\/jq@3.0.2\) does not match its SHA-256/,
    );
    expect(await to.listNamespaces()).toEqual([]);
    writeFileSync(file, original);
    // the same version already here with a different source: the whole import is refused
    await to.importOrbVersions(
      [{ namespace: 'circleci', orb: 'jq', version: '3.0.2', source: SOURCE('other jq') }],
      'system',
    );
    const conflict = await rejection(importFromDisk(deps, out));
    expect(conflict.code).toBe('TORUS_E_CONFLICT');
    expect(conflict.report.versionsCreated).toEqual([]);
    expect(conflict.report.notImported.length).toBeGreaterThan(5);
    expect(await held(to)).toEqual(['circleci/jq@3.0.2']);
    await expect(importFromDisk(deps, join(dir, 'nothing-here'))).rejects.toThrow(/does not exist/);
    writeFileSync(join(dir, 'file.zip'), 'PK');
    await expect(importFromDisk(deps, join(dir, 'file.zip'))).rejects.toThrow(
      /neither a directory nor a .tar.gz/,
    );
    writeFileSync(join(dir, 'bad.tar.gz'), 'not gzip');
    await expect(importFromDisk(deps, join(dir, 'bad.tar.gz'))).rejects.toThrow(
      /cannot read .* as a .tar.gz/,
    );
    expect(existsSync(out)).toBe(true);
  });
});
