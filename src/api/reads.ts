// What the GET endpoints read: SQL on the schema's tables, turned into CircleCI's response shapes
// (API v2 and the v1.1 job). Who may see what is decided here too: admins see everything, members
// the projects of the organizations they belong to (others get the same 404 as a missing project).
import type { User } from '../accounts/index.js';
import type { Queryable } from '../storage/index.js';
import { TorusError } from '../ops/index.js';
import { iso, type Page } from './http.js';

export const NIL_UUID = '00000000-0000-0000-0000-000000000000';

// ---- projects ----

export interface ProjectRecord {
  id: string;
  org_id: string;
  org_name: string;
  org_slug: string;
  name: string;
  slug: string;
  vcs_url: string;
  default_branch: string;
  created_at: Date;
}

const PROJECT_SQL = `SELECT pr.id, pr.org_id, o.name AS org_name, o.slug AS org_slug, pr.name, pr.slug, pr.vcs_url,
  pr.default_branch, pr.created_at FROM projects pr JOIN organizations o ON o.id = pr.org_id`;

/** CircleCI clients also write GitHub's and Bitbucket's prefixes; plain-git projects are 'circleci/…'. */
const VCS_ALIASES = new Set(['gh', 'github', 'bb', 'bitbucket']);

export async function canAccessOrg(db: Queryable, user: User, orgId: string): Promise<boolean> {
  if (user.role === 'admin') return true;
  const r = await db.query('SELECT 1 FROM org_members WHERE org_id = $1 AND user_id = $2', [orgId, user.id]);
  return r.rows.length > 0;
}

async function visible<T extends { org_id: string }>(
  db: Queryable,
  user: User,
  row: T | undefined,
): Promise<T | null> {
  if (!row) return null;
  return (await canAccessOrg(db, user, row.org_id)) ? row : null;
}

export async function findProject(db: Queryable, user: User, slug: string): Promise<ProjectRecord> {
  const parts = slug.split('/');
  const candidates = [slug];
  if (parts.length === 3 && VCS_ALIASES.has(parts[0]!.toLowerCase()))
    candidates.push(`circleci/${parts[1]}/${parts[2]}`);
  for (const s of candidates) {
    const r = await db.query<ProjectRecord>(`${PROJECT_SQL} WHERE pr.slug = $1`, [s]);
    const p = await visible(db, user, r.rows[0]);
    if (p) return p;
  }
  throw new TorusError('TORUS_E_NOT_FOUND', 'Project not found');
}

export async function listVisibleProjects(db: Queryable, user: User, page: Page): Promise<ProjectRecord[]> {
  const r = await db.query<ProjectRecord>(
    `${PROJECT_SQL} WHERE $1::boolean OR pr.org_id IN (SELECT org_id FROM org_members WHERE user_id = $2)
     ORDER BY pr.slug LIMIT $3 OFFSET $4`,
    [user.role === 'admin', user.id, page.limit + 1, page.offset],
  );
  return r.rows;
}

export function projectJson(p: ProjectRecord) {
  return {
    slug: p.slug,
    name: p.name,
    id: p.id,
    organization_name: p.org_name,
    organization_slug: p.org_slug,
    organization_id: p.org_id,
    vcs_info: { vcs_url: p.vcs_url, provider: 'CircleCI', default_branch: p.default_branch },
  };
}

// ---- pipelines ----

interface PipelineRecord {
  id: string;
  project_id: string;
  org_id: string;
  project_slug: string;
  project_vcs_url: string;
  number: number;
  state: string;
  trigger_type: string;
  actor_id: string | null;
  actor_login: string | null;
  received_at: Date;
  branch: string | null;
  tag: string | null;
  revision: string | null;
  vcs: Record<string, unknown>;
  errors: Array<{ type?: string; message?: string }>;
  config_source: string | null;
  config_compiled: string | null;
  created_at: Date;
  updated_at: Date;
}

