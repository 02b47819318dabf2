import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOrbUpstream, type FakeOrbUpstream } from '../../test/fakes/orb-upstream.js';
import { freePort } from '../../test/harness/net.js';
import { requireTinyproxy, startTinyproxy, type TestTinyproxy } from '../../test/harness/tinyproxy.js';
import { CORPUS_DIR, packOrb } from '../config/corpus-orbs.js';
import { createProxiedFetch, type ProxiedFetch } from '../ops/index.js';
import {
  DEFAULT_UPSTREAM_URL,
  NAMESPACE_ORBS_QUERY,
  ORB_VERSION_INFO_QUERY,
  UpstreamError,
  createUpstreamRegistry,
  upstreamGraphqlUrl,
  type UpstreamFetch,
  type UpstreamRegistry,
} from './upstream.js';

const QUERIES = join(CORPUS_DIR, '..', 'reference', 'circleci-cli-queries');

async function rejection(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await p;
  } catch (err) {
    return err as Error & Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}

describe('the query texts', () => {
  it.skipIf(!existsSync(QUERIES))('are the CLI’s, byte for byte', () => {
    expect(NAMESPACE_ORBS_QUERY).toBe(readFileSync(join(QUERIES, 'namespaceOrbs-orbImport.graphql'), 'utf8'));
    expect(ORB_VERSION_INFO_QUERY).toBe(readFileSync(join(QUERIES, 'orbVersion-info.graphql'), 'utf8'));
  });

  it('defaults to CircleCI and completes a bare host as the CLI does', () => {
    expect(DEFAULT_UPSTREAM_URL).toBe('https://circleci.com/graphql-unstable');
    expect(upstreamGraphqlUrl('https://circleci.example.com')).toBe(
      'https://circleci.example.com/graphql-unstable',
    );
    expect(upstreamGraphqlUrl('http://10.0.0.5:8080/custom/graphql')).toBe(
      'http://10.0.0.5:8080/custom/graphql',
    );
    expect(() => upstreamGraphqlUrl('circleci.com')).toThrow(/must be a URL/);
    expect(createUpstreamRegistry().url).toBe(DEFAULT_UPSTREAM_URL);
  });
});

