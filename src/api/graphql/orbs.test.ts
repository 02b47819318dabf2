// The orb registry through /graphql-unstable as the classic `circleci` CLI uses it: each request
// text of the circleci-cli-queries fixtures sent byte for byte, with the CLI's headers, JSON
// encoding and variable keys (values adjusted to this test's namespaces), against the API served
// by buildApp over a real database; responses are checked field by field, with who may do what.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { NoUnusedVariablesRule, parse, specifiedRules, validate } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccounts, type Organization } from '../../accounts/index.js';
import { createOrbRegistry, ORB_CATEGORIES, registryOrbResolver } from '../../orbs/index.js';
import { fakeEngine, fakeScheduler } from '../../../test/api/fakes.js';
import { openTestResources, type TestResources } from '../../../test/api/resources.js';
import { databaseKinds } from '../../../test/harness/db.js';
import { buildApp } from '../index.js';
import { declareUsedVariables, torusSchema } from './index.js';

const FIXTURES = fileURLToPath(new URL('../../../../shared/reference/circleci-cli-queries', import.meta.url));

interface Fixture {
  query: string;
  variables: Record<string, unknown>;
}

function fixture(name: string): Fixture {
  return {
    query: readFileSync(join(FIXTURES, `${name}.graphql`), 'utf8'),
    variables: JSON.parse(readFileSync(join(FIXTURES, `${name}.variables.json`), 'utf8')) as Record<
      string,
      unknown
    >,
  };
}

/** Go's json.Encoder: HTML-safe escapes, sorted map keys, a trailing newline (api/graphql/client.go). */
function goJson(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
        )
      : v;
  const { query, variables } = value as { query: string; variables: unknown };
  return (
    JSON.stringify({ query, variables: sorted(variables) })
      .replace(/</g, '\\u003c')
      .replace(/>/g, '\\u003e')
      .replace(/&/g, '\\u0026') + '\n'
  );
}

/** the fixtures of `circleci orb …`, `namespace create` and `admin …`: each is sent below */
const ORB_FIXTURES = [
  'ListOrbs',
  'ListOrbs-uncertified',
  'namespaceOrbs-PUBLIC_ONLY',
  'namespaceOrbs-PRIVATE_ONLY',
  'namespaceOrbs-details-PUBLIC_ONLY',
  'namespaceOrbs-details-PRIVATE_ONLY',
  'namespaceOrbs-orbImport',
  'orbVersion-source',
  'orbVersion-info',
  'publishOrb',
  'promoteOrb',
  'orb-latestVersion',
  'orb-id',
  'orb-exists',
  'registryNamespace-id',
  'createOrb',
  'createOrb-private',
  'setOrbListStatus',
  'setOrbListStatus-list',
  'orbCategories',
  'orbCategoryByName',
  'addCategorizationToOrb',
  'removeCategorizationFromOrb',
  'organization-byId',
  'organization-byName',
  'createNamespace',
  'renameNamespace',
  'deleteNamespaceAlias',
  'deleteNamespaceAndRelatedOrbs',
  'importNamespace',
  'importOrb',
  'importOrbVersion',
];
const sent = new Set<string>();

const ID = expect.stringMatching(/^[0-9a-f-]{36}$/);
const ISO = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
const NO_STATISTICS = {
  last30DaysBuildCount: null,
  last30DaysProjectCount: null,
  last30DaysOrganizationCount: null,
};