const PIPELINE_SQL = `SELECT p.id, p.project_id, pr.org_id, pr.slug AS project_slug, pr.vcs_url AS project_vcs_url, p.number,
  p.state, p.trigger_type, p.actor_id, u.login AS actor_login, p.received_at, p.branch, p.tag, p.revision, p.vcs, p.errors,
  p.created_at, p.updated_at
  FROM pipelines p JOIN projects pr ON pr.id = p.project_id LEFT JOIN users u ON u.id = p.actor_id`;

const PIPELINE_ERROR_TYPES = new Set([
  'config',
  'invalid-trigger-setup',
  'config-fetch',
  'timeout',
  'permission',
  'other',
  'trigger-rule',
  'plan',
]);

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function pipelineJson(p: PipelineRecord) {
  const vcs = p.vcs ?? {};
  const commit = (typeof vcs.commit === 'object' && vcs.commit !== null ? vcs.commit : vcs) as Record<
    string,
    unknown
  >;
  const subject = str(commit.subject);
  const origin = str(vcs.origin_repository_url) ?? str(vcs.originRepositoryUrl) ?? p.project_vcs_url;
  const target = str(vcs.target_repository_url) ?? str(vcs.targetRepositoryUrl) ?? p.project_vcs_url;
  return {
    id: p.id,
    errors: (Array.isArray(p.errors) ? p.errors : []).map((e) => ({
      type: PIPELINE_ERROR_TYPES.has(e.type ?? '') ? e.type! : 'other',
      message: e.message ?? '',
    })),
    project_slug: p.project_slug,
    updated_at: iso(p.updated_at)!,
    number: p.number,
    state: p.state,
    created_at: iso(p.created_at)!,
    trigger: {
      type: p.trigger_type,
      received_at: iso(p.received_at)!,
      actor: { login: p.actor_login ?? p.trigger_type, avatar_url: null },
    },
    vcs: {
      provider_name: 'CircleCI',
      origin_repository_url: origin,
      target_repository_url: target,
      revision: p.revision,
      ...(p.branch !== null ? { branch: p.branch } : {}),
      ...(p.tag !== null ? { tag: p.tag } : {}),
      ...(subject !== undefined ? { commit: { subject, body: str(commit.body) ?? null } } : {}),
    },
  };
}

export async function findPipeline(db: Queryable, user: User, id: string): Promise<PipelineRecord> {
  const r = await db.query<PipelineRecord>(`${PIPELINE_SQL} WHERE p.id = $1`, [id]);
  const p = await visible(db, user, r.rows[0]);
  if (!p) throw new TorusError('TORUS_E_NOT_FOUND', 'Pipeline not found');
  return p;
}

export async function findPipelineByNumber(
  db: Queryable,
  user: User,
  project: ProjectRecord,
  n: number,
): Promise<PipelineRecord> {
  const r = await db.query<PipelineRecord>(`${PIPELINE_SQL} WHERE p.project_id = $1 AND p.number = $2`, [
    project.id,
    n,
  ]);
  const p = await visible(db, user, r.rows[0]);
  if (!p) throw new TorusError('TORUS_E_NOT_FOUND', 'Pipeline not found');
  return p;
}

export async function pipelineConfig(db: Queryable, id: string) {
  const r = await db.query<{
    config_source: string | null;
    config_compiled: string | null;
    setup_config_source: string | null;
    setup_config_compiled: string | null;
  }>(
    'SELECT config_source, config_compiled, setup_config_source, setup_config_compiled FROM pipelines WHERE id = $1',
    [id],
  );
  const row = r.rows[0];
  const out: Record<string, string> = {
    source: row?.config_source ?? '',
    compiled: row?.config_compiled ?? '',
  };
  // a dynamic-config pipeline also shows the setup config it started from
  if (row?.setup_config_source != null) {
    out['setup-config'] = row.setup_config_source;
    out['compiled-setup-config'] = row.setup_config_compiled ?? '';
  }
  return out;
}