describe.skipIf(!existsSync(QUERIES))('the fake upstream (test/fakes/orb-upstream.ts)', () => {
  let fake: FakeOrbUpstream;
  beforeAll(async () => {
    fake = await startFakeOrbUpstream();
  });
  afterAll(() => fake.close());

  /** sends a fixture text with its variables, names swapped for a served orb */
  async function send(fixture: string, swap: Record<string, unknown> = {}) {
    const query = readFileSync(join(QUERIES, `${fixture}.graphql`), 'utf8');
    const variables = {
      ...(JSON.parse(readFileSync(join(QUERIES, `${fixture}.variables.json`), 'utf8')) as object),
      ...swap,
    };
    const res = await fetch(fake.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ query, variables }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data?: Record<string, unknown>; errors?: unknown };
    expect(body.errors, fixture).toBeUndefined();
    return body.data!;
  }

  it('answers every query the CLI reads orbs with, in CircleCI’s shapes', async () => {
    const orb = { name: 'circleci/node', namespace: 'circleci' };
    expect(await send('orb-id', orb)).toEqual({
      orb: { id: expect.any(String) as unknown },
      registryNamespace: { id: expect.any(String) as unknown },
    });
    expect(await send('orb-exists', orb)).toMatchObject({ orb: { isPrivate: false } });
    expect(await send('registryNamespace-id', { name: 'circleci' })).toEqual({
      registryNamespace: { id: expect.any(String) as unknown },
    });
    expect(await send('registryNamespace-id', { name: 'nope' })).toEqual({ registryNamespace: null });
    expect(await send('orb-latestVersion', { name: 'circleci/node' })).toEqual({
      orb: { versions: [{ version: '7.2.1' }] },
    });
    expect(await send('orb-latestVersion', { name: 'circleci/nope' })).toEqual({ orb: null });
    const source = await send('orbVersion-source', { orbVersionRef: 'circleci/node@5.2.0' });
    expect(source).toMatchObject({
      orbVersion: { version: '5.2.0', orb: { id: expect.any(String) as unknown } },
    });
    const info = await send('orbVersion-info', { orbVersionRef: 'circleci/node@5.2.0' });
    expect(info).toMatchObject({
      orbVersion: {
        version: '5.2.0',
        orb: {
          name: 'circleci/node',
          namespace: { name: 'circleci' },
          categories: [],
          statistics: { last30DaysBuildCount: 0 },
        },
      },
    });
    expect(await send('orbVersion-info', { orbVersionRef: 'circleci/node@99.0.0' })).toEqual({
      orbVersion: null,
    });
    for (const fixture of ['ListOrbs', 'ListOrbs-uncertified']) {
      const { orbs } = (await send(fixture)) as {
        orbs: { totalCount: number; edges: { cursor: string; node: { name: string } }[]; pageInfo: unknown };
      };
      expect(orbs.edges).toHaveLength(20);
      expect(orbs.pageInfo).toEqual({ hasNextPage: true });
      const names = orbs.edges.map((e) => e.node.name);
      if (fixture === 'ListOrbs') expect(names.every((n) => n.startsWith('circleci/'))).toBe(true);
      else expect(orbs.totalCount).toBe(fake.orbNames().length);
    }
    for (const fixture of [
      'namespaceOrbs-PUBLIC_ONLY',
      'namespaceOrbs-details-PUBLIC_ONLY',
      'namespaceOrbs-orbImport',
    ]) {
      const data = (await send(fixture, { namespace: 'artsy' })) as {
        registryNamespace: {
          name: string;
          orbs: { edges: { node: { name: string; versions: unknown[] } }[] };
        };
      };
      expect(data.registryNamespace.name).toBe('artsy');
      expect(data.registryNamespace.orbs.edges.map((e) => e.node.name)).toEqual(
        fake.orbNames().filter((n) => n.startsWith('artsy/')),
      );
    }
    const priv = (await send('namespaceOrbs-PRIVATE_ONLY', { namespace: 'artsy' })) as {
      registryNamespace: { orbs: { edges: unknown[]; totalCount: number } };
    };
    expect(priv.registryNamespace.orbs).toMatchObject({ edges: [], totalCount: 0 });
  });

  it('leaves out the corpus folders whose version is not plain semver', () => {
    expect(fake.versionsOf('circleci/aws-eks')).toEqual(['1.1.0']);
    expect(fake.orbNames()).not.toContain('circleci/heroku');
    expect(fake.orbNames().some((n) => n.startsWith('ory/'))).toBe(false);
  });
});

