// The registry's OrbResolver cache: warm lookups touch no database; a publish in this process shows
// at once; changes from elsewhere show when short-lived entries expire, while exact semver versions
// stay cached; a cached dev version stops resolving when it expires.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../storage/index.js';
import { openTestResources, type TestResources } from '../../test/api/resources.js';
import { createOrbRegistry, registryOrbResolver, type OrbRegistry } from './index.js';

const T0 = new Date('2026-01-10T12:00:00Z');
const source = (tag: string) => `version: 2.1\ncommands:\n  c:\n    steps: [run: echo ${tag}]\n`;

/** The database, counting the queries sent through it. */
function counting(db: Database): { db: Database; count: () => number } {
  let n = 0;
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'query') {
        return (sql: string, params?: readonly unknown[]) => {
          n++;
          return target.query(sql, params);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { db: proxy, count: () => n };
}

describe('registry orb resolver cache', () => {
  let base: TestResources;
  let res: TestResources;
  let queries: () => number;
  let registry: OrbRegistry;
  let wallMs: number;
  let orgId: string;

  beforeAll(async () => {
    base = await openTestResources('pglite');
    const c = counting(base.db);
    res = { ...base, db: c.db };
    queries = c.count;
    registry = createOrbRegistry(res);
  });
  afterAll(async () => base?.close());

  beforeEach(async () => {
    base.setNow(T0);
    wallMs = 1_000_000;
    await res.db.query('TRUNCATE orb_namespaces, audit_events, organizations, users CASCADE');
    orgId = res.ids.uuid();
    await res.db.query(`INSERT INTO organizations (id, name, slug) VALUES ($1, 'acme', 'circleci/acme')`, [
      orgId,
    ]);
    await registry.createNamespace(orgId, 'acme', 'system');
    await registry.createOrb('acme', 'tools', {}, 'system');
    await registry.publishVersion('acme/tools', '1.0.0', source('1.0.0'), 'system');
  });

  const newResolver = () =>
    registryOrbResolver(res, { shortTtlMs: 5_000, longTtlMs: 600_000, nowMs: () => wallMs });

  it('answers warm lookups from memory, the same source string each time', async () => {
    const resolver = newResolver();
    const first = await resolver.resolve('acme/tools@1');
    const before = queries();
    for (let i = 0; i < 100; i++) {
      const again = await resolver.resolve('acme/tools@1');
      expect(again).toBe(first);
    }
    expect(await resolver.resolve('acme/none@1')).toBeNull();
    const afterMiss = queries();
    expect(await resolver.resolve('acme/none@1')).toBeNull();
    expect(queries()).toBe(afterMiss);
    expect(afterMiss - before).toBe(1); // the one cold miss
  });

  it('sees a publish made in this process at once', async () => {
    const resolver = newResolver();
    expect((await resolver.resolve('acme/tools@1'))?.version).toBe('1.0.0');
    expect(await resolver.resolve('acme/tools@1.1.0')).toBeNull();
    await registry.publishVersion('acme/tools', '1.1.0', source('1.1.0'), 'system');
    expect((await resolver.resolve('acme/tools@1'))?.version).toBe('1.1.0');
    expect((await resolver.resolve('acme/tools@1.1.0'))?.version).toBe('1.1.0');
  });

  it('sees changes made elsewhere when short entries expire; exact versions stay cached', async () => {
    const resolver = newResolver();
    expect((await resolver.resolve('acme/tools@volatile'))?.version).toBe('1.0.0');
    expect((await resolver.resolve('acme/tools@1.0.0'))?.version).toBe('1.0.0');
    // another replica publishes 1.2.0 (straight into the database: no change noted in this process)
    const orb = await base.db.query<{ id: string }>(`SELECT id FROM orbs WHERE name = 'tools'`);
    await base.db.query(
      `INSERT INTO orb_versions (id, orb_id, version, major, minor, patch, source) VALUES ($1, $2, '1.2.0', 1, 2, 0, $3)`,
      [res.ids.uuid(), orb.rows[0]!.id, source('1.2.0')],
    );
    expect((await resolver.resolve('acme/tools@volatile'))?.version).toBe('1.0.0');
    wallMs += 5_001;
    const before = queries();
    expect((await resolver.resolve('acme/tools@volatile'))?.version).toBe('1.2.0');
    expect((await resolver.resolve('acme/tools@1.0.0'))?.version).toBe('1.0.0');
    expect(queries() - before).toBe(2); // the volatile lookup only: one orb query, one version query
  });

  it('stops resolving a cached dev version when it expires', async () => {
    const resolver = newResolver();
    await registry.publishVersion('acme/tools', 'dev:x', source('dev'), 'system');
    expect((await resolver.resolve('acme/tools@dev:x'))?.version).toBe('dev:x');
    base.setNow(new Date(T0.getTime() + 91 * 86_400_000));
    expect(await resolver.resolve('acme/tools@dev:x')).toBeNull();
  });

  it('keeps organizations apart: a private orb cached for one is not served to another', async () => {
    await registry.createOrb('acme', 'secret', { private: true }, 'system');
    await registry.publishVersion('acme/secret', '1.0.0', source('s'), 'system');
    const resolver = newResolver();
    expect((await resolver.forOrg(orgId).resolve('acme/secret@1.0.0'))?.version).toBe('1.0.0');
    expect(await resolver.forOrg(res.ids.uuid()).resolve('acme/secret@1.0.0')).toBeNull();
    expect(await resolver.resolve('acme/secret@1.0.0')).toBeNull();
    expect((await (await resolver.forViewer('system')).resolve('acme/secret@1.0.0'))?.version).toBe('1.0.0');
    expect(await (await resolver.forViewer('public')).resolve('acme/secret@1.0.0')).toBeNull();
  });

  it('asks the database once for concurrent lookups of one reference', async () => {
    const resolver = newResolver();
    const before = queries();
    const all = await Promise.all(Array.from({ length: 20 }, () => resolver.resolve('acme/tools@1')));
    expect(new Set(all).size).toBe(1);
    expect(queries() - before).toBe(2);
  });
});