export async function listPipelines(
  db: Queryable,
  user: User,
  where: { projectId?: string; orgId?: string; branch?: string; actorId?: string },
  page: Page,
): Promise<PipelineRecord[]> {
  const conds: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    conds.push(sql.replace('?', `$${params.length}`));
  };
  if (where.projectId) add('p.project_id = ?', where.projectId);
  if (where.orgId) add('pr.org_id = ?', where.orgId);
  if (where.branch !== undefined) add('p.branch = ?', where.branch);
  if (where.actorId) add('p.actor_id = ?', where.actorId);
  if (user.role !== 'admin') add('pr.org_id IN (SELECT org_id FROM org_members WHERE user_id = ?)', user.id);
  params.push(page.limit + 1, page.offset);
  const r = await db.query<PipelineRecord>(
    `${PIPELINE_SQL} ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''}
     ORDER BY p.created_at DESC, p.number DESC LIMIT $${params.length - 1} OFFSET $${params.length}`,
    params,
  );
  return r.rows;
}

// ---- workflows ----

interface WorkflowRecord {
  id: string;
  pipeline_id: string;
  pipeline_number: number;
  project_slug: string;
  org_id: string;
  name: string;
  status: string;
  started_by: string | null;
  pipeline_actor: string | null;
  canceled_by: string | null;
  errored_by: string | null;
  tag: string | null;
  max_auto_reruns: number | null;
  auto_rerun_number: number | null;
  created_at: Date;
  stopped_at: Date | null;
}

const WORKFLOW_SQL = `SELECT w.id, w.pipeline_id, p.number AS pipeline_number, pr.slug AS project_slug, pr.org_id, w.name, w.status,
  w.started_by, p.actor_id AS pipeline_actor, w.canceled_by, w.errored_by, w.tag, w.max_auto_reruns, w.auto_rerun_number,
  w.created_at, w.stopped_at
  FROM workflows w JOIN pipelines p ON p.id = w.pipeline_id JOIN projects pr ON pr.id = w.project_id`;

export function workflowJson(w: WorkflowRecord) {
  return {
    pipeline_id: w.pipeline_id,
    id: w.id,
    name: w.name,
    project_slug: w.project_slug,
    status: w.status,
    // CircleCI always names who started a workflow; a webhook-triggered one has no Torus user.
    started_by: w.started_by ?? w.pipeline_actor ?? NIL_UUID,
    pipeline_number: w.pipeline_number,
    created_at: iso(w.created_at)!,
    stopped_at: iso(w.stopped_at),
    tag: w.tag === 'setup' ? 'setup' : null,
    ...(w.canceled_by ? { canceled_by: w.canceled_by } : {}),
    ...(w.errored_by ? { errored_by: w.errored_by } : {}),
    ...(w.max_auto_reruns && w.max_auto_reruns >= 1 ? { max_auto_reruns: w.max_auto_reruns } : {}),
    ...(w.auto_rerun_number && w.auto_rerun_number >= 1 ? { auto_rerun_number: w.auto_rerun_number } : {}),
  };
}

export async function findWorkflow(db: Queryable, user: User, id: string): Promise<WorkflowRecord> {
  const r = await db.query<WorkflowRecord>(`${WORKFLOW_SQL} WHERE w.id = $1`, [id]);
  const w = await visible(db, user, r.rows[0]);
  if (!w) throw new TorusError('TORUS_E_NOT_FOUND', 'Workflow not found');
  return w;
}

export async function listWorkflows(
  db: Queryable,
  pipelineId: string,
  page: Page,
): Promise<WorkflowRecord[]> {
  const r = await db.query<WorkflowRecord>(
    `${WORKFLOW_SQL} WHERE w.pipeline_id = $1 ORDER BY w.created_at, w.name LIMIT $2 OFFSET $3`,
    [pipelineId, page.limit + 1, page.offset],
  );
  return r.rows;
}

// ---- jobs ----

