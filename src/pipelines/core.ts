// What the engine's systems share: the resources and dependencies they are built from, the rows
// they read, and small SQL helpers (row locks, NOTIFY).
import type {
  CompiledJob,
  CompileOptions,
  CompileResult,
  OrbResolver,
  Requirement,
} from '../config/model.js';
import type { Resources } from '../ops/index.js';
import { TorusError } from '../ops/index.js';
import type { TaskSpec } from '../scheduler/protocol.js';
import { CHANNELS, type Queryable } from '../storage/index.js';
import type { JobStatus, JobType } from './job-state.js';
import type { PipelineState } from './pipeline-state.js';
import type { VcsProvider } from './vcs.js';
import type { WorkflowStatus } from './workflow-state.js';

export type CompileFn = (source: string, opts: CompileOptions) => Promise<CompileResult> | CompileResult;

/**
 * The part of the scheduler (src/scheduler, CONTRACTS.md) the engine uses: a full Scheduler
 * satisfies it, and tests pass a small recording fake.
 */
export interface EngineScheduler {
  enqueue(
    tx: Queryable,
    job: { jobId: string; resourceClass: string; specs: Omit<TaskSpec, 'taskId'>[] },
  ): Promise<string[]>;
  /** queued tasks canceled at once; running ones asked to stop (onJobFinished follows when runningTasks > 0) */
  cancelJob(tx: Queryable, jobId: string): Promise<{ runningTasks: number }>;
}

/**
 * An OrbResolver that narrows to what one organization sees: its pipelines resolve the private orbs
 * of its namespaces (the orb registry's resolver is one, `registryOrbResolver` of src/orbs).
 */
export interface OrgOrbResolver extends OrbResolver {
  forOrg(orgId: string): OrbResolver;
}

export interface EngineCore {
  res: Resources;
  scheduler: EngineScheduler;
  vcs: VcsProvider;
  compile: CompileFn;
  /** where configs' orbs come from; an OrgOrbResolver is narrowed to each project's organization */
  orbResolver?: OrbResolver | OrgOrbResolver;
}

/** The orb resolver a pipeline of organization `orgId` compiles with (none: orbs are a config error). */
export function orbResolverFor(core: EngineCore, orgId: string): OrbResolver | undefined {
  const r = core.orbResolver;
  if (r && 'forOrg' in r && typeof r.forOrg === 'function') return r.forOrg(orgId);
  return r;
}

export const CONFIG_PATH = '.circleci/config.yml';

export interface ProjectRecord {
  id: string;
  org_id: string;
  org_name: string;
  name: string;
  slug: string;
  vcs_url: string;
  default_branch: string;
  created_at: Date;
}

export const PROJECT_COLUMNS = `p.id, p.org_id, o.name AS org_name, p.name, p.slug, p.vcs_url, p.default_branch, p.created_at`;

export interface PipelineRecord {
  id: string;
  project_id: string;
  number: number;
  state: PipelineState;
  trigger_type: string;
  actor_id: string | null;
  received_at: Date;
  branch: string | null;
  tag: string | null;
  revision: string | null;
  parameters: Record<string, string | number | boolean>;
  created_at: Date;
  /** set when a legacy workflow schedule (`triggers: - schedule:`) started the pipeline */
  scheduled_workflow: ScheduledWorkflow | null;
  /** set when a scheduled pipeline (`/project/{slug}/schedule`) triggered it: pipeline.schedule.{id,name} */
  pipeline_schedule: { id: string; name: string } | null;
}

export interface ScheduledWorkflow {
  /** the workflow_schedules row */
  id: string;
  workflow: string;
  cron: string;
}

/** The columns of a PipelineRecord, for SELECT and RETURNING. */
export const PIPELINE_COLUMNS =
  'id, project_id, number, state, trigger_type, actor_id, received_at, branch, tag, revision, parameters, created_at, scheduled_workflow, pipeline_schedule';

export interface WorkflowRecord {
  id: string;
  pipeline_id: string;
  project_id: string;
  name: string;
  status: WorkflowStatus;
  workspace_id: string;
  started_by: string | null;
  max_auto_reruns: number | null;
  auto_rerun_number: number;
  /** CircleCI's workflow tag: 'setup' for the setup workflow of a dynamic configuration */
  tag: string | null;
}

export interface JobRecord {
  id: string;
  workflow_id: string;
  project_id: string;
  name: string;
  type: JobType;
  number: number | null;
  status: JobStatus;
  requires: Requirement[];
  approval_request_id: string | null;
  approved_by: string | null;
  canceled_by: string | null;
  spec: CompiledJob | null;
  parallelism: number;
  resource_class: string | null;
  executor_type: string | null;
  contexts: string[];
  position: number;
  copied_from: string | null;
  queued_at: Date | null;
  started_at: Date | null;
  stopped_at: Date | null;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

export async function notifyPipelineChanged(tx: Queryable, pipelineId: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.pipelineChanged, pipelineId]);
}

/** Locks a workflow row: every change to a workflow's jobs happens under this lock, one at a time. */
export async function lockWorkflow(tx: Queryable, workflowId: string): Promise<WorkflowRecord | null> {
  const { rows } = await tx.query<WorkflowRecord>(
    `SELECT id, pipeline_id, project_id, name, status, workspace_id, started_by, max_auto_reruns, auto_rerun_number, tag
       FROM workflows WHERE id = $1 FOR UPDATE`,
    [workflowId],
  );
  return rows[0] ?? null;
}

export async function lockWorkflowOrThrow(tx: Queryable, workflowId: string): Promise<WorkflowRecord> {
  const wf = isUuid(workflowId) ? await lockWorkflow(tx, workflowId) : null;
  if (!wf) throw new TorusError('TORUS_E_NOT_FOUND', `Workflow not found: ${workflowId}`);
  return wf;
}

export const JOB_COLUMNS = `id, workflow_id, project_id, name, type, number, status, requires, approval_request_id,
  approved_by, canceled_by, spec, parallelism, resource_class, executor_type, contexts, position, copied_from,
  queued_at, started_at, stopped_at`;

export async function workflowJobs(tx: Queryable, workflowId: string): Promise<JobRecord[]> {
  const { rows } = await tx.query<JobRecord>(
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE workflow_id = $1 ORDER BY position, created_at, name`,
    [workflowId],
  );
  return rows;
}
