// CircleCI API v2 routes (the operations of the reference spec that Torus implements): user,
// projects, pipelines, workflows and jobs. Paths, parameters and response shapes follow
// circleci-api-v2.openapi.json; reads are SQL (reads.ts), changes go through the pipeline engine.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Accounts } from '../accounts/index.js';
import type { PipelineEngine } from '../pipelines/index.js';
import type { Scheduler } from '../scheduler/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import {
  baseUrl,
  bodyObject,
  currentUser,
  isUuid,
  optionalBoolean,
  optionalString,
  pageOf,
  paginate,
  positiveInt,
  queryString,
  uuidParam,
} from './http.js';
import * as reads from './reads.js';

export interface RouteDeps {
  res: Resources;
  engine: PipelineEngine;
  scheduler: Scheduler;
  accounts: Accounts;
}

// CircleCI's limits on pipeline parameters given through the API
const MAX_PARAMETERS = 100;
const MAX_PARAMETER_KEY = 128;
const MAX_PARAMETER_VALUE = 512;

export function validateParameters(raw: unknown): Record<string, string | number | boolean> | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TorusError('TORUS_E_BAD_REQUEST', 'parameters must be an object of parameter names to values');
  }
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length > MAX_PARAMETERS) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `too many pipeline parameters: ${entries.length} given, at most ${MAX_PARAMETERS} allowed`,
    );
  }
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of entries) {
    if (key.length > MAX_PARAMETER_KEY) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `pipeline parameter name ${JSON.stringify(key.slice(0, 40) + '…')} is ${key.length} characters long; at most ${MAX_PARAMETER_KEY} allowed`,
      );
    }
    if (typeof value === 'string') {
      if (value.length > MAX_PARAMETER_VALUE) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `the value of pipeline parameter ${JSON.stringify(key)} is ${value.length} characters long; at most ${MAX_PARAMETER_VALUE} allowed`,
        );
      }
    } else if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `pipeline parameter ${JSON.stringify(key)} is ${value}: numbers must be integers`,
        );
      }
    } else if (typeof value !== 'boolean') {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `pipeline parameter ${JSON.stringify(key)} must be an integer, a string or a boolean, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
      );
    }
    out[key] = value;
  }
  return out;
}

/** git URLs that name another host: http(s), ssh, git protocol, or scp-like `user@host:path` */
const REMOTE_GIT_URL_RE = /^(?:(?:https?|ssh|git):\/\/|[\w.-]+@[\w.-]+:)/i;

function projectSlugOf(p: { vcs: string; org: string; repo: string }): string {
  return `${p.vcs}/${p.org}/${p.repo}`;
}

type SlugParams = { vcs: string; org: string; repo: string };

export function registerV2Routes(app: FastifyInstance, deps: RouteDeps): void {
  const { res, engine, scheduler, accounts } = deps;
  const db = res.db;
  const P = '/api/v2';
  const project = (req: FastifyRequest) =>
    reads.findProject(db, currentUser(req), projectSlugOf(req.params as SlugParams));

  // ---- user ----

  app.get(`${P}/me`, async (req) => {
    const u = currentUser(req);
    return { id: u.id, login: u.login, name: u.name, avatar_url: null };
  });

  app.get(`${P}/me/collaborations`, async (req) => {
    const u = currentUser(req);
    const orgs = u.role === 'admin' ? await accounts.listOrgs() : await accounts.listOrgsOf(u.id);
    return orgs.map((o) => ({ id: o.id, 'vcs-type': o.vcsType, name: o.name, avatar_url: '', slug: o.slug }));
  });

  app.get<{ Params: { id: string } }>(`${P}/user/:id`, async (req) => {
    currentUser(req);
    const u = isUuid(req.params.id) ? await accounts.getUser(req.params.id) : null;
    if (!u) throw new TorusError('TORUS_E_NOT_FOUND', 'User not found');
    return { id: u.id, login: u.login, name: u.name, avatar_url: null };
  });

  // ---- projects ----

  const createProject = async (req: FastifyRequest, orgRef: string) => {
    const user = currentUser(req);
    const body = bodyObject(req);
    const vcsUrl = optionalString(body, 'vcs_url');
    if (!vcsUrl) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        'vcs_url is required: Torus builds plain git repositories, give their URL (file://, http(s)://, ssh://)',
      );
    }
    // A repository on the server's own disk may sit next to its data; only admins may build those.
    if (user.role !== 'admin' && !REMOTE_GIT_URL_RE.test(vcsUrl)) {
      throw new TorusError(
        'TORUS_E_FORBIDDEN',
        "Only administrators may add a repository from the server's filesystem (a path or file:// URL); use an http(s)://, ssh:// or git@host: URL.",
      );
    }
    // 'circleci/acme', 'gh/acme', 'acme' or the organization's id
    let orgName = orgRef.includes('/') ? orgRef.slice(orgRef.lastIndexOf('/') + 1) : orgRef;
    let org = await accounts.getOrg(isUuid(orgRef) ? orgRef : `circleci/${orgName}`);
    if (isUuid(orgRef)) {
      if (!org) throw new TorusError('TORUS_E_NOT_FOUND', 'Organization not found');
      orgName = org.name;
    }
    if (org && user.role !== 'admin' && !(await accounts.memberRole(org.id, user.id))) {
      throw new TorusError('TORUS_E_FORBIDDEN', `You are not a member of organization ${org.slug}.`);
    }
    const created = await engine.createProject({
      orgName,
      vcsUrl,
      name: optionalString(body, 'name'),
      defaultBranch: optionalString(body, 'default_branch'),
    });
    // Whoever creates an organization through its first project administers it.
    if (!org) {
      org = await accounts.getOrg(created.orgId);
      if (org && user.role !== 'admin') await accounts.addMember(org.id, user.id, 'admin');
    }
    return reads.projectJson(await reads.findProject(db, user, created.slug));
  };

  // CircleCI answers 200 (not 201) with the new project.
  app.post<{ Params: { org: string } }>(`${P}/organization/:org/project`, async (req) =>
    createProject(req, req.params.org),
  );
  app.post<{ Params: { vcs: string; org: string } }>(`${P}/organization/:vcs/:org/project`, async (req) =>
    createProject(req, `${req.params.vcs}/${req.params.org}`),
  );

  app.get(`${P}/project/:vcs/:org/:repo`, async (req) => reads.projectJson(await project(req)));

  // ---- pipelines ----

  app.post(`${P}/project/:vcs/:org/:repo/pipeline`, async (req, reply) => {
    const user = currentUser(req);
    const p = await project(req);
    const body = bodyObject(req);
    const branch = optionalString(body, 'branch');
    const tag = optionalString(body, 'tag');
    if (branch !== undefined && tag !== undefined) {
      throw new TorusError('TORUS_E_BAD_REQUEST', 'branch and tag are mutually exclusive: give one of them');
    }
    const parameters = validateParameters(body.parameters);
    const created = await engine.triggerPipeline({
      projectId: p.id,
      ...(tag !== undefined ? { tag } : { branch: branch ?? p.default_branch }),
      ...(parameters ? { parameters } : {}),
      actorId: user.id,
      triggerType: 'api',
    });
    return reply.status(201).send({
      id: created.id,
      state: created.state,
      number: created.number,
      created_at: created.createdAt.toISOString(),
    });
  });

  app.get(`${P}/project/:vcs/:org/:repo/pipeline`, async (req) => {
    const user = currentUser(req);
    const p = await project(req);
    const page = pageOf(req);
    const rows = await reads.listPipelines(
      db,
      user,
      { projectId: p.id, branch: queryString(req, 'branch') },
      page,
    );
    return paginate(rows, page, reads.pipelineJson);
  });

  app.get(`${P}/project/:vcs/:org/:repo/pipeline/mine`, async (req) => {
    const user = currentUser(req);
    const p = await project(req);
    const page = pageOf(req);
    const rows = await reads.listPipelines(db, user, { projectId: p.id, actorId: user.id }, page);
    return paginate(rows, page, reads.pipelineJson);
  });

  app.get<{ Params: SlugParams & { number: string } }>(
    `${P}/project/:vcs/:org/:repo/pipeline/:number`,
    async (req) => {
      const p = await project(req);
      const n = positiveInt(req.params.number, 'Pipeline');
      return reads.pipelineJson(await reads.findPipelineByNumber(db, currentUser(req), p, n));
    },
  );

  app.get(`${P}/pipeline`, async (req) => {
    const user = currentUser(req);
    const orgSlug = queryString(req, 'org-slug');
    let orgId: string | undefined;
    if (orgSlug) {
      const org = await accounts.getOrg(
        orgSlug.includes('/') ? `circleci/${orgSlug.slice(orgSlug.lastIndexOf('/') + 1)}` : orgSlug,
      );
      if (!org || !(await reads.canAccessOrg(db, user, org.id)))
        throw new TorusError('TORUS_E_NOT_FOUND', 'Organization not found');
      orgId = org.id;
    }
    const mine = queryString(req, 'mine');
    const page = pageOf(req);
    const rows = await reads.listPipelines(
      db,
      user,
      { orgId, actorId: mine === 'true' ? user.id : undefined },
      page,
    );
    return paginate(rows, page, reads.pipelineJson);
  });

  app.get<{ Params: { id: string } }>(`${P}/pipeline/:id`, async (req) =>
    reads.pipelineJson(await reads.findPipeline(db, currentUser(req), uuidParam(req.params.id, 'Pipeline'))),
  );

  app.get<{ Params: { id: string } }>(`${P}/pipeline/:id/config`, async (req) => {
    const p = await reads.findPipeline(db, currentUser(req), uuidParam(req.params.id, 'Pipeline'));
    return reads.pipelineConfig(db, p.id);
  });

  app.get<{ Params: { id: string } }>(`${P}/pipeline/:id/workflow`, async (req) => {
    const p = await reads.findPipeline(db, currentUser(req), uuidParam(req.params.id, 'Pipeline'));
    const page = pageOf(req);
    return paginate(await reads.listWorkflows(db, p.id, page), page, reads.workflowJson);
  });

  // ---- workflows ----

  const workflow = (req: FastifyRequest<{ Params: { id: string } }>) =>
    reads.findWorkflow(db, currentUser(req), uuidParam(req.params.id, 'Workflow'));

  app.get<{ Params: { id: string } }>(`${P}/workflow/:id`, async (req) =>
    reads.workflowJson(await workflow(req)),
  );

  app.get<{ Params: { id: string } }>(`${P}/workflow/:id/job`, async (req) => {
    const w = await workflow(req);
    const page = pageOf(req, 100);
    const { rows } = await reads.listWorkflowJobs(db, w, page);
    return paginate(rows, page, (j) => j);
  });

  app.post<{ Params: { id: string; requestId: string } }>(
    `${P}/workflow/:id/approve/:requestId`,
    async (req, reply) => {
      const w = await workflow(req);
      await engine.approveJob(w.id, uuidParam(req.params.requestId, 'Approval request'), currentUser(req).id);
      return reply.status(202).send({ message: 'Accepted.' });
    },
  );

  app.post<{ Params: { id: string } }>(`${P}/workflow/:id/cancel`, async (req, reply) => {
    const w = await workflow(req);
    await engine.cancelWorkflow(w.id, currentUser(req).id);
    return reply.status(202).send({ message: 'Accepted.' });
  });

  app.post<{ Params: { id: string } }>(`${P}/workflow/:id/rerun`, async (req, reply) => {
    const w = await workflow(req);
    const body = bodyObject(req);
    if (optionalBoolean(body, 'enable_ssh')) {
      throw new TorusError('TORUS_E_BAD_REQUEST', 'enable_ssh is not supported by Torus: rerun without SSH');
    }
    const fromFailed = optionalBoolean(body, 'from_failed');
    // Torus extension: CircleCI's "Rerun failed tests" (a web-app action with no public API)
    const failedTestsOnly = optionalBoolean(body, 'failed_tests_only');
    optionalBoolean(body, 'sparse_tree'); // accepted; Torus reruns exactly the jobs asked for either way
    let jobs: string[] | undefined;
    if (body.jobs !== undefined && body.jobs !== null) {
      if (
        !Array.isArray(body.jobs) ||
        !body.jobs.every((j): j is string => typeof j === 'string' && isUuid(j))
      ) {
        throw new TorusError('TORUS_E_BAD_REQUEST', 'jobs must be a list of job ids (UUIDs)');
      }
      jobs = body.jobs.map((j) => j.toLowerCase());
    }
    if (fromFailed && jobs)
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        'from_failed and jobs are mutually exclusive: give one of them',
      );
    const r = await engine.rerunWorkflow(w.id, {
      fromFailed,
      ...(failedTestsOnly ? { failedTestsOnly } : {}),
      jobs,
      actorId: currentUser(req).id,
    });
    return reply.status(202).send({ workflow_id: r.workflowId });
  });

  // ---- jobs ----

  app.get<{ Params: SlugParams & { number: string } }>(
    `${P}/project/:vcs/:org/:repo/job/:number`,
    async (req) => {
      const p = await project(req);
      const j = await reads.findJobByNumber(db, currentUser(req), p, positiveInt(req.params.number, 'Job'));
      const messages = reads.storedJobMessages(j);
      if (j.status === 'queued') {
        for (const m of await scheduler.explainQueued(j.id))
          messages.push({ type: m.type, message: m.message, ...(m.reason ? { reason: m.reason } : {}) });
      }
      return reads.jobDetailsJson(j, {
        base: baseUrl(req, res.settings.url),
        parallelRuns: await reads.parallelRuns(db, j),
        messages,
      });
    },
  );

  app.post<{ Params: SlugParams & { number: string } }>(
    `${P}/project/:vcs/:org/:repo/job/:number/cancel`,
    async (req) => {
      const p = await project(req);
      const j = await reads.findJobByNumber(db, currentUser(req), p, positiveInt(req.params.number, 'Job'));
      await engine.cancelJob(j.id, currentUser(req).id);
      return { message: 'Job cancelled successfully.' };
    },
  );

  app.post<{ Params: { jobId: string } }>(`${P}/jobs/:jobId/cancel`, async (req) => {
    const j = await reads.findJobOrg(db, currentUser(req), uuidParam(req.params.jobId, 'Job'));
    await engine.cancelJob(j.id, currentUser(req).id);
    return { message: 'Job cancelled successfully.' };
  });
}