interface JobRecord {
  id: string;
  workflow_id: string;
  project_id: string;
  name: string;
  type: string;
  number: number | null;
  status: string;
  requires: Array<{ name: string; statuses?: string[] }>;
  approval_request_id: string | null;
  approved_by: string | null;
  canceled_by: string | null;
  spec: {
    executor?: { type?: string };
    resourceClass?: string;
    steps?: Array<{ type: string; command?: string }>;
  } | null;
  parallelism: number;
  resource_class: string | null;
  executor_type: string | null;
  contexts: unknown[];
  messages: Array<{ type?: string; message?: string; reason?: string }>;
  created_at: Date;
  queued_at: Date | null;
  started_at: Date | null;
  stopped_at: Date | null;
}

const JOB_COLUMNS = `j.id, j.workflow_id, j.project_id, j.name, j.type, j.number, j.status, j.requires, j.approval_request_id,
  j.approved_by, j.canceled_by, j.spec, j.parallelism, j.resource_class, j.executor_type, j.contexts, j.messages, j.created_at,
  j.queued_at, j.started_at, j.stopped_at`;

const REQUIRED_STATUSES = new Set(['success', 'failed', 'canceled']);

export async function listWorkflowJobs(db: Queryable, w: WorkflowRecord, page: Page) {
  // All jobs are read to resolve `requires` names to ids; a workflow holds at most a few hundred.
  const r = await db.query<JobRecord>(
    `SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.workflow_id = $1 ORDER BY j.created_at, j.name`,
    [w.id],
  );
  const idByName = new Map(r.rows.map((j) => [j.name, j.id]));
  const all = r.rows.map((j) => {
    const requires: Record<string, string[]> = {};
    const dependencies: string[] = [];
    for (const req of Array.isArray(j.requires) ? j.requires : []) {
      const id = idByName.get(req.name);
      if (!id) continue;
      dependencies.push(id);
      // The spec's enum; CircleCI's `terminal` also admits not_run and unauthorized, not shown here.
      requires[id] = (req.statuses ?? ['success']).filter((s) => REQUIRED_STATUSES.has(s));
    }
    return {
      id: j.id,
      name: j.name,
      type: j.type === 'approval' ? 'approval' : 'build',
      status: j.status,
      ...(j.number !== null ? { job_number: j.number } : {}),
      dependencies,
      requires,
      started_at: iso(j.started_at),
      stopped_at: iso(j.stopped_at),
      project_slug: w.project_slug,
      ...(j.approval_request_id ? { approval_request_id: j.approval_request_id } : {}),
      ...(j.canceled_by ? { canceled_by: j.canceled_by } : {}),
      ...(j.approved_by ? { approved_by: j.approved_by } : {}),
    };
  });
  return { rows: all.slice(page.offset, page.offset + page.limit + 1) };
}

export interface JobDetailsRecord extends JobRecord {
  workflow_name: string;
  pipeline_id: string;
  pipeline_number: number;
  project_slug: string;
  project_name: string;
  project_vcs_url: string;
  org_id: string;
  org_name: string;
  branch: string | null;
  tag: string | null;
  revision: string | null;
}

export async function findJobByNumber(
  db: Queryable,
  user: User,
  project: ProjectRecord,
  n: number,
): Promise<JobDetailsRecord> {
  const r = await db.query<JobDetailsRecord>(
    `SELECT ${JOB_COLUMNS}, w.name AS workflow_name, w.pipeline_id, p.number AS pipeline_number, pr.slug AS project_slug,
       pr.name AS project_name, pr.vcs_url AS project_vcs_url, pr.org_id, o.name AS org_name, p.branch, p.tag, p.revision
     FROM jobs j JOIN workflows w ON w.id = j.workflow_id JOIN pipelines p ON p.id = w.pipeline_id
     JOIN projects pr ON pr.id = j.project_id JOIN organizations o ON o.id = pr.org_id
     WHERE j.project_id = $1 AND j.number = $2`,
    [project.id, n],
  );
  const j = await visible(db, user, r.rows[0]);
  if (!j) throw new TorusError('TORUS_E_NOT_FOUND', 'Job not found');
  return j;
}