const GREETING_ORB = fixture('publishOrb').variables.config as string;
const orbUsing = (ref: string) => `version: 2.1
orbs:
  dep: ${ref}
jobs:
  hello:
    docker:
      - image: cimg/base:2024.01
    steps:
      - dep/greet
`;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Reply {
  data: Json | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

describe.each(databaseKinds())(
  'POST /graphql-unstable orb and namespace operations (circleci orb|namespace|admin) on %s',
  (kind) => {
    let res: TestResources;
    let app: FastifyInstance;
    let acme: Organization;
    const tokens: Record<'admin' | 'alice' | 'carol' | 'bob', string> = {
      admin: '',
      alice: '',
      carol: '',
      bob: '',
    };
    type Who = keyof typeof tokens | 'anonymous';

    /** Sends fixture `name` as the CLI does; `vars` replaces values of the CLI's own variable keys. */
    async function cli(name: string, who: Who, vars: Record<string, unknown> = {}): Promise<Reply> {
      const f = fixture(name);
      sent.add(name);
      for (const key of Object.keys(vars)) expect(Object.keys(f.variables)).toContain(key);
      const r = await app.inject({
        method: 'POST',
        url: '/graphql-unstable',
        headers: {
          'content-type': 'application/json; charset=utf-8',
          accept: 'application/json; charset=utf-8',
          'user-agent': 'circleci-cli/0.1.47860+a631c5b (release)',
          'circleci-cli-command': 'circleci orb',
          // the CLI always sends the header, empty without a token
          authorization: who === 'anonymous' ? '' : tokens[who],
        },
        payload: goJson({ query: f.query, variables: { ...f.variables, ...vars } }),
      });
      // the CLI treats any other status as a transport failure
      expect(r.statusCode).toBe(200);
      return r.json<Reply>();
    }

    /** the payload field of a mutation fixture: its name without the variant (`createOrb-private`) */
    const mutationField = (name: string) => name.split('-')[0]!;

    /** the payload of a mutation that must have succeeded */
    async function ok(name: string, who: Who, vars: Record<string, unknown>): Promise<Json> {
      const body = await cli(name, who, vars);
      expect(body.errors).toBeUndefined();
      const payload = body.data![mutationField(name)] as Json;
      expect(payload.errors).toEqual([]);
      return payload;
    }

    /** who sends which variables, and the error type and message the CLI then reads */
    type Refusal = [who: Who, vars: Record<string, unknown>, type: string, message: RegExp];

    /** the payloads of mutation `name` refused in-band, as the CLI reads them, sent in order */
    async function refused(name: string, refusals: Refusal[]): Promise<Json[]> {
      const payloads: Json[] = [];
      for (const [who, vars, type, message] of refusals) {
        const body = await cli(name, who, vars);
        expect(body.errors).toBeUndefined();
        const payload = body.data![mutationField(name)] as Json;
        expect(payload.errors).toHaveLength(1);
        expect(payload.errors[0].message).toMatch(message);
        if (payload.errors[0].type !== undefined) expect(payload.errors[0].type).toBe(type);
        payloads.push(payload);
      }
      return payloads;
    }

    /** the id registryNamespace-id answers for namespace `name` */
    async function namespaceId(name: string, who: Who): Promise<string> {
      return ((await cli('registryNamespace-id', who, { name })).data!.registryNamespace as Json)
        .id as string;
    }

    async function latestVersion(name: string): Promise<string | undefined> {
      const body = await cli('orb-latestVersion', 'carol', { name });
      return (body.data!.orb as Json | null)?.versions[0]?.version as string | undefined;
    }

    beforeAll(async () => {
      res = await openTestResources(kind);
      const accounts = createAccounts(res);
      acme = await accounts.createOrg('acme');
      const globex = await accounts.createOrg('globex');
      const admin = await accounts.createUser({ login: 'root', role: 'admin' });
      const alice = await accounts.createUser({ login: 'alice' });
      const carol = await accounts.createUser({ login: 'carol' });
      const bob = await accounts.createUser({ login: 'bob' });
      await accounts.addMember(acme.id, alice.id, 'admin');
      await accounts.addMember(acme.id, carol.id, 'member');
      await accounts.addMember(globex.id, bob.id, 'admin');
      for (const [who, user] of [
        ['admin', admin],
        ['alice', alice],
        ['carol', carol],
        ['bob', bob],
      ] as const)
        tokens[who] = (await accounts.createToken(user.id, 'cli')).token;
      const resolver = registryOrbResolver(res);
      app = await buildApp(res, {
        engine: fakeEngine(res),
        scheduler: fakeScheduler(),
        accounts,
        orbResolverFor: (viewer) => resolver.forViewer(viewer ? { userId: viewer.id } : 'public'),
      });
      await app.ready();
    });

    afterAll(async () => {
      await app?.close();
      await res?.close();
    });

    it('every orb, namespace and organization request text of the CLI validates against the schema', () => {
      const all = readdirSync(FIXTURES)
        .filter((f) => f.endsWith('.graphql'))
        .map((f) => f.slice(0, -'.graphql'.length));
      // the rest are compile (compile-routes.test.ts) and the contexts fallback (not served here)
      const others = all.filter((n) => !ORB_FIXTURES.includes(n));
      expect(
        others.every((n) =>
          /^(buildConfig|orbConfig|contexts?-|createContext|deleteContext|storeEnvironmentVariable|removeEnvironmentVariable)/.test(
            n,
          ),
        ),
      ).toBe(true);
      const rules = specifiedRules.filter((r) => r !== NoUnusedVariablesRule);
      for (const name of ORB_FIXTURES) {
        const doc = declareUsedVariables(torusSchema(), parse(fixture(name).query));
        expect([name, validate(torusSchema(), doc, rules).map((e) => e.message)]).toEqual([name, []]);
      }
    });

    describe('namespaces and organizations (circleci namespace create)', () => {
      it('organization-byName / -byId: the id of an organization the caller is in', async () => {
        const byName = await cli('organization-byName', 'alice', { orgName: 'acme', vcsType: 'GITHUB' });
        expect(byName).toEqual({
          data: { organization: { id: acme.id, name: 'acme', vcsType: 'CIRCLECI' } },
        });
        const byId = await cli('organization-byId', 'admin', { orgId: acme.id });
        expect(byId.data!.organization).toEqual({ id: acme.id, name: 'acme', vcsType: 'CIRCLECI' });
        const outsider = await cli('organization-byName', 'bob', { orgName: 'acme', vcsType: 'GITHUB' });
        expect(outsider.errors![0]!.message).toMatch(
          /organization "acme" not found, or you are not a member/,
        );
        const anonymous = await cli('organization-byId', 'anonymous', { orgId: acme.id });
        expect(anonymous.errors![0]!.message).toMatch(/must log in/);
      });

      it('createNamespace: an admin of the organization creates it; a taken name is refused', async () => {
        const inAcme = (name: string) => ({ name, organizationId: acme.id });
        const created = await ok('createNamespace', 'alice', inAcme('acme'));
        expect(created).toEqual({ namespace: { id: ID }, errors: [] });
        const lookup = await cli('registryNamespace-id', 'anonymous', { name: 'acme' });
        expect(lookup).toEqual({ data: { registryNamespace: { id: created.namespace.id } } });

        const [taken] = await refused('createNamespace', [
          ['admin', inAcme('acme'), 'TORUS_E_CONFLICT', /namespace name "acme" is taken/],
          ['carol', inAcme('acme-two'), 'TORUS_E_FORBIDDEN', /only an admin of the organization/],
          ['alice', inAcme('Bad Name'), 'TORUS_E_BAD_REQUEST', /namespace/],
        ]);
        expect(taken!.namespace).toBeNull();
        const anonymous = await cli('createNamespace', 'anonymous', inAcme('x'));
        expect(anonymous.errors![0]!.message).toBe('You must log in first.');
        // nothing of the refused ones was created
        for (const name of ['acme-two', 'x']) {
          expect((await cli('registryNamespace-id', 'admin', { name })).data).toEqual({
            registryNamespace: null,
          });
        }
      });
    });

    describe('orbs (circleci orb create|publish|promote|source|info|list|unlist)', () => {
      let nsId: string;
      let toolsId: string;
      /** createOrb's variables for an orb in the namespace acme */
      const inAcme = (name: string) => ({ name, registryNamespaceId: nsId });
      /** publishOrb's variables for a version of an orb in acme: the fixture's source unless `config` */
      const acmeVersion = (orbName: string, version: string, config?: string) => ({
        namespaceName: 'acme',
        orbName,
        version,
        ...(config === undefined ? {} : { config }),
      });

      beforeAll(async () => {
        nsId = await namespaceId('acme', 'carol');
      });

      it('createOrb / createOrb-private: members of the organization create orbs', async () => {
        const tools = await ok('createOrb', 'carol', inAcme('tools'));
        expect(tools).toEqual({ orb: { id: ID }, errors: [] });
        toolsId = tools.orb.id as string;
        const secret = await ok('createOrb-private', 'carol', inAcme('secret'));
        expect(secret.orb.id).toEqual(ID);

        await refused('createOrb', [
          ['carol', inAcme('tools'), 'TORUS_E_CONFLICT', /orb acme\/tools already exists/],
          ['bob', inAcme('intruder'), 'TORUS_E_FORBIDDEN', /only a member of the namespace's organization/],
        ]);
      });

      it("orb-exists / orb-id: a private orb is seen only by its organization's members and admins", async () => {
        expect(
          (await cli('orb-exists', 'anonymous', { name: 'acme/tools', namespace: 'acme' })).data,
        ).toEqual({
          orb: { id: toolsId, isPrivate: false },
          registryNamespace: { id: nsId },
        });
        for (const who of ['carol', 'admin'] as const) {
          const body = await cli('orb-exists', who, { name: 'acme/secret', namespace: 'acme' });
          expect(body.data!.orb).toEqual({ id: ID, isPrivate: true });
        }
        for (const who of ['bob', 'anonymous'] as const) {
          const body = await cli('orb-exists', who, { name: 'acme/secret', namespace: 'acme' });
          expect(body.data).toEqual({ orb: null, registryNamespace: { id: nsId } });
        }
        expect((await cli('orb-id', 'carol', { name: 'acme/nope', namespace: 'nope' })).data).toEqual({
          orb: null,
          registryNamespace: null,
        });
      });

      it('publishOrb: validates the orb, then stores the version; bad input changes nothing', async () => {
        const v1 = await ok('publishOrb', 'carol', acmeVersion('tools', '1.0.0'));
        expect(v1).toEqual({ orb: { version: '1.0.0' }, errors: [] });

        const [, invalid] = await refused('publishOrb', [
          [
            'carol',
            acmeVersion('tools', '1.0.0'),
            'TORUS_E_CONFLICT',
            /acme\/tools@1\.0\.0: version already exists/,
          ],
          [
            'carol',
            acmeVersion(
              'tools',
              '1.1.0',
              'version: 2.1\ncommands:\n  greet:\n    steps:\n      - nope-command\n',
            ),
            'TORUS_E_BAD_REQUEST',
            /orb acme\/tools@1\.1\.0 is not valid:\n.*nope-command/s,
          ],
          [
            'carol',
            acmeVersion('tools', '1.1.0', 'version: 2.1\njobs: [\n'),
            'TORUS_E_BAD_REQUEST',
            /not valid YAML/,
          ],
          // an orb importing an orb the registry lacks is refused, naming it
          [
            'carol',
            acmeVersion('tools', '1.1.0', orbUsing('nope/missing@1.0.0')),
            'TORUS_E_BAD_REQUEST',
            /nope\/missing@1\.0\.0/,
          ],
          ['carol', acmeVersion('unknown', '1.0.0'), 'TORUS_E_NOT_FOUND', /orb acme\/unknown not found/],
          [
            'bob',
            acmeVersion('tools', '1.1.0'),
            'TORUS_E_FORBIDDEN',
            /only a member of the namespace's organization can publish acme\/tools/,
          ],
          ['carol', acmeVersion('tools', 'v1'), 'TORUS_E_BAD_REQUEST', /"v1" is not a valid orb version/],
        ]);
        expect(invalid!.orb).toBeNull();
        expect(await latestVersion('acme/tools')).toBe('1.0.0');

        // an orb that imports one the registry holds publishes (the import resolved at publish time)
        await ok('publishOrb', 'carol', acmeVersion('tools', '1.2.0', orbUsing('acme/tools@1.0.0')));
        // imports resolve as the publisher sees them: acme's private orbs for its members
        await ok('publishOrb', 'carol', acmeVersion('secret', '0.1.0'));
        await ok('createOrb-private', 'carol', inAcme('internal'));
        await ok('publishOrb', 'carol', acmeVersion('internal', '1.0.0', orbUsing('acme/secret@0.1')));
        await ok('publishOrb', 'carol', acmeVersion('tools', '1.10.0'));
        expect(await latestVersion('acme/tools')).toBe('1.10.0');
      });

      it('orb-latestVersion: the highest semantic version first; none for an orb without versions', async () => {
        expect((await cli('orb-latestVersion', 'anonymous', { name: 'acme/tools' })).data).toEqual({
          orb: { versions: [{ version: '1.10.0' }] },
        });
        expect((await cli('orb-latestVersion', 'bob', { name: 'acme/secret' })).data).toEqual({ orb: null });
      });

      it('promoteOrb: a dev version becomes the next version the CLI computed', async () => {
        const dev = await ok('publishOrb', 'carol', acmeVersion('tools', 'dev:alpha'));
        expect(dev.orb).toEqual({ version: 'dev:alpha' });
        const toolsPromotion = (devVersion: string, semanticVersion: string) => ({
          namespaceName: 'acme',
          orbName: 'tools',
          devVersion,
          semanticVersion,
        });
        // the CLI sends latest (1.10.0) incremented by the segment: minor → 1.11.0
        const promoted = await ok('promoteOrb', 'carol', toolsPromotion('dev:alpha', '1.11.0'));
        expect(promoted).toEqual({ orb: { version: '1.11.0', source: GREETING_ORB }, errors: [] });

        await refused('promoteOrb', [
          [
            'carol',
            toolsPromotion('dev:alpha', '5.0.0'),
            'TORUS_E_BAD_REQUEST',
            /cannot promote to 5\.0\.0: .*1\.11\.1 \(patch\), 1\.12\.0 \(minor\), 2\.0\.0 \(major\)/,
          ],
          [
            'carol',
            toolsPromotion('dev:nope', '1.11.1'),
            'TORUS_E_NOT_FOUND',
            /acme\/tools@dev:nope not found/,
          ],
          ['bob', toolsPromotion('dev:alpha', '1.11.1'), 'TORUS_E_FORBIDDEN', /only a member/],
        ]);
        expect(await latestVersion('acme/tools')).toBe('1.11.0');
      });

      it('orbVersion-source: the source of a version; @volatile the highest; unknown is null', async () => {
        const exact = await cli('orbVersion-source', 'anonymous', { orbVersionRef: 'acme/tools@1.0.0' });
        expect(exact).toEqual({
          data: { orbVersion: { id: ID, version: '1.0.0', orb: { id: toolsId }, source: GREETING_ORB } },
        });
        const volatile = await cli('orbVersion-source', 'anonymous', {
          orbVersionRef: 'acme/tools@volatile',
        });
        expect((volatile.data!.orbVersion as Json).version).toBe('1.11.0');
        const partial = await cli('orbVersion-source', 'anonymous', { orbVersionRef: 'acme/tools@1' });
        expect((partial.data!.orbVersion as Json).version).toBe('1.11.0');
        const dev = await cli('orbVersion-source', 'carol', { orbVersionRef: 'acme/tools@dev:alpha' });
        expect((dev.data!.orbVersion as Json).version).toBe('dev:alpha');
        for (const ref of ['acme/tools@9.9.9', 'acme/nope@1.0.0', 'not a ref']) {
          expect((await cli('orbVersion-source', 'carol', { orbVersionRef: ref })).data).toEqual({
            orbVersion: null,
          });
        }
        expect((await cli('orbVersion-source', 'bob', { orbVersionRef: 'acme/secret@0.1.0' })).data).toEqual({
          orbVersion: null,
        });
        const member = await cli('orbVersion-source', 'carol', { orbVersionRef: 'acme/secret@0.1.0' });
        expect((member.data!.orbVersion as Json).source).toBe(GREETING_ORB);
      });

      it('orbVersion-info: the orb, its namespace, categories and versions newest first', async () => {
        const body = await cli('orbVersion-info', 'anonymous', { orbVersionRef: 'acme/tools@1.2.0' });
        expect(body.errors).toBeUndefined();
        const v = body.data!.orbVersion as Json;
        expect(v).toEqual({
          id: ID,
          version: '1.2.0',
          orb: {
            id: toolsId,
            createdAt: ISO,
            name: 'acme/tools',
            namespace: { name: 'acme' },
            categories: [],
            statistics: NO_STATISTICS,
            versions: ['1.11.0', '1.10.0', '1.2.0', '1.0.0'].map((version) => ({ createdAt: ISO, version })),
          },
          source: orbUsing('acme/tools@1.0.0'),
          createdAt: ISO,
        });
      });

      it('orbCategories / orbCategoryByName / add- and removeCategorizationToOrb', async () => {
        const list = await cli('orbCategories', 'anonymous', { after: '' });
        expect(list.data!.orbCategories).toEqual({
          totalCount: ORB_CATEGORIES.length,
          edges: ORB_CATEGORIES.map((c) => ({ cursor: c.id, node: { id: c.id, name: c.name } })),
          pageInfo: { hasNextPage: false },
        });
        const testing = await cli('orbCategoryByName', 'carol', { name: 'Testing' });
        const categoryId = (testing.data!.orbCategoryByName as Json).id as string;
        expect(categoryId).toBe(ORB_CATEGORIES.find((c) => c.name === 'Testing')!.id);
        expect((await cli('orbCategoryByName', 'carol', { name: 'Nope' })).data).toEqual({
          orbCategoryByName: null,
        });

        const added = await ok('addCategorizationToOrb', 'carol', {
          orbId: toolsId,
          categoryId,
        });
        expect(added).toEqual({ orbId: toolsId, categoryId, errors: [] });
        const info = await cli('orbVersion-info', 'carol', { orbVersionRef: 'acme/tools@volatile' });
        expect((info.data!.orbVersion as Json).orb.categories).toEqual([{ id: categoryId, name: 'Testing' }]);
        await refused('addCategorizationToOrb', [
          ['bob', { orbId: toolsId, categoryId }, 'TORUS_E_FORBIDDEN', /only a member/],
          [
            'carol',
            { orbId: toolsId, categoryId: '00000000-0000-4000-8000-000000000000' },
            'TORUS_E_NOT_FOUND',
            /orb category .* not found/,
          ],
        ]);
        const removed = await ok('removeCategorizationFromOrb', 'carol', {
          orbId: toolsId,
          categoryId,
        });
        expect(removed).toEqual({ orbId: toolsId, categoryId, errors: [] });
        const after = await cli('orbVersion-info', 'carol', { orbVersionRef: 'acme/tools@volatile' });
        expect((after.data!.orbVersion as Json).orb.categories).toEqual([]);
      });

      it('namespaceOrbs: public or private orbs of a namespace, as the caller sees them', async () => {
        /** a namespaceOrbs answer for acme listing acme/tools alone: `node` its other fields */
        const acmeListingOnlyTools = (node: Json, orbs: Json = {}) => ({
          registryNamespace: {
            name: 'acme',
            id: nsId,
            orbs: {
              edges: [{ cursor: expect.any(String), node: { name: 'acme/tools', ...node } }],
              ...orbs,
              pageInfo: { hasNextPage: false },
            },
          },
        });
        const pub = await cli('namespaceOrbs-PUBLIC_ONLY', 'anonymous', { namespace: 'acme', after: '' });
        expect(pub.data).toEqual(
          acmeListingOnlyTools(
            {
              versions: ['1.11.0', '1.10.0', '1.2.0', '1.0.0'].map((version) => ({ version })),
              statistics: NO_STATISTICS,
            },
            { totalCount: 1 },
          ),
        );
        const details = await cli('namespaceOrbs-details-PUBLIC_ONLY', 'anonymous', { namespace: 'acme' });
        expect(((details.data!.registryNamespace as Json).orbs.edges as Json[])[0]!.node.versions).toEqual([
          { source: GREETING_ORB, version: '1.11.0' },
        ]);
        const priv = await cli('namespaceOrbs-PRIVATE_ONLY', 'carol', { namespace: 'acme' });
        const privOrbs = (priv.data!.registryNamespace as Json).orbs as Json;
        expect(privOrbs.edges.map((e: Json) => e.node.name)).toEqual(['acme/internal', 'acme/secret']);
        expect(privOrbs.totalCount).toBe(2);
        const privDetails = await cli('namespaceOrbs-details-PRIVATE_ONLY', 'carol', { namespace: 'acme' });
        expect(
          ((privDetails.data!.registryNamespace as Json).orbs.edges as Json[]).map((e) => e.node.versions),
        ).toEqual([
          [{ source: orbUsing('acme/secret@0.1'), version: '1.0.0' }],
          [{ source: GREETING_ORB, version: '0.1.0' }],
        ]);
        for (const who of ['bob', 'anonymous'] as const) {
          const hidden = await cli('namespaceOrbs-PRIVATE_ONLY', who, { namespace: 'acme' });
          expect((hidden.data!.registryNamespace as Json).orbs).toEqual({
            edges: [],
            totalCount: 0,
            pageInfo: { hasNextPage: false },
          });
        }
        // the CLI's "No namespace found"
        expect((await cli('namespaceOrbs-PUBLIC_ONLY', 'carol', { namespace: 'nope' })).data).toEqual({
          registryNamespace: null,
        });

        const imp = await cli('namespaceOrbs-orbImport', 'anonymous', { namespace: 'acme' });
        expect(imp.data).toEqual(
          acmeListingOnlyTools({
            versions: [{ source: GREETING_ORB, id: ID, version: '1.11.0', createdAt: ISO }],
            id: toolsId,
            createdAt: ISO,
          }),
        );
      });

      it('namespaceOrbs pages through `after` = the last cursor while hasNextPage', async () => {
        const registry = createOrbRegistry(res);
        await registry.createNamespace(acme.id, 'many', 'system');
        const names = Array.from({ length: 23 }, (_, i) => `orb-${String(i).padStart(2, '0')}`);
        for (const name of names) {
          await registry.createOrb('many', name, {}, 'system');
          await registry.publishVersion(`many/${name}`, '1.0.0', GREETING_ORB, 'system');
        }
        const seen: string[] = [];
        let after = '';
        for (let page = 0; ; page++) {
          const body = await cli('namespaceOrbs-PUBLIC_ONLY', 'anonymous', { namespace: 'many', after });
          const orbs = (body.data!.registryNamespace as Json).orbs as Json;
          expect(orbs.totalCount).toBe(23);
          expect(orbs.edges).toHaveLength(page === 0 ? 20 : 3);
          seen.push(...orbs.edges.map((e: Json) => e.node.name as string));
          after = orbs.edges.at(-1).cursor as string;
          if (!orbs.pageInfo.hasNextPage) break;
        }
        expect(seen).toEqual(names.map((n) => `many/${n}`));
        const bad = await cli('namespaceOrbs-PUBLIC_ONLY', 'anonymous', {
          namespace: 'many',
          after: 'garbage',
        });
        expect(bad.errors![0]!.message).toMatch(/"garbage" is not a cursor of this listing/);
      });

      it('ListOrbs: public orbs with their latest version (certified: the circleci namespace)', async () => {
        const seen: Json[] = [];
        let after = '';
        for (;;) {
          const body = await cli('ListOrbs-uncertified', 'carol', { after });
          expect(body.errors).toBeUndefined();
          const orbs = body.data!.orbs as Json;
          expect(orbs.totalCount).toBe(24);
          seen.push(...orbs.edges.map((e: Json) => e.node));
          if (!orbs.pageInfo.hasNextPage) break;
          after = orbs.edges.at(-1).cursor as string;
        }
        expect(seen.map((n) => n.name)).toEqual([
          'acme/tools',
          ...Array.from({ length: 23 }, (_, i) => `many/orb-${String(i).padStart(2, '0')}`),
        ]);
        expect(seen[0]).toEqual({
          name: 'acme/tools',
          statistics: NO_STATISTICS,
          versions: [{ version: '1.11.0', source: GREETING_ORB }],
        });
        // nothing imported into `circleci` yet: no certified orbs
        expect((await cli('ListOrbs', 'anonymous', { after: '' })).data).toEqual({
          orbs: { totalCount: 0, edges: [], pageInfo: { hasNextPage: false } },
        });
      });

      it('setOrbListStatus: an unlisted orb leaves listings and still resolves', async () => {
        const unlisted = await ok('setOrbListStatus', 'carol', { orbId: toolsId });
        expect(unlisted).toEqual({ listed: false, errors: [] });
        const pub = await cli('namespaceOrbs-PUBLIC_ONLY', 'anonymous', { namespace: 'acme' });
        expect((pub.data!.registryNamespace as Json).orbs.totalCount).toBe(0);
        const source = await cli('orbVersion-source', 'anonymous', { orbVersionRef: 'acme/tools@1.0.0' });
        expect((source.data!.orbVersion as Json).version).toBe('1.0.0');
        await refused('setOrbListStatus-list', [
          ['bob', { orbId: toolsId }, 'TORUS_E_FORBIDDEN', /only a member/],
        ]);
        const listed = await ok('setOrbListStatus-list', 'carol', { orbId: toolsId });
        expect(listed).toEqual({ listed: true, errors: [] });
        const again = await cli('namespaceOrbs-PUBLIC_ONLY', 'anonymous', { namespace: 'acme' });
        expect((again.data!.registryNamespace as Json).orbs.totalCount).toBe(1);
      });
    });

    describe('admin (circleci admin import-orb|rename-namespace|delete-namespace-alias|delete-namespace)', () => {
      it('importNamespace / importOrb / importOrbVersion: admins import, idempotently', async () => {
        await refused('importNamespace', [
          ['alice', { name: 'circleci' }, 'TORUS_E_FORBIDDEN', /only an admin can import namespaces/],
        ]);
        const ns = await ok('importNamespace', 'admin', { name: 'circleci' });
        expect(ns).toEqual({ namespace: { id: ID }, errors: [] });
        expect(await ok('importNamespace', 'admin', { name: 'circleci' })).toEqual(ns);

        await refused('importOrb', [
          [
            'carol',
            { name: 'node', registryNamespaceId: ns.namespace.id },
            'TORUS_E_FORBIDDEN',
            /only an admin/,
          ],
        ]);
        const orb = await ok('importOrb', 'admin', {
          name: 'node',
          registryNamespaceId: ns.namespace.id,
        });
        expect(orb).toEqual({ orb: { id: ID }, errors: [] });
        const orbId = orb.orb.id as string;
        // the CLI's orb-id lookup before importing versions
        expect((await cli('orb-id', 'admin', { name: 'circleci/node', namespace: 'circleci' })).data).toEqual(
          {
            orb: { id: orbId },
            registryNamespace: { id: ns.namespace.id },
          },
        );

        const version = await ok('importOrbVersion', 'admin', {
          orbId,
          version: '5.2.0',
        });
        expect(version).toEqual({ orb: { version: '5.2.0' }, errors: [] });
        // the same source again is fine; another source for it is refused
        await ok('importOrbVersion', 'admin', { orbId, version: '5.2.0' });
        await refused('importOrbVersion', [
          [
            'admin',
            { orbId, version: '5.2.0', config: orbUsing('circleci/node@5.2.0') },
            'TORUS_E_CONFLICT',
            /circleci\/node@5\.2\.0 already exists here with a different source/,
          ],
          ['carol', { orbId, version: '5.3.0' }, 'TORUS_E_FORBIDDEN', /only an admin/],
        ]);
        // an imported orb takes no local publishes
        await refused('publishOrb', [
          [
            'admin',
            { namespaceName: 'circleci', orbName: 'node', version: '9.0.0' },
            'TORUS_E_CONFLICT',
            /was imported from an upstream registry/,
          ],
        ]);
        const info = await cli('orbVersion-info', 'anonymous', {
          orbVersionRef: 'circleci/node' + '@volatile',
        });
        expect((info.data!.orbVersion as Json).orb.versions).toEqual([{ createdAt: ISO, version: '5.2.0' }]);

        const certified = await cli('ListOrbs', 'anonymous', { after: '' });
        expect(certified.data).toEqual({
          orbs: {
            totalCount: 1,
            edges: [
              {
                cursor: expect.any(String),
                node: {
                  name: 'circleci/node',
                  statistics: NO_STATISTICS,
                  versions: [{ version: '5.2.0', source: GREETING_ORB }],
                },
              },
            ],
            pageInfo: { hasNextPage: false },
          },
        });
      });

      it('renameNamespace / deleteNamespaceAlias: the old name resolves until its alias is deleted', async () => {
        const nsId = await namespaceId('acme', 'admin');
        const renaming = (newName: string) => ({ namespaceId: nsId, newName });
        await refused('renameNamespace', [
          ['alice', renaming('acme-corp'), 'TORUS_E_FORBIDDEN', /only an admin can rename a namespace/],
          ['admin', renaming('circleci'), 'TORUS_E_CONFLICT', /namespace name "circleci" is taken/],
        ]);
        const renamed = await ok('renameNamespace', 'admin', renaming('acme-corp'));
        expect(renamed).toEqual({ namespace: { id: nsId }, errors: [] });
        const viaOld = await cli('namespaceOrbs-PUBLIC_ONLY', 'anonymous', { namespace: 'acme' });
        expect(viaOld.data!.registryNamespace).toMatchObject({ name: 'acme-corp', id: nsId });
        const source = await cli('orbVersion-source', 'anonymous', { orbVersionRef: 'acme/tools@1.0.0' });
        expect((source.data!.orbVersion as Json).version).toBe('1.0.0');

        await refused('deleteNamespaceAlias', [
          ['alice', { name: 'acme' }, 'TORUS_E_FORBIDDEN', /only an admin/],
        ]);
        expect(await ok('deleteNamespaceAlias', 'admin', { name: 'acme' })).toEqual({
          deleted: true,
          errors: [],
        });
        expect((await cli('registryNamespace-id', 'admin', { name: 'acme' })).data).toEqual({
          registryNamespace: null,
        });
        const [again] = await refused('deleteNamespaceAlias', [
          ['admin', { name: 'acme' }, 'TORUS_E_NOT_FOUND', /acme/],
        ]);
        expect(again!.deleted).toBe(false);
      });

      it('deleteNamespaceAndRelatedOrbs: admins delete a namespace with its orbs', async () => {
        const nsId = await namespaceId('many', 'admin');
        const [refusedDelete] = await refused('deleteNamespaceAndRelatedOrbs', [
          ['alice', { id: nsId }, 'TORUS_E_FORBIDDEN', /only an admin/],
        ]);
        expect(refusedDelete!.deleted).toBe(false);
        expect(await ok('deleteNamespaceAndRelatedOrbs', 'admin', { id: nsId })).toEqual({
          deleted: true,
          errors: [],
        });
        expect((await cli('registryNamespace-id', 'anonymous', { name: 'many' })).data).toEqual({
          registryNamespace: null,
        });
        expect(
          (await cli('orbVersion-source', 'anonymous', { orbVersionRef: 'many/orb-00@1.0.0' })).data,
        ).toEqual({
          orbVersion: null,
        });
      });
    });

    it('an unknown token is refused before anything runs', async () => {
      tokens.bob = 'f'.repeat(40);
      const body = await cli('orb-latestVersion', 'bob', { name: 'acme-corp/tools' });
      expect(body).toEqual({
        data: null,
        errors: [{ message: 'Invalid token provided.', extensions: { code: 'UNAUTHENTICATED' } }],
      });
    });

    it('sent every orb fixture', () => {
      expect([...sent].sort()).toEqual([...ORB_FIXTURES].sort());
    });
  },
);
