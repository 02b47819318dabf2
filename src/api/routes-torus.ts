// Torus' own API extensions under /api/v2/torus/: projects list, users, personal API tokens,
// organizations and members, agent tokens (used by the `torus` CLI), and a pipeline's live
// change events (SSE). Administration needs an admin; members manage their own tokens.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiToken, Organization, Role, User } from '../accounts/index.js';
import { CHANNELS } from '../storage/index.js';
import { TorusError } from '../ops/index.js';
import {
  bodyObject,
  currentUser,
  iso,
  optionalString,
  pageOf,
  paginate,
  requireAdmin,
  uuidParam,
} from './http.js';
import * as reads from './reads.js';
import { openEventStream } from './routes-output.js';
import type { RouteDeps } from './routes-v2.js';

export function userJson(u: User) {
  return {
    id: u.id,
    login: u.login,
    name: u.name,
    role: u.role,
    suspended: u.suspended,
    created_at: iso(u.createdAt),
  };
}

function tokenJson(t: ApiToken) {
  return {
    id: t.id,
    label: t.label,
    hint: t.hint,
    created_at: iso(t.createdAt),
    last_used_at: iso(t.lastUsedAt),
  };
}

function orgJson(o: Organization) {
  return { id: o.id, name: o.name, slug: o.slug, vcs_type: o.vcsType, created_at: iso(o.createdAt) };
}

function roleOf(body: Record<string, unknown>): Role {
  const role = optionalString(body, 'role') ?? 'member';
  if (role !== 'admin' && role !== 'member')
    throw new TorusError('TORUS_E_BAD_REQUEST', `role must be admin or member, got ${JSON.stringify(role)}`);
  return role;
}

/** Fans one LISTEN out to every open pipeline event stream of this process. */
export class PipelineChanges {
  private readonly subscribers = new Map<string, Set<() => void>>();
  private unlisten: Promise<() => Promise<void>> | undefined;

  constructor(private readonly deps: RouteDeps) {}

  async subscribe(pipelineId: string, onChange: () => void): Promise<() => void> {
    this.unlisten ??= this.deps.res.db.listen(CHANNELS.pipelineChanged, (payload) => {
      for (const f of this.subscribers.get(payload) ?? []) f();
    });
    try {
      await this.unlisten;
    } catch (err) {
      this.unlisten = undefined; // the next stream tries to LISTEN again
      throw err;
    }
    let set = this.subscribers.get(pipelineId);
    if (!set) this.subscribers.set(pipelineId, (set = new Set()));
    set.add(onChange);
    return () => {
      set.delete(onChange);
      if (set.size === 0) this.subscribers.delete(pipelineId);
    };
  }

  async close(): Promise<void> {
    if (this.unlisten) await (await this.unlisten)();
  }
}

