// API v2 for secrets: project environment variables and contexts, answered in the reference spec's
// shapes (checked against the OpenAPI spec), values masked in every answer and sealed in the database.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../../src/api/index.js';
import { createAccounts, type Accounts, type Organization } from '../../src/accounts/index.js';
import { createSecretStore, openKeyring, type SecretStore } from '../../src/secrets/index.js';
import { databaseKinds } from '../harness/db.js';
import { loadOpenApi } from '../harness/openapi.js';
import { fakeEngine, fakeScheduler } from './fakes.js';
import { openTestResources, truncateAll, type TestResources } from './resources.js';

const openapi = loadOpenApi();

/**
 * addEnvironmentVariableToContext's schema (update_env_var) puts `additionalProperties: false` beside
 * an `anyOf`, with no `properties`: read literally it forbids every field, including the ones its own
 * branches require. CircleCI answers with the first branch; the test checks against the branches.
 */
const ajv = new Ajv({ strict: false, allErrors: true });
(addFormatsModule as unknown as (a: Ajv) => Ajv)(ajv);
const updateEnvVarSchema = (() => {
  const { additionalProperties: _ignored, ...rest } = (
    openapi.spec.components as { schemas: Record<string, Record<string, unknown>> }
  ).schemas.update_env_var!;
  return ajv.compile(rest);
})();
function assertUpdateEnvVar(body: unknown): void {
  if (!updateEnvVarSchema(body))
    throw new Error(
      `update_env_var mismatch: ${JSON.stringify(updateEnvVarSchema.errors)} in ${JSON.stringify(body)}`,
    );
}
const ADMIN_TOKEN = 'admin-token-for-secrets-tests';
const SECRET = 'sk_live_0123456789abcdefWXYZ';