describe('reading from an upstream registry (the fake, directly)', () => {
  let fake: FakeOrbUpstream;
  let direct: ProxiedFetch;
  let upstream: UpstreamRegistry;

  beforeAll(async () => {
    fake = await startFakeOrbUpstream();
    direct = createProxiedFetch({});
    upstream = createUpstreamRegistry({ url: fake.url, fetch: direct });
  });
  afterAll(async () => {
    await fake.close();
    await direct.close();
  });

  it('fetches one version with its packed source, sending the CLI’s request', async () => {
    fake.requests.length = 0;
    const v = await upstream.fetchOrbVersion('circleci/node@5.2.0');
    expect(v).toEqual({
      name: 'circleci/node',
      version: '5.2.0',
      source: packOrb(join(CORPUS_DIR, 'orbs/circleci/node/5.2.0/src')),
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) as unknown as string,
    });
    expect(v.source).toContain('commands:');
    const [sent] = fake.requests;
    expect(sent?.body).toBe(
      `${JSON.stringify({ query: ORB_VERSION_INFO_QUERY, variables: { orbVersionRef: 'circleci/node@5.2.0' } })}\n`,
    );
    expect(sent?.headers).toMatchObject({
      'content-type': 'application/json; charset=utf-8',
      accept: 'application/json; charset=utf-8',
      authorization: '',
    });
  });

  it('resolves partial versions and volatile as CircleCI does; no @ means @volatile', async () => {
    expect((await upstream.fetchOrbVersion('circleci/node@5')).version).toBe('5.3.0');
    expect((await upstream.fetchOrbVersion('circleci/node@5.1')).version).toBe('5.1.0');
    expect((await upstream.fetchOrbVersion('circleci/node@volatile')).version).toBe('7.2.1');
    expect((await upstream.fetchOrbVersion('circleci/node')).version).toBe('7.2.1');
    expect(fake.requests.at(-1)?.variables).toEqual({ orbVersionRef: 'circleci/node@volatile' });
  });

  it('serves a single-file orb.yml as it is', async () => {
    const v = await upstream.fetchOrbVersion('artsy/hokusai@0.26.0');
    const dir = join(CORPUS_DIR, 'orbs/artsy/hokusai/0.26.0');
    const expected = existsSync(join(dir, 'orb.yml'))
      ? readFileSync(join(dir, 'orb.yml'), 'utf8')
      : packOrb(join(dir, 'src'));
    expect(v.source).toBe(expected);
  });

  it('lists an orb’s versions, newest first', async () => {
    const orb = await upstream.fetchOrb('circleci/node');
    expect(orb.name).toBe('circleci/node');
    expect(orb.versions.map((v) => v.version)).toEqual([
      '7.2.1',
      '7.0.0',
      '6.3.0',
      '5.3.0',
      '5.2.0',
      '5.1.0',
      '5.0.0',
      '4.2.0',
      '2.1.1',
    ]);
    expect(orb.versionsCapped).toBe(false);
    expect(Date.parse(orb.createdAt)).toBeLessThan(Date.parse(orb.versions.at(-1)!.createdAt));
  });

  it('lists every orb of a namespace across pages, with all versions and the newest source', async () => {
    fake.requests.length = 0;
    const orbs = await upstream.listNamespaceOrbs('circleci');
    const expected = fake.orbNames().filter((n) => n.startsWith('circleci/'));
    expect(expected.length).toBeGreaterThan(20);
    expect(orbs.map((o) => o.name)).toEqual(expected);
    for (const orb of orbs) {
      expect(orb.versions.map((v) => v.version)).toEqual(fake.versionsOf(orb.name));
      expect(orb.latest.version).toBe(orb.versions[0]!.version);
      expect(orb.latest.source).toBe(fake.sourceOf(orb.name, orb.latest.version));
    }
    // two pages of 20, the second after the first page's last cursor, as the CLI pages
    const pages = fake.requests.filter((r) => r.query === NAMESPACE_ORBS_QUERY);
    expect(pages.map((r) => r.variables.after === '')).toEqual([true, false]);
    expect(pages[1]?.variables).toEqual({ after: expect.any(String) as unknown, namespace: 'circleci' });
  });

  it('follows pagination however small the upstream’s pages are', async () => {
    const small = await startFakeOrbUpstream({ pageSizeCap: 4 });
    try {
      const orbs = await createUpstreamRegistry({ url: small.url, fetch: direct }).listNamespaceOrbs(
        'circleci',
      );
      expect(orbs.map((o) => o.name)).toEqual(small.orbNames().filter((n) => n.startsWith('circleci/')));
      expect(small.requests.filter((r) => r.query === NAMESPACE_ORBS_QUERY).length).toBe(
        Math.ceil(orbs.length / 4),
      );
    } finally {
      await small.close();
    }
  });

  it('sees a version published upstream after the fact', async () => {
    fake.addVersion('torus-test/hello', '1.0.0', 'version: 2.1\ndescription: one\n');
    fake.addVersion('torus-test/hello', '1.1.0', 'version: 2.1\ndescription: two\n');
    const [orb] = await upstream.listNamespaceOrbs('torus-test');
    expect(orb?.versions.map((v) => v.version)).toEqual(['1.1.0', '1.0.0']);
    expect(orb?.latest.source).toBe('version: 2.1\ndescription: two\n');
  });

  describe('refuses clearly', () => {
    it('a version, an orb or a namespace that does not exist (not-found, naming it)', async () => {
      const version = await rejection(upstream.fetchOrbVersion('circleci/node@99.0.0'));
      expect(version).toBeInstanceOf(UpstreamError);
      expect(version).toMatchObject({ kind: 'not-found', code: 'TORUS_E_NOT_FOUND', upstream: fake.url });
      expect(version.message).toContain('orb circleci/node@99.0.0 does not exist');
      expect(version.message).toContain(fake.url);
      const orb = await rejection(upstream.fetchOrb('circleci/no-such-orb'));
      expect(orb).toMatchObject({ kind: 'not-found' });
      expect(orb.message).toContain('circleci/no-such-orb');
      const ns = await rejection(upstream.listNamespaceOrbs('no-such-namespace'));
      expect(ns).toMatchObject({ kind: 'not-found' });
      expect(ns.message).toContain('namespace no-such-namespace does not exist');
    });

    it('a malformed reference, without asking the upstream', async () => {
      const before = fake.requests.length;
      for (const bad of ['circleci/node@latest', 'node@1.0.0', 'a/b/c@1', 'circleci/@1']) {
        await expect(upstream.fetchOrbVersion(bad)).rejects.toMatchObject({ code: 'TORUS_E_BAD_REQUEST' });
      }
      await expect(upstream.fetchOrb('circleci')).rejects.toMatchObject({ code: 'TORUS_E_BAD_REQUEST' });
      await expect(upstream.listNamespaceOrbs('a/b')).rejects.toMatchObject({ code: 'TORUS_E_BAD_REQUEST' });
      expect(fake.requests.length).toBe(before);
    });

    it('an answer that is not JSON, not GraphQL, an HTTP error or GraphQL errors', async () => {
      const cases = [
        ['garbage', 'bad-answer', /answered with something that is not JSON \(text\/html\): <!DOCTYPE html>/],
        ['not-graphql', 'bad-answer', /did not answer as a GraphQL API does/],
        ['http-error', 'http-status', /answered HTTP 502 \(text\/html\)/],
        ['graphql-error', 'graphql', /answered with errors: Something went wrong upstream/],
      ] as const;
      try {
        for (const [mode, kind, message] of cases) {
          fake.mode = mode;
          const err = await rejection(upstream.fetchOrbVersion('circleci/node@5.2.0'));
          expect(err, mode).toBeInstanceOf(UpstreamError);
          expect(err, mode).toMatchObject({ kind, code: 'TORUS_E_UNAVAILABLE' });
          expect(err.message, mode).toMatch(message);
          expect(err.message, mode).toContain(`the upstream orb registry at ${fake.url}`);
        }
      } finally {
        fake.mode = 'ok';
      }
    });

    it('an answer in the wrong shape, naming the field', async () => {
      const stub: UpstreamFetch = () =>
        Promise.resolve({
          status: 200,
          headers: { get: () => 'application/json' },
          text: () => Promise.resolve(JSON.stringify({ data: { orbVersion: { id: 'x', version: 5 } } })),
        });
      const err = await rejection(
        createUpstreamRegistry({ url: fake.url, fetch: stub }).fetchOrbVersion('circleci/node@5.2.0'),
      );
      expect(err).toMatchObject({ kind: 'bad-answer' });
      expect(err.message).toContain('data.orbVersion.orb is not an object');
    });

    it('an upstream that hangs, drops the connection, or is not there', async () => {
      const impatient = createUpstreamRegistry({ url: fake.url, fetch: direct, timeoutMs: 200 });
      try {
        fake.mode = 'hang';
        const hung = await rejection(impatient.fetchOrbVersion('circleci/node@5.2.0'));
        expect(hung).toMatchObject({ kind: 'unreachable' });
        expect(hung.message).toContain(`${fake.url} did not answer within 200 ms`);
        fake.mode = 'drop';
        const dropped = await rejection(upstream.fetchOrbVersion('circleci/node@5.2.0'));
        expect(dropped).toMatchObject({ kind: 'unreachable' });
        expect(dropped.message).toBe(
          `cannot reach the upstream orb registry at ${fake.url}: other side closed (UND_ERR_SOCKET)`,
        );
      } finally {
        fake.mode = 'ok';
      }
      const gone = `http://127.0.0.1:${await freePort()}/graphql-unstable`;
      const err = await rejection(
        createUpstreamRegistry({ url: gone, fetch: direct }).fetchOrb('circleci/node'),
      );
      expect(err).toMatchObject({ kind: 'unreachable', code: 'TORUS_E_UNAVAILABLE', upstream: gone });
      expect(err.message).toMatch(
        new RegExp(`^cannot reach the upstream orb registry at ${gone}: .*ECONNREFUSED`),
      );
    });

    it('sends a query again when its connection was closed under it (as proxies do), up to 3 times', async () => {
      let drops = 2;
      fake.modeFor = () => (drops-- > 0 ? 'drop' : undefined);
      const before = fake.requests.length;
      try {
        const v = await upstream.fetchOrbVersion('circleci/node@5.2.0');
        expect(v.version).toBe('5.2.0');
        expect(fake.requests.length - before).toBe(3);
        drops = 3;
        const err = await rejection(upstream.fetchOrbVersion('circleci/node@5.2.0'));
        expect(err).toMatchObject({ kind: 'unreachable' });
        expect(fake.requests.length - before).toBe(6);
      } finally {
        fake.modeFor = undefined;
      }
    });

    it('a namespace listing that fails part way, with no partial result', async () => {
      fake.modeFor = (r) =>
        r.variables.orbVersionRef === 'circleci/docker@volatile' ? 'http-error' : undefined;
      try {
        const err = await rejection(upstream.listNamespaceOrbs('circleci'));
        expect(err).toMatchObject({ kind: 'http-status' });
      } finally {
        fake.modeFor = undefined;
      }
    });
  });
});