export function registerTorusRoutes(app: FastifyInstance, deps: RouteDeps, changes: PipelineChanges): void {
  const { res, accounts, scheduler } = deps;
  const db = res.db;
  const T = '/api/v2/torus';

  /** 'me', or (admins only) another user's login or id */
  const targetUser = async (req: FastifyRequest<{ Params: { login: string } }>): Promise<User> => {
    const me = currentUser(req);
    const ref = req.params.login;
    if (ref === 'me' || ref === me.login || ref === me.id) return me;
    requireAdmin(req);
    const u = await accounts.getUser(ref);
    if (!u) throw new TorusError('TORUS_E_NOT_FOUND', `user ${ref} not found`);
    return u;
  };

  const orgOf = async (req: FastifyRequest<{ Params: { org: string } }>): Promise<Organization> => {
    const org = await accounts.getOrg(req.params.org);
    if (!org || !(await reads.canAccessOrg(db, currentUser(req), org.id))) {
      throw new TorusError('TORUS_E_NOT_FOUND', `organization ${req.params.org} not found`);
    }
    return org;
  };

  /** site admins and the organization's admins */
  const requireOrgAdmin = async (req: FastifyRequest, org: Organization) => {
    const me = currentUser(req);
    if (me.role === 'admin' || (await accounts.memberRole(org.id, me.id)) === 'admin') return;
    throw new TorusError('TORUS_E_FORBIDDEN', `Only administrators of ${org.slug} may change its members.`);
  };

  // ---- projects ----

  app.get(`${T}/projects`, async (req) => {
    const page = pageOf(req, 100);
    return paginate(await reads.listVisibleProjects(db, currentUser(req), page), page, reads.projectJson);
  });

  // ---- users ----

  app.get(`${T}/users`, async (req) => {
    requireAdmin(req);
    return { items: (await accounts.listUsers()).map(userJson), next_page_token: null };
  });

  app.post(`${T}/users`, async (req, reply) => {
    requireAdmin(req);
    const body = bodyObject(req);
    const login = optionalString(body, 'login');
    if (!login) throw new TorusError('TORUS_E_BAD_REQUEST', 'login is required');
    const user = await accounts.createUser({
      login,
      name: optionalString(body, 'name'),
      role: roleOf(body),
      email: optionalString(body, 'email'),
    });
    const token = await accounts.createToken(user.id, optionalString(body, 'token_label') ?? 'initial');
    return reply.status(201).send({ ...userJson(user), token: { ...tokenJson(token), token: token.token } });
  });

  app.get<{ Params: { login: string } }>(`${T}/users/:login`, async (req) => userJson(await targetUser(req)));

  for (const [action, suspended] of [
    ['suspend', true],
    ['unsuspend', false],
  ] as const) {
    app.post<{ Params: { login: string } }>(`${T}/users/:login/${action}`, async (req) => {
      const me = requireAdmin(req);
      const u = await accounts.getUser(req.params.login);
      if (!u) throw new TorusError('TORUS_E_NOT_FOUND', `user ${req.params.login} not found`);
      if (suspended && u.id === me.id)
        throw new TorusError('TORUS_E_BAD_REQUEST', 'You cannot suspend yourself.');
      return userJson(await accounts.setSuspended(u.id, suspended));
    });
  }

  // ---- personal API tokens ----

  app.get<{ Params: { login: string } }>(`${T}/users/:login/tokens`, async (req) => {
    const u = await targetUser(req);
    return { items: (await accounts.listTokens(u.id)).map(tokenJson), next_page_token: null };
  });

  app.post<{ Params: { login: string } }>(`${T}/users/:login/tokens`, async (req, reply) => {
    const u = await targetUser(req);
    const label = optionalString(bodyObject(req), 'label') ?? '';
    if (label.length > 200)
      throw new TorusError('TORUS_E_BAD_REQUEST', 'label is too long (at most 200 characters)');
    const t = await accounts.createToken(u.id, label);
    return reply.status(201).send({ ...tokenJson(t), token: t.token });
  });

  app.delete<{ Params: { login: string; id: string } }>(`${T}/users/:login/tokens/:id`, async (req) => {
    const u = await targetUser(req);
    await accounts.revokeToken(u.id, uuidParam(req.params.id, 'Token'));
    return { message: 'Token revoked.' };
  });

  // ---- organizations ----

  app.get(`${T}/orgs`, async (req) => {
    const me = currentUser(req);
    const orgs = me.role === 'admin' ? await accounts.listOrgs() : await accounts.listOrgsOf(me.id);
    return { items: orgs.map(orgJson), next_page_token: null };
  });

  app.post(`${T}/orgs`, async (req, reply) => {
    requireAdmin(req);
    const name = optionalString(bodyObject(req), 'name');
    if (!name) throw new TorusError('TORUS_E_BAD_REQUEST', 'name is required');
    return reply.status(201).send(orgJson(await accounts.createOrg(name)));
  });

  app.get<{ Params: { org: string } }>(`${T}/orgs/:org/members`, async (req) => {
    const org = await orgOf(req);
    const members = await accounts.listMembers(org.id);
    return {
      items: members.map((m) => ({
        user_id: m.userId,
        login: m.login,
        name: m.name,
        role: m.role,
        created_at: iso(m.createdAt),
      })),
      next_page_token: null,
    };
  });

  app.post<{ Params: { org: string } }>(`${T}/orgs/:org/members`, async (req, reply) => {
    const me = currentUser(req);
    // Site admins see every organization; others only those they belong to.
    const org = me.role === 'admin' ? await accounts.getOrg(req.params.org) : await orgOf(req);
    if (!org) throw new TorusError('TORUS_E_NOT_FOUND', `organization ${req.params.org} not found`);
    await requireOrgAdmin(req, org);
    const body = bodyObject(req);
    const login = optionalString(body, 'login') ?? optionalString(body, 'user_id');
    if (!login) throw new TorusError('TORUS_E_BAD_REQUEST', 'login is required');
    const u = await accounts.getUser(login);
    if (!u) throw new TorusError('TORUS_E_NOT_FOUND', `user ${login} not found`);
    const role = roleOf(body);
    await accounts.addMember(org.id, u.id, role);
    return reply.status(201).send({ user_id: u.id, login: u.login, name: u.name, role });
  });

  app.delete<{ Params: { org: string; login: string } }>(`${T}/orgs/:org/members/:login`, async (req) => {
    const org = await orgOf(req);
    await requireOrgAdmin(req, org);
    const u = await accounts.getUser(req.params.login);
    if (!u) throw new TorusError('TORUS_E_NOT_FOUND', `user ${req.params.login} not found`);
    await accounts.removeMember(org.id, u.id);
    return { message: 'Member removed.' };
  });

  // ---- agent tokens ----

  app.post(`${T}/agent-tokens`, async (req, reply) => {
    requireAdmin(req);
    const body = bodyObject(req);
    const resourceClass = optionalString(body, 'resource_class');
    if (!resourceClass)
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        "resource_class is required, e.g. 'myns/runner' or 'machine:*'",
      );
    const name = optionalString(body, 'name') ?? '';
    const t = await scheduler.createAgentToken(resourceClass, name);
    return reply.status(201).send({ id: t.id, token: t.token, resource_class: resourceClass, name });
  });

  // ---- live pipeline changes ----

  app.get<{ Params: { id: string } }>(`${T}/pipeline/:id/events`, async (req, reply) => {
    const user = currentUser(req);
    const id = uuidParam(req.params.id, 'Pipeline');
    await reads.findPipeline(db, user, id);
    const stream = openEventStream(req, reply);
    let busy = false;
    let again = false;
    let closed = false;
    const snapshot = async () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          const p = reads.pipelineJson(await reads.findPipeline(db, user, id));
          const workflows = (await reads.listWorkflows(db, id, { offset: 0, limit: 1000 })).map(
            reads.workflowJson,
          );
          stream.send('pipeline', { pipeline: p, workflows });
        } while (again && !closed);
      } finally {
        busy = false;
      }
    };
    const onChange = () => {
      if (closed) return;
      snapshot().catch((err: unknown) => req.log.error({ err }, 'pipeline event stream failed'));
    };
    const unsubscribe = await changes.subscribe(id, onChange);
    const keepAlive = setInterval(() => stream.comment('keep-alive'), 15_000);
    reply.raw.on('close', () => {
      closed = true;
      clearInterval(keepAlive);
      unsubscribe();
    });
    onChange();
    return reply;
  });
}