describe.each(databaseKinds())('secrets API on %s', (kind) => {
  let res: TestResources;
  let accounts: Accounts;
  let secrets: SecretStore;
  let app: FastifyInstance;
  let keyringDir: string;
  let org: Organization;
  let projectId: string;
  /** every response body of the test, to check none holds a clear value */
  let bodies: string[];

  async function call(
    method: InjectOptions['method'],
    url: string,
    opts: { op?: string; body?: unknown; token?: string | null } = {},
  ) {
    const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
    const r = await app.inject({
      method,
      url,
      headers: token ? { 'circle-token': token } : {},
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    bodies.push(r.body);
    const json = r.headers['content-type']?.toString().includes('application/json') ? r.json() : undefined;
    if (opts.op) openapi.assertResponse(opts.op, r.statusCode, json);
    return { status: r.statusCode, json };
  }

  beforeAll(async () => {
    res = await openTestResources(kind);
    keyringDir = mkdtempSync(join(tmpdir(), 'torus-keyring-'));
    accounts = createAccounts(res);
    secrets = createSecretStore(res, openKeyring({ dataDir: keyringDir }));
    app = await buildApp(res, { engine: fakeEngine(res), scheduler: fakeScheduler(), accounts, secrets });
  });
  afterAll(async () => {
    await app?.close();
    await res?.close();
    rmSync(keyringDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await truncateAll(res);
    bodies = [];
    await accounts.bootstrapAdmin(ADMIN_TOKEN);
    org = await accounts.createOrg('acme');
    projectId = res.ids.uuid();
    await res.db.query(
      `INSERT INTO projects (id, org_id, name, slug, vcs_url) VALUES ($1, $2, 'app', 'circleci/acme/app', 'https://git.example/app.git')`,
      [projectId, org.id],
    );
  });

  const envvars = '/api/v2/project/circleci/acme/app/envvar';

  describe('project environment variables', () => {
    it('are created, listed, read and deleted with masked values only', async () => {
      const created = await call('POST', envvars, {
        op: 'createEnvVar',
        body: { name: 'STRIPE_KEY', value: SECRET },
      });
      expect(created.status).toBe(201);
      expect(created.json).toMatchObject({ name: 'STRIPE_KEY', value: 'xxxxWXYZ' });
      expect(Date.parse(created.json['created-at'] as string)).not.toBeNaN();

      const listed = await call('GET', envvars, { op: 'listEnvVars' });
      expect(listed.json).toEqual({ items: [created.json], next_page_token: null });
      const one = await call('GET', `${envvars}/STRIPE_KEY`, { op: 'getEnvVar' });
      expect(one.json).toEqual(created.json);
      // the slug's slashes URL-encoded, and GitHub's prefix, reach the same project
      expect((await call('GET', '/api/v2/project/circleci%2Facme%2Fapp/envvar/STRIPE_KEY')).json).toEqual(
        created.json,
      );
      expect((await call('GET', '/api/v2/project/gh/acme/app/envvar/STRIPE_KEY')).status).toBe(200);

      const deleted = await call('DELETE', `${envvars}/STRIPE_KEY`, { op: 'deleteEnvVar' });
      expect(deleted).toEqual({ status: 200, json: { message: 'Environment variable deleted.' } });
      const gone = await call('GET', `${envvars}/STRIPE_KEY`, { op: 'getEnvVar' });
      expect(gone).toEqual({ status: 404, json: { message: 'Environment variable not found.' } });
      expect((await call('DELETE', `${envvars}/STRIPE_KEY`)).status).toBe(404);
    });

    it('replace a variable of the same name, and the job gets the new value', async () => {
      await call('POST', envvars, { body: { name: 'TOKEN', value: 'first-token-value' } });
      await call('POST', envvars, { body: { name: 'TOKEN', value: SECRET } });
      const env = await secrets.jobEnvironment(projectId, org.id, []);
      expect(env.environment).toEqual({ TOKEN: SECRET });
      expect((await call('GET', envvars)).json.items).toHaveLength(1);
    });

    it('page by 20 with next_page_token', async () => {
      for (let i = 0; i < 23; i++)
        await secrets.setProjectEnvVar(projectId, `VAR_${String(i).padStart(2, '0')}`, `value-${i}`);
      const first = await call('GET', envvars, { op: 'listEnvVars' });
      expect(first.json.items).toHaveLength(20);
      expect(typeof first.json.next_page_token).toBe('string');
      const second = await call('GET', `${envvars}?page-token=${first.json.next_page_token}`, {
        op: 'listEnvVars',
      });
      expect(second.json.items.map((v: { name: string }) => v.name)).toEqual(['VAR_20', 'VAR_21', 'VAR_22']);
      expect(second.json.next_page_token).toBeNull();
    });

    it('refuse bad names and bodies with a message saying what is wrong', async () => {
      const bad = await call('POST', envvars, { op: 'createEnvVar', body: { name: '9LIVES', value: 'x' } });
      expect(bad.status).toBe(400);
      expect(bad.json.message).toMatch(
        /"9LIVES" is not valid: use letters, digits and underscores, not starting with a digit/,
      );
      expect((await call('POST', envvars, { body: { name: 'OK' } })).json).toEqual({
        message: 'value is required',
      });
      expect((await call('POST', envvars, { body: { name: 'OK', value: 5 } })).json).toEqual({
        message: 'value must be a string',
      });
    });

    it('need a token, and stay hidden from users outside the organization', async () => {
      expect(await call('GET', envvars, { token: null })).toEqual({
        status: 401,
        json: { message: 'You must log in first.' },
      });
      expect((await call('GET', envvars, { token: 'nope' })).json).toEqual({
        message: 'Invalid token provided.',
      });
      const eve = await accounts.createUser({ login: 'eve' });
      const eveToken = (await accounts.createToken(eve.id, 't')).token;
      expect(await call('GET', envvars, { token: eveToken })).toEqual({
        status: 404,
        json: { message: 'Project not found' },
      });
      expect((await call('POST', envvars, { token: eveToken, body: { name: 'X', value: 'y' } })).status).toBe(
        404,
      );
      await accounts.addMember(org.id, eve.id, 'member');
      expect((await call('GET', envvars, { token: eveToken, op: 'listEnvVars' })).status).toBe(200);
    });
  });

  describe('contexts', () => {
    it('are created by owner id or slug, listed, read and deleted', async () => {
      const a = await call('POST', '/api/v2/context', {
        op: 'createContext',
        body: { name: 'deploy', owner: { id: org.id, type: 'organization' } },
      });
      expect(a.status).toBe(200);
      expect(a.json.name).toBe('deploy');
      const b = await call('POST', '/api/v2/context', {
        op: 'createContext',
        body: { name: 'aws', owner: { slug: 'gh/acme' } },
      });
      const dup = await call('POST', '/api/v2/context', {
        body: { name: 'aws', owner: { slug: 'circleci/acme' } },
      });
      expect(dup).toEqual({
        status: 409,
        json: { message: 'the organization already has a context named "aws"' },
      });

      const byId = await call('GET', `/api/v2/context?owner-id=${org.id}`, { op: 'listContexts' });
      expect(byId.json).toEqual({ items: [b.json, a.json], next_page_token: null });
      const bySlug = await call('GET', '/api/v2/context?owner-slug=circleci/acme&owner-type=organization', {
        op: 'listContexts',
      });
      expect(bySlug.json).toEqual(byId.json);
      expect((await call('GET', '/api/v2/context')).json).toEqual({
        message: 'Give the owner of the contexts: owner-id or owner-slug.',
      });
      expect(await call('GET', '/api/v2/context?owner-slug=circleci/ghost', { op: 'listContexts' })).toEqual({
        status: 404,
        json: { message: 'Organization does not exist.' },
      });

      expect((await call('GET', `/api/v2/context/${a.json.id}`, { op: 'getContext' })).json).toEqual(a.json);
      const del = await call('DELETE', `/api/v2/context/${a.json.id}`, { op: 'deleteContext' });
      expect(del.json).toEqual({ message: 'Context deleted.' });
      expect(await call('GET', `/api/v2/context/${a.json.id}`, { op: 'getContext' })).toEqual({
        status: 404,
        json: { message: 'Context not found.' },
      });
      expect((await call('GET', '/api/v2/context/not-a-uuid', { op: 'getContext' })).status).toBe(404);
    });

    it('hold variables whose values are never returned, overriding project variables in jobs', async () => {
      const ctx = (await call('POST', '/api/v2/context', { body: { name: 'prod', owner: { id: org.id } } }))
        .json;
      const base = `/api/v2/context/${ctx.id}/environment-variable`;
      const put = await call('PUT', `${base}/DB_PASSWORD`, { body: { value: SECRET } });
      expect(put.status).toBe(200);
      assertUpdateEnvVar(put.json);
      expect(put.json).toMatchObject({ variable: 'DB_PASSWORD', context_id: ctx.id });
      const again = await call('PUT', `${base}/DB_PASSWORD`, { body: { value: `${SECRET}-v2` } });
      assertUpdateEnvVar(again.json);
      expect(again.json.created_at).toBe(put.json.created_at);
      // the spec lists no 400 for this operation; CircleCI answers one for a name it refuses
      const bad = await call('PUT', `${base}/DB-PASSWORD`, { body: { value: 'x' } });
      expect(bad.status).toBe(400);
      expect(bad.json.message).toMatch(/"DB-PASSWORD" is not valid/);

      const list = await call('GET', base, { op: 'listEnvironmentVariablesFromContext' });
      expect(list.json).toEqual({ items: [again.json], next_page_token: null });

      await call('POST', envvars, { body: { name: 'DB_PASSWORD', value: 'project-level-password' } });
      const env = await secrets.jobEnvironment(projectId, org.id, ['prod']);
      expect(env.environment.DB_PASSWORD).toBe(`${SECRET}-v2`);
      expect(env.secrets).toContain(`${SECRET}-v2`);

      const del = await call('DELETE', `${base}/DB_PASSWORD`, { op: 'deleteEnvironmentVariableFromContext' });
      expect(del.json).toEqual({ message: 'Environment variable deleted.' });
      expect((await call('DELETE', `${base}/DB_PASSWORD`)).status).toBe(404);
      expect((await call('GET', base, { op: 'listEnvironmentVariablesFromContext' })).json.items).toEqual([]);
    });

    it('of another organization are invisible to a non-member', async () => {
      const ctx = (
        await call('POST', '/api/v2/context', { body: { name: 'secret-ops', owner: { id: org.id } } })
      ).json;
      const eve = await accounts.createUser({ login: 'eve' });
      const eveToken = (await accounts.createToken(eve.id, 't')).token;
      const opts = { token: eveToken };
      expect((await call('GET', `/api/v2/context/${ctx.id}`, opts)).json).toEqual({
        message: 'Context not found.',
      });
      expect(
        (
          await call('PUT', `/api/v2/context/${ctx.id}/environment-variable/X`, {
            ...opts,
            body: { value: 'v' },
          })
        ).status,
      ).toBe(404);
      expect((await call('DELETE', `/api/v2/context/${ctx.id}`, opts)).status).toBe(404);
      expect((await call('GET', `/api/v2/context?owner-id=${org.id}`, opts)).status).toBe(404);
      expect(
        (await call('POST', '/api/v2/context', { ...opts, body: { name: 'mine', owner: { id: org.id } } }))
          .status,
      ).toBe(404);
    });
  });

  it('add, list and delete project SSH keys (v1.1 ssh-key), the private key never answered', async () => {
    const privateKey = generateKeyPairSync('ed25519')
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const url = '/api/v1.1/project/circleci/acme/app/ssh-key';
    const added = await call('POST', url, { body: { hostname: 'git.example.com', private_key: privateKey } });
    expect(added.status).toBe(201);
    expect(added.json).toMatchObject({
      hostname: 'git.example.com',
      public_key: expect.stringMatching(/^ssh-ed25519 /),
    });
    expect(added.json.fingerprint).toMatch(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
    expect((await call('POST', url, { body: { private_key: 'nope' } })).json).toEqual({
      message:
        'private_key is not a PEM or OpenSSH private key (paste the whole file, BEGIN and END lines included)',
    });
    expect((await call('GET', url)).json).toEqual([added.json]);
    const forJob = await secrets.sshKeysForJob(projectId, [added.json.fingerprint_sha256]);
    expect(forJob.keys.map((k) => k.privateKey.trim())).toEqual([privateKey.trim()]);
    expect((await call('DELETE', url, { body: { fingerprint: added.json.fingerprint } })).json).toEqual({
      message: 'OK',
    });
    expect((await call('DELETE', url, { body: { fingerprint: added.json.fingerprint } })).status).toBe(404);
    const pemBody = privateKey.split('\n')[1]!;
    expect(bodies.join('\n')).not.toContain(pemBody);
  });

  it('never answers with, or stores, a clear value', async () => {
    await call('POST', envvars, { body: { name: 'P', value: SECRET } });
    const ctx = (await call('POST', '/api/v2/context', { body: { name: 'c', owner: { id: org.id } } })).json;
    await call('PUT', `/api/v2/context/${ctx.id}/environment-variable/C`, {
      body: { value: `${SECRET}-ctx` },
    });
    await call('GET', envvars);
    await call('GET', `${envvars}/P`);
    await call('GET', `/api/v2/context/${ctx.id}/environment-variable`);
    expect(bodies.join('\n')).not.toContain(SECRET.slice(0, 12));
    const rows = await res.db.query<{ t: string }>(
      'SELECT t::text AS t FROM project_env_vars t UNION ALL SELECT c::text FROM context_env_vars c',
    );
    expect(rows.rows).toHaveLength(2);
    for (const r of rows.rows) {
      expect(r.t).not.toContain(SECRET.slice(0, 12));
      expect(r.t).toMatch(/tk1:k[0-9a-f]{8}:/);
    }
  });
});
