// CircleCI API v2 for secrets (written with secrets/): project environment variables
// (`/project/{slug}/envvar…`) and contexts with their environment variables (`/context…`), in the
// reference spec's shapes, and project SSH keys (v1.1 `/project/{slug}/ssh-key`). Values go in, never out: answers carry CircleCI's mask (`xxxx` + the
// last four characters) or no value at all. A self-contained plugin with its own token check.
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Accounts, Organization, User } from '../accounts/index.js';
import type { Context, SecretStore, SshKey } from '../secrets/index.js';
import { maskEnvVarValue, validateEnvVarName } from '../secrets/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import {
  bodyObject,
  currentUser,
  isUuid,
  iso,
  pageOf,
  paginate,
  queryString,
  tokenAuthHook,
  uuidParam,
} from './http.js';
import { canAccessOrg, findProject } from './reads.js';

export interface SecretsRouteDeps {
  res: Resources;
  accounts: Accounts;
  secrets: SecretStore;
}

type SlugParams = { vcs: string; org: string; repo: string };
type ContextParams = { contextId: string };

const CONTEXT_NOT_FOUND = 'Context not found.';
const ORG_NOT_FOUND = 'Organization does not exist.';

function contextJson(c: Context) {
  return { id: c.id, name: c.name, created_at: c.createdAt.toISOString() };
}

function requiredString(body: Record<string, unknown>, key: string): string {
  const v = body[key];
  if (v === undefined || v === null) throw new TorusError('TORUS_E_BAD_REQUEST', `${key} is required`);
  if (typeof v !== 'string') throw new TorusError('TORUS_E_BAD_REQUEST', `${key} must be a string`);
  return v;
}

/** 'circleci/acme', 'gh/acme', 'github/acme' or 'acme' → the organization's slug as Torus stores it */
function orgSlugOf(slug: string): string {
  return `circleci/${slug.slice(slug.lastIndexOf('/') + 1)}`;
}