const hasTinyproxy = requireTinyproxy('upstream orb registry through a real tinyproxy');

describe.skipIf(!hasTinyproxy)('reading from an upstream registry through a real tinyproxy', () => {
  let fake: FakeOrbUpstream;
  let proxy: TestTinyproxy;
  const fetches: ProxiedFetch[] = [];
  const through = (settings: Parameters<typeof createProxiedFetch>[0]) => {
    const f = createProxiedFetch(settings);
    fetches.push(f);
    return createUpstreamRegistry({ url: fake.url, fetch: f });
  };

  beforeAll(async () => {
    fake = await startFakeOrbUpstream();
    proxy = await startTinyproxy({ user: 'importer', password: 'pr0xy-pa55' });
  });
  afterAll(async () => {
    await Promise.all(fetches.map((f) => f.close()));
    await proxy?.stop();
    await fake?.close();
  });

  it('imports through the proxy with BasicAuth: the upstream sees tinyproxy’s Via', async () => {
    const upstream = through({ httpProxy: proxy.url(), httpsProxy: proxy.url() });
    fake.requests.length = 0;
    const v = await upstream.fetchOrbVersion('circleci/slack@4.12.1');
    expect(v.source).toBe(fake.sourceOf('circleci/slack', '4.12.1'));
    const orbs = await upstream.listNamespaceOrbs('artsy');
    expect(orbs.map((o) => o.name)).toEqual(fake.orbNames().filter((n) => n.startsWith('artsy/')));
    expect(fake.requests.length).toBeGreaterThan(2);
    for (const r of fake.requests) expect(r.headers.via).toMatch(/tinyproxy/);
    expect(proxy.requests()).toContain(`POST ${fake.url} HTTP/1.1`);
  });

  it('names the proxy, never the password, when the credentials are wrong or missing', async () => {
    const wrong = await rejection(
      through({ httpProxy: proxy.url({ user: 'importer', password: 'not-it-9' }) }).fetchOrb('circleci/node'),
    );
    // tinyproxy answers a wrong password with its own 401 page, passed on as the answer
    expect(wrong).toMatchObject({ kind: 'http-status' });
    expect(wrong.message).toContain(`(through proxy http://importer:***@127.0.0.1:${proxy.port})`);
    expect(wrong.message).toContain('HTTP 401');
    expect(wrong.message).toContain('if the proxy sent it, its credentials are missing or wrong');
    const missing = await rejection(through({ httpProxy: proxy.url(null) }).fetchOrb('circleci/node'));
    expect(missing).toMatchObject({ kind: 'proxy', code: 'TORUS_E_UNAVAILABLE' });
    expect(missing.message).toContain(`proxy http://127.0.0.1:${proxy.port} refused`);
    for (const err of [wrong, missing]) {
      const all = `${inspect(err, { depth: 10 })} ${JSON.stringify(err)}`;
      expect(all).not.toContain('not-it-9');
      expect(all).not.toContain('pr0xy-pa55');
    }
  });

  it('bypasses the proxy for the upstream NO_PROXY names', async () => {
    // credentials that would fail, so only a bypass can succeed
    const upstream = through({ httpProxy: proxy.url(null), noProxy: 'circleci.com,127.0.0.0/8' });
    const logged = proxy.requests().length;
    fake.requests.length = 0;
    const v = await upstream.fetchOrbVersion('circleci/node@5.2.0');
    expect(v.version).toBe('5.2.0');
    expect(fake.requests.map((r) => r.headers.via)).toEqual([undefined]);
    expect(proxy.requests().length).toBe(logged);
  });
});
