// The orb registry on both databases: namespaces (create, rename with aliases, delete), publishing
// (semver immutability, dev versions overwritten and expiring), promotion, resolution of every
// reference form, private visibility, listings, import idempotency and rollback, permissions, and
// the audit events every change writes.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAccounts, type Accounts } from '../accounts/index.js';
import { listAuditEvents } from '../audit/index.js';
import { databaseKinds } from '../../test/harness/db.js';
import { openTestResources, type TestResources } from '../../test/api/resources.js';
import { createOrbRegistry, registryOrbResolver, type Actor, type OrbRegistry } from './index.js';

const DAY_MS = 86_400_000;
const T0 = new Date('2026-01-10T12:00:00Z');

function orbSource(tag: string): string {
  return `version: 2.1
description: orb ${tag}
commands:
  greet:
    steps:
      - run: echo ${tag}
`;
}

describe.each(databaseKinds())('orb registry on %s', (kind) => {
  let res: TestResources;
  let accounts: Accounts;
  let registry: OrbRegistry;
  let admin: Actor;
  /** admin of organization acme */
  let alice: Actor;
  /** member of acme */
  let carol: Actor;
  /** member of beta only */
  let bob: Actor;
  let acme: string;
  let beta: string;

  beforeAll(async () => {
    res = await openTestResources(kind);
    accounts = createAccounts(res);
    registry = createOrbRegistry(res);
  });
  afterAll(async () => res?.close());

  beforeEach(async () => {
    res.setNow(T0);
    await res.db.query('TRUNCATE orb_namespaces, audit_events, organizations, users CASCADE');
    const u = async (login: string, role: 'admin' | 'member' = 'member') =>
      (await accounts.createUser({ login, role })).id;
    const [adminId, aliceId, carolId, bobId] = [
      await u('root', 'admin'),
      await u('alice'),
      await u('carol'),
      await u('bob'),
    ];
    acme = (await accounts.createOrg('acme')).id;
    beta = (await accounts.createOrg('beta')).id;
    await accounts.addMember(acme, aliceId, 'admin');
    await accounts.addMember(acme, carolId, 'member');
    await accounts.addMember(beta, bobId, 'member');
    admin = { userId: adminId };
    alice = { userId: aliceId };
    carol = { userId: carolId };
    bob = { userId: bobId };
  });

  async function counts() {
    const { rows } = await res.db.query<{ ns: number; orbs: number; versions: number; audit: number }>(
      `SELECT (SELECT count(*) FROM orb_namespaces)::int AS ns, (SELECT count(*) FROM orbs)::int AS orbs,
              (SELECT count(*) FROM orb_versions)::int AS versions, (SELECT count(*) FROM audit_events)::int AS audit`,
    );
    return rows[0]!;
  }

  const resolve = (ref: string, orgId?: string) =>
    registryOrbResolver(res, { ...(orgId ? { orgId } : {}), shortTtlMs: 0, longTtlMs: 0 }).resolve(ref);

  describe('namespaces', () => {
    it('are created by admins of the organization; names are unique and follow the rules', async () => {
      const ns = await registry.createNamespace('acme', 'acme-tools', alice);
      expect(ns).toMatchObject({ name: 'acme-tools', orgId: acme, imported: false, aliases: [] });
      expect((await registry.getNamespace(ns.id))?.name).toBe('acme-tools');
      await expect(registry.createNamespace(acme, 'acme-more', carol)).rejects.toMatchObject({
        code: 'TORUS_E_FORBIDDEN',
        message: expect.stringMatching(/only an admin of the organization/),
      });
      await expect(registry.createNamespace(beta, 'acme-tools', admin)).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
        message: expect.stringMatching(/"acme-tools" is taken/),
      });
      await expect(registry.createNamespace(acme, 'Acme', alice)).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
        message: expect.stringMatching(/lowercase letters/),
      });
      await expect(registry.createNamespace('nope', 'x', admin)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });
      expect((await registry.listNamespaces()).map((n) => n.name)).toEqual(['acme-tools']);
    });

    it('renamed, keep the old name as an alias that still resolves, until the alias is deleted', async () => {
      await registry.createNamespace(acme, 'old', alice);
      await registry.createOrb('old', 'tools', {}, carol);
      await registry.publishVersion('old/tools', '1.0.0', orbSource('a'), carol);

      await expect(registry.renameNamespace('old', 'new', alice)).rejects.toMatchObject({
        code: 'TORUS_E_FORBIDDEN',
        message: expect.stringMatching(/only an admin can rename/),
      });
      const renamed = await registry.renameNamespace('old', 'new', admin);
      expect(renamed).toMatchObject({ name: 'new', aliases: ['old'] });
      expect((await registry.getNamespace('old'))?.id).toBe(renamed.id);
      expect((await resolve('new/tools@1'))?.version).toBe('1.0.0');
      expect((await resolve('old/tools@1'))?.version).toBe('1.0.0');
      expect((await registry.getOrb('old/tools', 'public'))?.fullName).toBe('new/tools');

      // the alias is taken until deleted
      await expect(registry.createNamespace(beta, 'old', admin)).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
        message: expect.stringMatching(/former name of namespace "new".*deleteNamespaceAlias/),
      });
      await expect(registry.deleteNamespaceAlias('new', admin)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });
      expect((await registry.deleteNamespaceAlias('old', admin)).name).toBe('new');
      expect(await resolve('old/tools@1')).toBeNull();
      expect((await registry.createNamespace(beta, 'old', admin)).orgId).toBe(beta);

      // renaming back to a former name takes the alias back
      await registry.renameNamespace('new', 'newer', admin);
      const back = await registry.renameNamespace('newer', 'new', admin);
      expect(back).toMatchObject({ name: 'new', aliases: ['newer'] });
    });

    it('deleted with their orbs and versions, by admins', async () => {
      await registry.createNamespace(acme, 'acme', alice);
      await registry.createOrb('acme', 'a', {}, carol);
      await registry.createOrb('acme', 'b', {}, carol);
      await registry.publishVersion('acme/a', '1.0.0', orbSource('a'), carol);
      await registry.publishVersion('acme/b', 'dev:x', orbSource('b'), carol);
      await expect(registry.deleteNamespaceAndRelatedOrbs('acme', alice)).rejects.toMatchObject({
        code: 'TORUS_E_FORBIDDEN',
      });
      const gone = await registry.deleteNamespaceAndRelatedOrbs('acme', admin);
      expect(gone).toMatchObject({ orbs: 2, versions: 2, namespace: { name: 'acme' } });
      expect(await counts()).toMatchObject({ ns: 0, orbs: 0, versions: 0 });
      expect(await resolve('acme/a@1.0.0')).toBeNull();
      const [event] = await listAuditEvents(res.db, { actionPrefix: 'namespace.delete' });
      expect(event).toMatchObject({ target: 'acme', details: { orbs: ['a', 'b'], versions: 2 } });
    });
  });

  describe('publishing', () => {
    beforeEach(async () => {
      await registry.createNamespace(acme, 'acme', alice);
      await registry.createOrb('acme', 'tools', {}, carol);
    });

    it('keeps semver versions immutable', async () => {
      const v = await registry.publishVersion('acme/tools', '1.0.0', orbSource('one'), carol);
      expect(v).toMatchObject({ orb: 'acme/tools', version: '1.0.0', dev: false, expiresAt: null });
      await expect(
        registry.publishVersion('acme/tools', '1.0.0', orbSource('two'), carol),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
        message: expect.stringMatching(/acme\/tools@1\.0\.0: version already exists/),
      });
      expect((await registry.getVersion('acme/tools@1.0.0', 'public'))?.source).toBe(orbSource('one'));
    });

    it('refuses bad input without changing anything', async () => {
      const before = await counts();
      const bad: [string, string, RegExp][] = [
        ['1.0', orbSource('x'), /not a valid orb version/],
        ['1.0.0', 'commands: [unclosed', /not valid YAML/],
        ['1.0.0', '- a list', /must be a YAML map/],
        ['1.0.0', '   ', /is empty/],
      ];
      for (const [version, source, message] of bad) {
        await expect(registry.publishVersion('acme/tools', version, source, carol)).rejects.toMatchObject({
          code: 'TORUS_E_BAD_REQUEST',
          message: expect.stringMatching(message),
        });
      }
      await expect(registry.publishVersion('acme/tools', '1.0.0', orbSource('x'), bob)).rejects.toMatchObject(
        {
          code: 'TORUS_E_FORBIDDEN',
          message: expect.stringMatching(/only a member of the namespace's organization/),
        },
      );
      await expect(
        registry.publishVersion('acme/nope', '1.0.0', orbSource('x'), carol),
      ).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
        message: expect.stringMatching(/torus orb create acme\/nope/),
      });
      await expect(
        registry.publishVersion('acme/tools', '1.0.0', orbSource('x'), { userId: 'not-a-user' }),
      ).rejects.toMatchObject({ code: 'TORUS_E_FORBIDDEN' });
      expect(await counts()).toEqual(before);
    });

    it('runs the validation it is given before storing', async () => {
      const strict = createOrbRegistry(res, {
        validateSource: (source) => (source.includes('jobs:') ? [] : ['an orb here needs jobs']),
      });
      await expect(strict.publishVersion('acme/tools', '1.0.0', orbSource('x'), carol)).rejects.toMatchObject(
        {
          code: 'TORUS_E_BAD_REQUEST',
          message: expect.stringMatching(/acme\/tools@1\.0\.0 is not valid:\nan orb here needs jobs/),
        },
      );
      expect((await counts()).versions).toBe(0);
    });

    it('overwrites dev versions, which stop resolving 90 days after their last publish', async () => {
      await registry.publishVersion('acme/tools', 'dev:alpha', orbSource('first'), carol);
      res.setNow(new Date(T0.getTime() + 60 * DAY_MS));
      const again = await registry.publishVersion('acme/tools', 'dev:alpha', orbSource('second'), alice);
      expect(again).toMatchObject({
        dev: true,
        createdAt: T0,
        publishedAt: new Date(T0.getTime() + 60 * DAY_MS),
        expiresAt: new Date(T0.getTime() + 150 * DAY_MS),
      });
      expect((await resolve('acme/tools@dev:alpha'))?.source).toBe(orbSource('second'));

      res.setNow(new Date(T0.getTime() + 149 * DAY_MS));
      expect((await resolve('acme/tools@dev:alpha'))?.version).toBe('dev:alpha');
      expect(await registry.sweepExpiredDevVersions()).toBe(0);

      res.setNow(new Date(T0.getTime() + 151 * DAY_MS));
      expect(await resolve('acme/tools@dev:alpha')).toBeNull();
      expect(await registry.getVersion('acme/tools@dev:alpha', 'system')).toBeNull();
      expect(await registry.listVersions('acme/tools', 'system', { includeDev: true })).toEqual([]);
      expect((await counts()).versions).toBe(1);
      expect(await registry.sweepExpiredDevVersions()).toBe(1);
      expect((await counts()).versions).toBe(0);
      const [swept] = await listAuditEvents(res.db, { actionPrefix: 'orb.expire' });
      expect(swept).toMatchObject({ actorId: null, details: { versions: ['acme/tools@dev:alpha'] } });

      const publishes = await listAuditEvents(res.db, { actionPrefix: 'orb.publish' });
      expect(publishes.map((e) => [e.target, e.details.overwritten])).toEqual([
        ['acme/tools@dev:alpha', false],
        ['acme/tools@dev:alpha', true],
      ]);
    });

    it('promotes a dev version to the next semver after the highest published', async () => {
      await registry.publishVersion('acme/tools', 'dev:next', orbSource('next'), carol);
      expect((await registry.promote('acme/tools', 'dev:next', 'patch', carol)).version).toBe('0.0.1');
      await registry.publishVersion('acme/tools', '1.4.2', orbSource('old'), carol);
      await registry.publishVersion('acme/tools', '1.10.0', orbSource('older?'), carol);
      const promoted = await registry.promote('acme/tools', 'next', 'minor', carol);
      expect(promoted).toMatchObject({ version: '1.11.0', source: orbSource('next'), dev: false });
      expect((await registry.promote('acme/tools', 'dev:next', 'major', carol)).version).toBe('2.0.0');
      // the dev version stays
      expect((await resolve('acme/tools@dev:next'))?.version).toBe('dev:next');

      await expect(registry.promote('acme/tools', 'dev:next', 'huge', carol)).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
      await expect(registry.promote('acme/tools', 'dev:none', 'patch', carol)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });
      res.setNow(new Date(T0.getTime() + 91 * DAY_MS));
      await expect(registry.promote('acme/tools', 'dev:next', 'patch', carol)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
        message: expect.stringMatching(/expired/),
      });
      const promotes = await listAuditEvents(res.db, { actionPrefix: 'orb.promote' });
      expect(promotes.map((e) => e.target)).toEqual([
        'acme/tools@0.0.1',
        'acme/tools@1.11.0',
        'acme/tools@2.0.0',
      ]);
    });
  });

  it('resolves every reference form as CircleCI does', async () => {
    await registry.createNamespace(acme, 'acme', alice);
    await registry.createOrb('acme', 'tools', {}, carol);
    for (const v of ['1.2.5', '1.0.0', '2.0.0', '1.10.1', '1.2.0', '0.9.9']) {
      await registry.publishVersion('acme/tools', v, orbSource(v), carol);
    }
    await registry.publishVersion('acme/tools', 'dev:feature', orbSource('dev'), carol);
    await registry.setOrbListStatus('acme/tools', false, carol);
    const cases: [string, string | null][] = [
      ['acme/tools@1', '1.10.1'],
      ['acme/tools@1.2', '1.2.5'],
      ['acme/tools@1.2.0', '1.2.0'],
      ['acme/tools@1.2.3', null],
      ['acme/tools@0', '0.9.9'],
      ['acme/tools@3', null],
      ['acme/tools@volatile', '2.0.0'],
      ['acme/tools@dev:feature', 'dev:feature'],
      ['acme/tools@dev:other', null],
      ['acme/other@1', null],
      ['other/tools@1', null],
      ['acme/tools@latest', null],
    ];
    for (const [ref, version] of cases) {
      const got = await resolve(ref);
      expect([ref, got?.version ?? null]).toEqual([ref, version]);
      if (got) expect(got.source).toBe(orbSource(version === 'dev:feature' ? 'dev' : version!));
    }
    expect((await registry.getVersion('acme/tools@1', 'public'))?.version).toBe('1.10.1');
    expect((await registry.listVersions('acme/tools', 'public')).map((v) => v.version)).toEqual([
      '2.0.0',
      '1.10.1',
      '1.2.5',
      '1.2.0',
      '1.0.0',
      '0.9.9',
    ]);
  });

  it('shows private orbs only to their organization', async () => {
    await registry.createNamespace(acme, 'acme', alice);
    await registry.createOrb('acme', 'secret', { private: true }, carol);
    await registry.createOrb('acme', 'open', {}, carol);
    await registry.publishVersion('acme/secret', '1.0.0', orbSource('s'), carol);
    await registry.publishVersion('acme/open', '1.0.0', orbSource('o'), carol);

    expect((await resolve('acme/secret@1', acme))?.version).toBe('1.0.0');
    expect(await resolve('acme/secret@1', beta)).toBeNull();
    expect(await resolve('acme/secret@1')).toBeNull();
    expect((await resolve('acme/open@1', beta))?.version).toBe('1.0.0');

    expect(await registry.getOrb('acme/secret', bob)).toBeNull();
    expect(await registry.getOrb('acme/secret', 'public')).toBeNull();
    expect((await registry.getOrb('acme/secret', carol))?.private).toBe(true);
    expect((await registry.getOrb('acme/secret', admin))?.private).toBe(true);
    expect(await registry.getVersion('acme/secret@1.0.0', bob)).toBeNull();
    await expect(registry.listVersions('acme/secret', bob)).rejects.toMatchObject({
      code: 'TORUS_E_NOT_FOUND',
    });

    const names = async (viewer: Parameters<OrbRegistry['listOrbs']>[1], view?: 'public' | 'private') =>
      (await registry.listOrbs({ ...(view ? { view } : {}) }, viewer)).items.map((o) => o.fullName);
    expect(await names(carol)).toEqual(['acme/open', 'acme/secret']);
    expect(await names(carol, 'private')).toEqual(['acme/secret']);
    expect(await names(carol, 'public')).toEqual(['acme/open']);
    expect(await names(bob)).toEqual(['acme/open']);
    expect(await names(bob, 'private')).toEqual([]);
    expect(await names('public')).toEqual(['acme/open']);
    expect(await names(admin, 'private')).toEqual(['acme/secret']);
    expect(await names({ orgId: acme })).toEqual(['acme/open', 'acme/secret']);

    // a suspended member sees what anonymous callers see
    await accounts.setSuspended((carol as { userId: string }).userId, true);
    expect(await names(carol)).toEqual(['acme/open']);
  });

  it('lists orbs a page at a time, unlisted ones only when asked', async () => {
    await registry.createNamespace(acme, 'acme', alice);
    await registry.createNamespace(beta, 'beta', admin);
    for (const n of ['e', 'a', 'c', 'b', 'd']) await registry.createOrb('acme', n, {}, carol);
    await registry.createOrb('beta', 'a', {}, bob);
    await registry.publishVersion('acme/a', '1.0.0', orbSource('1'), carol);
    await registry.publishVersion('acme/a', '1.1.0', orbSource('2'), carol);
    await registry.setOrbListStatus('acme/e', false, carol);

    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page = await registry.listOrbs({ first: 2, after }, 'public');
      expect(page.totalCount).toBe(5);
      seen.push(...page.items.map((o) => o.fullName));
      if (!page.hasNextPage) break;
      after = page.endCursor;
    }
    expect(seen).toEqual(['acme/a', 'acme/b', 'acme/c', 'acme/d', 'beta/a']);
    const inAcme = await registry.listOrbs({ namespace: 'acme', includeUnlisted: true }, 'public');
    expect(inAcme.items.map((o) => [o.name, o.listed, o.latestVersion])).toEqual([
      ['a', true, '1.1.0'],
      ['b', true, null],
      ['c', true, null],
      ['d', true, null],
      ['e', false, null],
    ]);
    await expect(registry.listOrbs({ after: 'garbage' }, 'public')).rejects.toMatchObject({
      code: 'TORUS_E_BAD_REQUEST',
    });
  });

  it('files orbs under the fixed categories', async () => {
    await registry.createNamespace(acme, 'acme', alice);
    await registry.createOrb('acme', 'tools', {}, carol);
    expect((await registry.listCategories()).map((c) => c.name)).toContain('Testing');
    await registry.addCategorization('acme/tools', 'Testing', carol);
    const orb = await registry.addCategorization('acme/tools', 'Build', carol);
    expect(orb.categories.map((c) => c.name)).toEqual(['Build', 'Testing']);
    const after = await registry.removeCategorization('acme/tools', 'Testing', carol);
    expect(after.categories.map((c) => c.name)).toEqual(['Build']);
    await expect(registry.addCategorization('acme/tools', 'Nope', carol)).rejects.toMatchObject({
      code: 'TORUS_E_NOT_FOUND',
    });
  });

  describe('import', () => {
    const items = [
      { namespace: 'circleci', orb: 'node', version: '5.0.0', source: orbSource('n5') },
      { namespace: 'circleci', orb: 'node', version: '5.1.0', source: orbSource('n51') },
      {
        namespace: 'circleci',
        orb: 'slack',
        version: '4.12.5',
        source: orbSource('s'),
        createdAt: new Date('2023-05-01T00:00:00Z'),
      },
    ];

    it('is idempotent: the same versions again change nothing', async () => {
      const first = await registry.importOrbVersions(items, admin);
      expect(first).toEqual({
        namespacesCreated: ['circleci'],
        orbsCreated: ['circleci/node', 'circleci/slack'],
        versionsCreated: ['circleci/node@5.0.0', 'circleci/node@5.1.0', 'circleci/slack@4.12.5'],
        versionsUnchanged: [],
      });
      const before = await counts();
      const second = await registry.importOrbVersions(items, admin);
      expect(second).toMatchObject({ namespacesCreated: [], orbsCreated: [], versionsCreated: [] });
      expect(second.versionsUnchanged).toHaveLength(3);
      expect(await counts()).toEqual(before);

      expect((await registry.importNamespace('circleci', admin)).imported).toBe(true);
      expect((await registry.importOrb('circleci', 'node', admin)).imported).toBe(true);
      const again = await registry.importVersion('circleci/node', '5.0.0', orbSource('n5'), admin);
      expect(again.created).toBe(false);
      expect(await counts()).toEqual(before);

      const slack = await registry.getVersion('circleci/slack@4', 'public');
      expect(slack).toMatchObject({ version: '4.12.5', imported: true, createdAt: items[2]!.createdAt });
      expect((await resolve('circleci/node@5'))?.version).toBe('5.1.0');
      expect((await registry.getNamespace('circleci'))?.orgId).toBeNull();
    });

    it('refuses a different source for an existing version, and rolls the whole batch back', async () => {
      await registry.importOrbVersions(items.slice(0, 1), admin);
      const before = await counts();
      await expect(
        registry.importVersion('circleci/node', '5.0.0', orbSource('changed'), admin),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
        message: expect.stringMatching(/different source/),
      });
      const batch = [
        { namespace: 'cypress-io', orb: 'cypress', version: '3.3.1', source: orbSource('c') },
        { namespace: 'circleci', orb: 'go', version: '1.11.0', source: orbSource('g') },
        { namespace: 'circleci', orb: 'node', version: '5.0.0', source: orbSource('changed') },
      ];
      await expect(registry.importOrbVersions(batch, admin)).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
      });
      const bad = [{ namespace: 'circleci', orb: 'go', version: '1.11.0', source: 'not: [yaml' }];
      await expect(registry.importOrbVersions(bad, admin)).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
      const dev = [{ namespace: 'circleci', orb: 'go', version: 'dev:x', source: orbSource('g') }];
      await expect(registry.importOrbVersions(dev, admin)).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
        message: expect.stringMatching(/not dev versions/),
      });
      expect(await counts()).toEqual(before);
      expect(await registry.getNamespace('cypress-io')).toBeNull();
    });

    it('is for admins only, and imported orbs take no local publishes', async () => {
      await expect(registry.importOrbVersions(items, alice)).rejects.toMatchObject({
        code: 'TORUS_E_FORBIDDEN',
        message: expect.stringMatching(/only an admin can import/),
      });
      await expect(registry.importNamespace('circleci', carol)).rejects.toMatchObject({
        code: 'TORUS_E_FORBIDDEN',
      });
      await registry.importOrbVersions(items, 'system');
      await expect(
        registry.publishVersion('circleci/node', '9.9.9', orbSource('x'), admin),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
        message: expect.stringMatching(/imported from an upstream registry/),
      });
      // an imported namespace has no organization: only admins create orbs in it
      await expect(registry.createOrb('circleci', 'mine', {}, alice)).rejects.toMatchObject({
        code: 'TORUS_E_FORBIDDEN',
      });
    });
  });

  it('records who changed what, in the same transaction as the change', async () => {
    await registry.createNamespace(acme, 'acme', alice);
    await registry.createOrb('acme', 'tools', { private: true }, carol);
    await registry.publishVersion('acme/tools', '1.0.0', orbSource('1'), carol);
    await registry.setOrbListStatus('acme/tools', false, alice);
    await registry.importOrbVersions(
      [{ namespace: 'up', orb: 'x', version: '1.0.0', source: orbSource('u') }],
      admin,
    );
    // refused changes leave no event
    await expect(registry.publishVersion('acme/tools', '1.0.0', orbSource('1'), carol)).rejects.toThrow();
    await expect(registry.createOrb('acme', 'tools', {}, carol)).rejects.toThrow();

    const events = await listAuditEvents(res.db);
    const id = (a: Actor) => (a === 'system' ? null : a.userId);
    expect(events.map((e) => [e.action, e.target, e.actorId])).toEqual([
      ['namespace.create', 'acme', id(alice)],
      ['orb.create', 'acme/tools', id(carol)],
      ['orb.publish', 'acme/tools@1.0.0', id(carol)],
      ['orb.set_list_status', 'acme/tools', id(alice)],
      ['namespace.import', 'up', id(admin)],
      ['orb.import', 'up/x', id(admin)],
      ['orb.import_version', 'up/x@1.0.0', id(admin)],
    ]);
    expect(events[1]!.details).toEqual({ private: true });
    expect(events[0]!.occurredAt).toEqual(T0);
  });
});
