// The circleci CLI's compile endpoints (`config validate|process`: REST compile-config-with-defaults
// and GraphQL buildConfig) resolve orbs from the registry as their caller sees it: a member of the
// owning organization gets its private orbs, anyone else (or an anonymous caller) public orbs only.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccounts } from '../accounts/index.js';
import { buildApp } from '../api/index.js';
import { openTestResources, type TestResources } from '../../test/api/resources.js';
import { fakeEngine, fakeScheduler } from '../../test/api/fakes.js';
import { createOrbRegistry, registryOrbResolver } from './index.js';

const ORB = `version: 2.1
commands:
  hello:
    steps:
      - run: echo hello from a private orb
`;

const CONFIG = `version: 2.1
orbs:
  tools: acme/tools@1.0
jobs:
  build:
    machine: true
    steps: [tools/hello]
workflows:
  main:
    jobs: [build]
`;

const BUILD_CONFIG = `query ValidateConfig ($config: String!, $pipelineParametersJson: String, $pipelineValues: [StringKeyVal!], $orgSlug: String) {
  buildConfig(configYaml: $config, pipelineValues: $pipelineValues, pipelineParametersJson: $pipelineParametersJson, orgSlug: $orgSlug) {
    valid, errors { message }, sourceYaml, outputYaml
  }
}`;

describe('compile endpoints with registry orbs', () => {
  let res: TestResources;
  let app: FastifyInstance;
  let memberToken: string;
  let outsiderToken: string;

  beforeAll(async () => {
    res = await openTestResources('pglite');
    const accounts = createAccounts(res);
    const acme = await accounts.createOrg('acme');
    const member = await accounts.createUser({ login: 'carol' });
    const outsider = await accounts.createUser({ login: 'bob' });
    await accounts.addMember(acme.id, member.id, 'member');
    memberToken = (await accounts.createToken(member.id, 'cli')).token;
    outsiderToken = (await accounts.createToken(outsider.id, 'cli')).token;

    const registry = createOrbRegistry(res);
    await registry.createNamespace(acme.id, 'acme', 'system');
    await registry.createOrb('acme', 'tools', { private: true }, 'system');
    await registry.publishVersion('acme/tools', '1.0.3', ORB, 'system');

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

  async function rest(token?: string) {
    const r = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: { 'content-type': 'application/json', ...(token ? { 'circle-token': token } : {}) },
      payload: JSON.stringify({ config_yaml: CONFIG, options: {} }),
    });
    expect(r.statusCode).toBe(200);
    return r.json<{ valid: boolean; 'output-yaml': string; errors: { message: string }[] }>();
  }

  async function graphql(token?: string) {
    const r = await app.inject({
      method: 'POST',
      url: '/graphql-unstable',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: token } : {}) },
      payload: JSON.stringify({ query: BUILD_CONFIG, variables: { config: CONFIG } }),
    });
    return r.json<{
      data: { buildConfig: { valid: boolean; outputYaml: string; errors: { message: string }[] } };
    }>().data.buildConfig;
  }

  it('gives a member of the owning organization its private orbs', async () => {
    const viaRest = await rest(memberToken);
    expect(viaRest.valid).toBe(true);
    expect(viaRest['output-yaml']).toContain('echo hello from a private orb');
    const viaGraphql = await graphql(memberToken);
    expect(viaGraphql.valid).toBe(true);
    expect(viaGraphql.outputYaml).toBe(viaRest['output-yaml']);
  });

  it('gives other callers, and anonymous ones, public orbs only', async () => {
    for (const token of [outsiderToken, undefined]) {
      const viaRest = await rest(token);
      expect(viaRest.valid).toBe(false);
      expect(viaRest.errors[0]!.message).toMatch(/acme\/tools@1\.0 \(alias "tools"\) was not found/);
      expect((await graphql(token)).errors[0]!.message).toMatch(/torus admin import-orb acme\/tools@1\.0/);
    }
  });
});