export function secretsRoutes(deps: SecretsRouteDeps): FastifyPluginAsync {
  const { res, accounts, secrets } = deps;
  const db = res.db;
  const P = '/api/v2';

  return async (app: FastifyInstance) => {
    app.addHook('onRequest', tokenAuthHook(accounts));

    const project = (req: FastifyRequest) => {
      const { vcs, org, repo } = req.params as SlugParams;
      return findProject(db, currentUser(req), `${vcs}/${org}/${repo}`);
    };

    /** an organization the user belongs to (admins: any); others get the same 404 as a missing one */
    async function visibleOrg(user: User, ref: { id?: string; slug?: string }): Promise<Organization> {
      let org: Organization | null = null;
      if (ref.id !== undefined) org = isUuid(ref.id) ? await accounts.getOrg(ref.id.toLowerCase()) : null;
      else if (ref.slug !== undefined) org = await accounts.getOrg(orgSlugOf(ref.slug));
      if (!org || !(await canAccessOrg(db, user, org.id)))
        throw new TorusError('TORUS_E_NOT_FOUND', ORG_NOT_FOUND);
      return org;
    }

    async function visibleContext(req: FastifyRequest<{ Params: ContextParams }>): Promise<Context> {
      const ctx = await secrets.getContext(uuidParam(req.params.contextId, 'Context'));
      if (!ctx || !(await canAccessOrg(db, currentUser(req), ctx.orgId)))
        throw new TorusError('TORUS_E_NOT_FOUND', CONTEXT_NOT_FOUND);
      return ctx;
    }

    // ---- project environment variables ----

    const envVarJson = (v: { name: string; value: string; createdAt: Date }) => ({
      name: v.name,
      value: maskEnvVarValue(v.value),
      'created-at': iso(v.createdAt),
    });

    app.get(`${P}/project/:vcs/:org/:repo/envvar`, async (req) => {
      const p = await project(req);
      const page = pageOf(req);
      const rows = await secrets.listProjectEnvVars(p.id, { offset: page.offset, limit: page.limit + 1 });
      return paginate(rows, page, envVarJson);
    });

    app.post(`${P}/project/:vcs/:org/:repo/envvar`, async (req, reply) => {
      const p = await project(req);
      const body = bodyObject(req);
      const name = validateEnvVarName(requiredString(body, 'name'));
      const value = requiredString(body, 'value');
      const v = await secrets.setProjectEnvVar(p.id, name, value);
      req.log.info(
        { project: p.slug, name, user: currentUser(req).login },
        'project environment variable set',
      );
      return reply.status(201).send(envVarJson(v));
    });

    app.get<{ Params: SlugParams & { name: string } }>(
      `${P}/project/:vcs/:org/:repo/envvar/:name`,
      async (req) => {
        const p = await project(req);
        const v = await secrets.getProjectEnvVar(p.id, req.params.name);
        if (!v) throw new TorusError('TORUS_E_NOT_FOUND', 'Environment variable not found.');
        return envVarJson(v);
      },
    );

    app.delete<{ Params: SlugParams & { name: string } }>(
      `${P}/project/:vcs/:org/:repo/envvar/:name`,
      async (req) => {
        const p = await project(req);
        if (!(await secrets.deleteProjectEnvVar(p.id, req.params.name)))
          throw new TorusError('TORUS_E_NOT_FOUND', 'Environment variable not found.');
        req.log.info(
          { project: p.slug, name: req.params.name, user: currentUser(req).login },
          'project environment variable deleted',
        );
        return { message: 'Environment variable deleted.' };
      },
    );

    // ---- project SSH keys (CircleCI's v1.1 `ssh-key` endpoint; the `add_ssh_keys` step installs them) ----

    const V1 = '/api/v1.1';
    const sshKeyJson = (k: SshKey) => ({
      fingerprint: k.fingerprint,
      fingerprint_sha256: k.fingerprintSha256,
      hostname: k.hostname,
      public_key: k.publicKey,
      created_at: k.createdAt.toISOString(),
    });

    app.post(`${V1}/project/:vcs/:org/:repo/ssh-key`, async (req, reply) => {
      const p = await project(req);
      const body = bodyObject(req);
      const privateKey = requiredString(body, 'private_key');
      const hostname =
        body.hostname === undefined || body.hostname === null ? '' : requiredString(body, 'hostname');
      const key = await secrets.addSshKey(p.id, { privateKey, hostname });
      req.log.info(
        { project: p.slug, fingerprint: key.fingerprint, user: currentUser(req).login },
        'SSH key added',
      );
      return reply.status(201).send(sshKeyJson(key));
    });

    // Torus extension: CircleCI lists a project's keys in its settings page
    app.get(`${V1}/project/:vcs/:org/:repo/ssh-key`, async (req) => {
      const p = await project(req);
      return (await secrets.listSshKeys(p.id)).map(sshKeyJson);
    });

    app.delete(`${V1}/project/:vcs/:org/:repo/ssh-key`, async (req) => {
      const p = await project(req);
      const body = bodyObject(req);
      const fingerprint = requiredString(body, 'fingerprint');
      const hostname =
        body.hostname === undefined || body.hostname === null ? undefined : requiredString(body, 'hostname');
      if ((await secrets.deleteSshKey(p.id, fingerprint, hostname)) === 0)
        throw new TorusError('TORUS_E_NOT_FOUND', 'SSH key not found.');
      req.log.info({ project: p.slug, fingerprint, user: currentUser(req).login }, 'SSH key deleted');
      return { message: 'OK' };
    });

    // ---- contexts ----

    app.get(`${P}/context`, async (req) => {
      const user = currentUser(req);
      const ownerId = queryString(req, 'owner-id');
      const ownerSlug = queryString(req, 'owner-slug');
      const ownerType = queryString(req, 'owner-type');
      if (ownerType !== undefined && ownerType !== 'organization' && ownerType !== 'account')
        throw new TorusError('TORUS_E_BAD_REQUEST', 'owner-type must be organization or account');
      if (ownerId === undefined && ownerSlug === undefined)
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          'Give the owner of the contexts: owner-id or owner-slug.',
        );
      const org = await visibleOrg(user, ownerId !== undefined ? { id: ownerId } : { slug: ownerSlug });
      const page = pageOf(req);
      const rows = await secrets.listContexts(org.id, { offset: page.offset, limit: page.limit + 1 });
      return paginate(rows, page, contextJson);
    });

    app.post(`${P}/context`, async (req) => {
      const user = currentUser(req);
      const body = bodyObject(req);
      const name = requiredString(body, 'name');
      const owner = body.owner;
      if (!owner || typeof owner !== 'object' || Array.isArray(owner))
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          'owner is required: {"id": "<organization id>"} or {"slug": "circleci/<name>"}',
        );
      const o = owner as Record<string, unknown>;
      if (o.type !== undefined && o.type !== 'organization' && o.type !== 'account')
        throw new TorusError('TORUS_E_BAD_REQUEST', 'owner.type must be organization or account');
      const org =
        typeof o.id === 'string'
          ? await visibleOrg(user, { id: o.id })
          : typeof o.slug === 'string'
            ? await visibleOrg(user, { slug: o.slug })
            : null;
      if (!org) throw new TorusError('TORUS_E_BAD_REQUEST', 'owner must have an id or a slug');
      const ctx = await secrets.createContext(org.id, name);
      req.log.info({ org: org.slug, context: ctx.name, user: user.login }, 'context created');
      return contextJson(ctx);
    });

    app.get<{ Params: ContextParams }>(`${P}/context/:contextId`, async (req) =>
      contextJson(await visibleContext(req)),
    );

    app.delete<{ Params: ContextParams }>(`${P}/context/:contextId`, async (req) => {
      const ctx = await visibleContext(req);
      await secrets.deleteContext(ctx.id);
      req.log.info({ context: ctx.name, user: currentUser(req).login }, 'context deleted');
      return { message: 'Context deleted.' };
    });

    // ---- context environment variables (names and dates only: values are never returned) ----

    app.get<{ Params: ContextParams }>(`${P}/context/:contextId/environment-variable`, async (req) => {
      const ctx = await visibleContext(req);
      const page = pageOf(req);
      const rows = await secrets.listContextEnvVars(ctx.id, { offset: page.offset, limit: page.limit + 1 });
      return paginate(rows, page, (v) => ({
        variable: v.name,
        created_at: v.createdAt.toISOString(),
        updated_at: v.updatedAt.toISOString(),
        context_id: v.contextId,
      }));
    });

    app.put<{ Params: ContextParams & { name: string } }>(
      `${P}/context/:contextId/environment-variable/:name`,
      async (req) => {
        const ctx = await visibleContext(req);
        const name = validateEnvVarName(req.params.name);
        const value = requiredString(bodyObject(req), 'value');
        const v = await secrets.setContextEnvVar(ctx.id, name, value);
        req.log.info(
          { context: ctx.name, name, user: currentUser(req).login },
          'context environment variable set',
        );
        return {
          variable: v.name,
          created_at: v.createdAt.toISOString(),
          updated_at: v.updatedAt.toISOString(),
          context_id: v.contextId,
        };
      },
    );

    app.delete<{ Params: ContextParams & { name: string } }>(
      `${P}/context/:contextId/environment-variable/:name`,
      async (req) => {
        const ctx = await visibleContext(req);
        if (!(await secrets.deleteContextEnvVar(ctx.id, req.params.name)))
          throw new TorusError('TORUS_E_NOT_FOUND', 'Environment variable not found.');
        req.log.info(
          { context: ctx.name, name: req.params.name, user: currentUser(req).login },
          'context environment variable deleted',
        );
        return { message: 'Environment variable deleted.' };
      },
    );
  };
}