export async function findJobOrg(
  db: Queryable,
  user: User,
  jobId: string,
): Promise<{ id: string; org_id: string }> {
  const r = await db.query<{ id: string; org_id: string }>(
    'SELECT j.id, pr.org_id FROM jobs j JOIN projects pr ON pr.id = j.project_id WHERE j.id = $1',
    [jobId],
  );
  const j = await visible(db, user, r.rows[0]);
  if (!j) throw new TorusError('TORUS_E_NOT_FOUND', 'Job not found');
  return j;
}

export async function parallelRuns(
  db: Queryable,
  j: JobDetailsRecord,
): Promise<Array<{ index: number; status: string }>> {
  const r = await db.query<{ node_index: number; status: string }>(
    'SELECT node_index, status FROM tasks WHERE job_id = $1 ORDER BY node_index',
    [j.id],
  );
  if (r.rows.length > 0) return r.rows.map((t) => ({ index: t.node_index, status: t.status }));
  return Array.from({ length: Math.max(1, j.parallelism) }, (_, index) => ({ index, status: j.status }));
}

export function jobWebUrl(base: string, j: JobDetailsRecord): string {
  return `${base}/pipelines/${j.project_slug}/${j.pipeline_number}/workflows/${j.workflow_id}/jobs/${j.number}`;
}

export function jobDetailsJson(
  j: JobDetailsRecord,
  extra: {
    base: string;
    parallelRuns: Array<{ index: number; status: string }>;
    messages: Array<{ type: string; message: string; reason?: string }>;
  },
) {
  const duration = j.started_at && j.stopped_at ? j.stopped_at.getTime() - j.started_at.getTime() : null;
  return {
    web_url: jobWebUrl(extra.base, j),
    project: {
      id: j.project_id,
      slug: j.project_slug,
      name: j.project_name,
      external_url: j.project_vcs_url,
    },
    parallel_runs: extra.parallelRuns,
    started_at: iso(j.started_at),
    latest_workflow: { id: j.workflow_id, name: j.workflow_name },
    name: j.name,
    executor: {
      type: j.executor_type ?? j.spec?.executor?.type ?? 'docker',
      resource_class: j.resource_class ?? j.spec?.resourceClass ?? 'medium',
    },
    parallelism: j.parallelism,
    status: j.status,
    number: j.number!,
    pipeline: { id: j.pipeline_id },
    duration,
    created_at: iso(j.created_at)!,
    messages: extra.messages,
    contexts: (Array.isArray(j.contexts) ? j.contexts : []).map((c) =>
      typeof c === 'string' ? { name: c } : { name: String((c as { name?: unknown }).name ?? '') },
    ),
    organization: { name: j.org_name },
    queued_at: iso(j.queued_at),
    stopped_at: iso(j.stopped_at),
  };
}

export function storedJobMessages(j: JobRecord): Array<{ type: string; message: string; reason?: string }> {
  return (Array.isArray(j.messages) ? j.messages : []).map((m) => ({
    type: m.type ?? 'info',
    message: m.message ?? '',
    ...(m.reason ? { reason: m.reason } : {}),
  }));
}

// ---- v1.1 build details ----

export interface StepRecord {
  task_id: string;
  node_index: number;
  step_index: number;
  name: string;
  type: string;
  status: string;
  exit_code: number | null;
  background: boolean;
  started_at: Date;
  stopped_at: Date | null;
  output_bytes: number;
  has_chunks: boolean;
}

export async function jobSteps(db: Queryable, jobId: string): Promise<StepRecord[]> {
  const r = await db.query<StepRecord>(
    `SELECT s.task_id, t.node_index, s.step_index, s.name, s.type, s.status, s.exit_code, s.background, s.started_at,
       s.stopped_at, s.output_bytes,
       EXISTS (SELECT 1 FROM output_segments c WHERE c.task_id = s.task_id AND c.step_index = s.step_index) AS has_chunks
     FROM steps s JOIN tasks t ON t.id = s.task_id WHERE t.job_id = $1 ORDER BY s.step_index, t.node_index`,
    [jobId],
  );
  return r.rows;
}

export async function taskOf(db: Queryable, jobId: string, nodeIndex: number): Promise<string | null> {
  const r = await db.query<{ id: string }>('SELECT id FROM tasks WHERE job_id = $1 AND node_index = $2', [
    jobId,
    nodeIndex,
  ]);
  return r.rows[0]?.id ?? null;
}

/** v1.1's `status` and `lifecycle`/`outcome` for a v2 job status. */
function v11Status(status: string): { status: string; lifecycle: string; outcome: string | null } {
  switch (status) {
    case 'blocked':
    case 'on_hold':
      return { status: 'not_running', lifecycle: 'not_running', outcome: null };
    case 'queued':
      return { status: 'queued', lifecycle: 'queued', outcome: null };
    case 'running':
      return { status: 'running', lifecycle: 'running', outcome: null };
    case 'not_run':
      return { status: 'not_run', lifecycle: 'not_run', outcome: null };
    default:
      return { status, lifecycle: 'finished', outcome: status };
  }
}

export function v11JobJson(
  j: JobDetailsRecord,
  steps: StepRecord[],
  base: string,
  outputUrl: (step: number, index: number) => string,
) {
  const s = v11Status(j.status);
  const [, username = '', reponame = ''] = j.project_slug.split('/');
  const byStep = new Map<number, StepRecord[]>();
  for (const st of steps) byStep.set(st.step_index, [...(byStep.get(st.step_index) ?? []), st]);
  const specSteps = j.spec?.steps ?? [];
  return {
    build_num: j.number,
    job_name: j.name,
    username,
    reponame,
    vcs_type: j.project_slug.split('/')[0],
    vcs_url: j.project_vcs_url,
    branch: j.branch,
    vcs_tag: j.tag,
    vcs_revision: j.revision,
    build_url: jobWebUrl(base, j),
    status: s.status,
    lifecycle: s.lifecycle,
    outcome: s.outcome,
    parallel: Math.max(1, j.parallelism),
    queued_at: iso(j.queued_at),
    start_time: iso(j.started_at),
    stop_time: iso(j.stopped_at),
    build_time_millis: j.started_at && j.stopped_at ? j.stopped_at.getTime() - j.started_at.getTime() : null,
    canceled: j.status === 'canceled',
    infrastructure_fail: j.status === 'infrastructure_fail',
    timedout: j.status === 'timedout',
    failed: j.status === 'failed' ? true : null,
    workflows: {
      job_name: j.name,
      job_id: j.id,
      workflow_id: j.workflow_id,
      workflow_name: j.workflow_name,
      pipeline_id: j.pipeline_id,
      pipeline_number: j.pipeline_number,
    },
    messages: storedJobMessages(j),
    steps: [...byStep.entries()].map(([stepIndex, actions]) => {
      // Config steps start at index 2, after "Spin up environment" and "Preparing environment variables".
      const spec = specSteps[stepIndex - 2];
      return {
        name: actions[0]!.name,
        actions: actions.map((a) => ({
          index: a.node_index,
          step: a.step_index,
          allocation_id: a.task_id,
          name: a.name,
          type: a.type,
          status: a.status,
          exit_code: a.exit_code,
          background: a.background,
          parallel: j.parallelism > 1,
          start_time: iso(a.started_at),
          end_time: iso(a.stopped_at),
          run_time_millis: a.stopped_at ? a.stopped_at.getTime() - a.started_at.getTime() : null,
          bash_command: spec?.type === 'run' && typeof spec.command === 'string' ? spec.command : null,
          has_output: a.output_bytes > 0 || a.has_chunks || a.status === 'running',
          output_url: outputUrl(a.step_index, a.node_index),
          failed: a.status === 'failed' ? true : null,
          timedout: a.status === 'timedout' ? true : null,
          canceled: a.status === 'canceled' ? true : null,
          infrastructure_fail: null,
          continue: null,
          truncated: false,
          insignificant: false,
          messages: [],
        })),
      };
    }),
  };
}
