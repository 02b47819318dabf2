// The workflow DAG: creating a workflow's job rows, and advancing it — deciding blocked jobs whose
// requirements are final, queuing build jobs with the scheduler, and deriving the workflow status.
// Every function here runs inside the caller's transaction, under the workflow's row lock.
import type { CompiledConfig, CompiledWorkflow, WorkflowJob } from '../config/model.js';
import type { Queryable } from '../storage/index.js';
import {
  type EngineCore,
  type JobRecord,
  type PipelineRecord,
  type ProjectRecord,
  type WorkflowRecord,
  PIPELINE_COLUMNS,
  PROJECT_COLUMNS,
  lockWorkflow,
  notifyPipelineChanged,
  workflowJobs,
} from './core.js';
import {
  assertJobTransition,
  decideRequirements,
  isFailureStatus,
  isFinalJobStatus,
  readyStatusOf,
  type JobStatus,
} from './job-state.js';
import { CONTINUATION_KEY_ENV, issueContinuationKey } from './continuation-keys.js';
import { buildTaskSpecs } from './task-spec.js';
import { canTransitionWorkflow, deriveWorkflowStatus, isFinalWorkflowStatus } from './workflow-state.js';

export interface NewWorkflow {
  pipelineId: string;
  projectId: string;
  name: string;
  startedBy: string | null;
  rerunOf?: string;
  workspaceId?: string;
  maxAutoReruns?: number | null;
  autoRerunNumber?: number;
  /** 'setup': the setup workflow of a dynamic configuration */
  tag?: string | null;
}

/** Inserts a workflow row (status running) and returns its id. */
export async function insertWorkflow(core: EngineCore, tx: Queryable, wf: NewWorkflow): Promise<string> {
  const id = core.res.ids.uuid();
  await tx.query(
    `INSERT INTO workflows (id, pipeline_id, project_id, name, status, started_by, rerun_of, workspace_id,
       max_auto_reruns, created_at, auto_rerun_number, tag)
     VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9, $10, $11)`,
    [
      id,
      wf.pipelineId,
      wf.projectId,
      wf.name,
      wf.startedBy,
      wf.rerunOf ?? null,
      wf.workspaceId ?? id,
      wf.maxAutoReruns ?? null,
      core.res.clock.now(),
      wf.autoRerunNumber ?? 0,
      wf.tag ?? null,
    ],
  );
  return id;
}

export interface NewJob {
  name: string;
  type: JobRecord['type'];
  status: JobStatus;
  requires: JobRecord['requires'];
  spec: JobRecord['spec'];
  contexts: string[];
  position: number;
  number?: number | null;
  approvedBy?: string | null;
  canceledBy?: string | null;
  copiedFrom?: string | null;
  queuedAt?: Date | null;
  startedAt?: Date | null;
  stoppedAt?: Date | null;
  resourceClass?: string | null;
  executorType?: string | null;
}

export async function insertJob(
  core: EngineCore,
  tx: Queryable,
  workflowId: string,
  projectId: string,
  job: NewJob,
): Promise<string> {
  const id = core.res.ids.uuid();
  await tx.query(
    `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status, requires, approval_request_id,
       approved_by, canceled_by, spec, parallelism, resource_class, executor_type, contexts, position, copied_from,
       created_at, queued_at, started_at, stopped_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
    [
      id,
      workflowId,
      projectId,
      job.name,
      job.type,
      job.number ?? null,
      job.status,
      JSON.stringify(job.requires),
      // CircleCI's approval_request_id is the approval job's own id
      job.type === 'approval' ? id : null,
      job.approvedBy ?? null,
      job.canceledBy ?? null,
      job.spec ? JSON.stringify(job.spec) : null,
      job.spec?.parallelism ?? 1,
      job.resourceClass ?? null,
      job.executorType ?? job.spec?.executor.type ?? null,
      JSON.stringify(job.contexts),
      job.position,
      job.copiedFrom ?? null,
      core.res.clock.now(),
      job.queuedAt ?? null,
      job.startedAt ?? null,
      job.stoppedAt ?? null,
    ],
  );
  return id;
}

/**
 * Creates one workflow of a compiled config with the jobs that passed the filters (already
 * selected by the caller), then advances it: roots are queued (approvals put on hold).
 */
export async function createWorkflow(
  core: EngineCore,
  tx: Queryable,
  pipeline: Pick<PipelineRecord, 'id' | 'project_id' | 'actor_id'>,
  config: CompiledConfig,
  workflow: CompiledWorkflow,
  jobs: WorkflowJob[],
): Promise<string> {
  const workflowId = await insertWorkflow(core, tx, {
    pipelineId: pipeline.id,
    projectId: pipeline.project_id,
    name: workflow.name,
    startedBy: pipeline.actor_id,
    maxAutoReruns: workflow.maxAutoReruns ?? null,
    tag: config.setup ? 'setup' : null,
  });
  let position = 0;
  for (const job of jobs) {
    const spec = job.type === 'build' && job.job ? config.jobs[job.job] : undefined;
    if (job.type === 'build' && !spec) {
      throw new Error(
        `internal: workflow ${workflow.name} job ${job.name} names job ${String(job.job)}, which the compiled config lacks`,
      );
    }
    await insertJob(core, tx, workflowId, pipeline.project_id, {
      name: job.name,
      type: job.type,
      status: 'blocked',
      requires: job.requires,
      spec: spec ?? null,
      contexts: job.context,
      position: position++,
    });
  }
  await advanceWorkflow(core, tx, workflowId);
  return workflowId;
}

interface QueueContext {
  pipeline: PipelineRecord;
  project: ProjectRecord;
  username: string | null;
}

async function loadQueueContext(tx: Queryable, pipelineId: string): Promise<QueueContext> {
  const { rows } = await tx.query<PipelineRecord>(
    `SELECT ${PIPELINE_COLUMNS}
       FROM pipelines WHERE id = $1`,
    [pipelineId],
  );
  const pipeline = rows[0];
  if (!pipeline) throw new Error(`internal: pipeline ${pipelineId} vanished`);
  const proj = await tx.query<ProjectRecord>(
    `SELECT ${PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id WHERE p.id = $1`,
    [pipeline.project_id],
  );
  const project = proj.rows[0];
  if (!project) throw new Error(`internal: project ${pipeline.project_id} vanished`);
  let username: string | null = null;
  if (pipeline.actor_id) {
    const u = await tx.query<{ login: string }>('SELECT login FROM users WHERE id = $1', [pipeline.actor_id]);
    username = u.rows[0]?.login ?? null;
  }
  return { pipeline, project, username };
}

/** Gives a build job its project-wide number and hands its tasks to the scheduler. */
async function queueJob(
  core: EngineCore,
  tx: Queryable,
  ctx: QueueContext,
  workflow: { id: string; workspace_id: string },
  job: JobRecord,
): Promise<void> {
  if (!job.spec) throw new Error(`internal: build job ${job.id} has no spec`);
  if (!ctx.pipeline.revision) throw new Error(`internal: pipeline ${ctx.pipeline.id} has no revision`);
  const num = await tx.query<{ number: number }>(
    'UPDATE projects SET next_job_number = next_job_number + 1 WHERE id = $1 RETURNING next_job_number - 1 AS number',
    [job.project_id],
  );
  const number = num.rows[0]?.number;
  if (number === undefined) throw new Error(`internal: project ${job.project_id} vanished`);
  // CIRCLE_PREVIOUS_BUILD_NUM: the largest job number on the same branch below this one
  const prev = await tx.query<{ number: number | null }>(
    `SELECT max(j.number) AS number FROM jobs j
       JOIN workflows w ON w.id = j.workflow_id JOIN pipelines p ON p.id = w.pipeline_id
      WHERE j.project_id = $1 AND j.number < $2 AND p.branch IS NOT DISTINCT FROM $3 AND p.tag IS NOT DISTINCT FROM $4`,
    [job.project_id, number, ctx.pipeline.branch, ctx.pipeline.tag],
  );
  const { resourceClass, specs } = buildTaskSpecs({
    job: { id: job.id, name: job.name, number },
    compiled: job.spec,
    workflow: { id: workflow.id, workspaceId: workflow.workspace_id },
    pipeline: {
      id: ctx.pipeline.id,
      number: ctx.pipeline.number,
      branch: ctx.pipeline.branch,
      tag: ctx.pipeline.tag,
      revision: ctx.pipeline.revision,
    },
    project: {
      id: ctx.project.id,
      slug: ctx.project.slug,
      name: ctx.project.name,
      orgId: ctx.project.org_id,
      orgName: ctx.project.org_name,
      vcsUrl: ctx.project.vcs_url,
    },
    checkoutUrl: core.vcs.checkoutUrl(ctx.project.vcs_url),
    serverUrl: core.res.settings.url.replace(/\/+$/, ''),
    previousBuildNum: prev.rows[0]?.number ?? null,
    username: ctx.username,
  });
  if (ctx.pipeline.state === 'setup-pending' || ctx.pipeline.state === 'setup') {
    // a job of the setup workflow: it may continue the pipeline (dynamic configuration)
    const key = await issueContinuationKey(core, tx, ctx.pipeline.id, job.id);
    for (const spec of specs) {
      spec.environment[CONTINUATION_KEY_ENV] = key;
      spec.secrets.push(key);
    }
  }
  await core.scheduler.enqueue(tx, { jobId: job.id, resourceClass, specs });
  await tx.query(
    `UPDATE jobs SET status = 'queued', number = $2, queued_at = $3, resource_class = $4, executor_type = $5 WHERE id = $1`,
    [job.id, number, core.res.clock.now(), resourceClass, job.spec.executor.type],
  );
  job.status = 'queued';
  job.number = number;
}

async function setJobStatus(core: EngineCore, tx: Queryable, job: JobRecord, to: JobStatus): Promise<void> {
  assertJobTransition(job.status, to, `${job.name} (${job.id})`);
  const now = core.res.clock.now();
  // a no-op job "runs" the moment it succeeds
  const started = to === 'success' ? now : null;
  await tx.query(
    `UPDATE jobs SET status = $2, started_at = coalesce(started_at, $3), stopped_at = $4 WHERE id = $1`,
    [job.id, to, started, to === 'on_hold' ? null : now],
  );
  job.status = to;
}

/**
 * Brings a workflow up to date with its jobs: each blocked job whose requirements are all final
 * is queued (approval: on hold; no-op: success) or marked not_run, repeatedly, since a decision can
 * unblock others; then the workflow's status is derived. A final workflow (canceled) queues nothing.
 * Returns whether anything changed.
 */
export async function advanceWorkflow(core: EngineCore, tx: Queryable, workflowId: string): Promise<boolean> {
  const wf = await lockWorkflow(tx, workflowId);
  if (!wf) return false;
  if (isFinalWorkflowStatus(wf.status)) return false;
  const jobs = await workflowJobs(tx, workflowId);
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const statusOf = (name: string) => byName.get(name)?.status;
  let ctx: QueueContext | undefined;
  let changed = false;
  for (let progress = true; progress;) {
    progress = false;
    for (const job of jobs) {
      if (job.status !== 'blocked') continue;
      const decision = decideRequirements(job.requires, statusOf);
      switch (decision) {
        case 'wait':
          continue;
        case 'not_run':
          await setJobStatus(core, tx, job, 'not_run');
          break;
        case 'ready': {
          const to = readyStatusOf(job.type);
          if (to === 'queued') {
            ctx ??= await loadQueueContext(tx, wf.pipeline_id);
            await queueJob(core, tx, ctx, wf, job);
          } else {
            await setJobStatus(core, tx, job, to);
          }
          break;
        }
        default: {
          const never: never = decision;
          throw new Error(`unknown decision ${String(never)}`);
        }
      }
      progress = true;
      changed = true;
    }
  }
  const status = deriveWorkflowStatus(jobs.map((j) => j.status));
  if (status !== wf.status) {
    if (!canTransitionWorkflow(wf.status, status)) {
      throw new Error(`internal: workflow ${wf.id} cannot go from ${wf.status} to ${status}`);
    }
    await tx.query('UPDATE workflows SET status = $2, stopped_at = $3 WHERE id = $1', [
      wf.id,
      status,
      isFinalWorkflowStatus(status) ? core.res.clock.now() : null,
    ]);
    changed = true;
    // CircleCI's automatic reruns: a failed workflow with `max_auto_reruns` reruns from failed
    if (status === 'failed' && wf.max_auto_reruns !== null && wf.auto_rerun_number < wf.max_auto_reruns) {
      await createRerun(core, tx, wf, jobs, rerunFromFailedSet(jobs), {
        startedBy: wf.started_by,
        autoRerunNumber: wf.auto_rerun_number + 1,
      });
    }
  }
  if (changed) await notifyPipelineChanged(tx, wf.pipeline_id);
  return changed;
}

/** Jobs that (transitively) require any of `seeds`, seeds included. */
export function withDownstream(jobs: readonly JobRecord[], seeds: Iterable<string>): Set<string> {
  const out = new Set(seeds);
  for (let grew = true; grew;) {
    grew = false;
    for (const j of jobs) {
      if (!out.has(j.name) && j.requires.some((r) => out.has(r.name))) {
        out.add(j.name);
        grew = true;
      }
    }
  }
  return out;
}

/** Rerun from failed: the failed, canceled and unauthorized jobs (and any not final) and their downstream. */
export function rerunFromFailedSet(jobs: readonly JobRecord[]): Set<string> {
  const seeds = jobs
    .filter(
      (j) =>
        isFailureStatus(j.status) ||
        j.status === 'canceled' ||
        j.status === 'unauthorized' ||
        !isFinalJobStatus(j.status),
    )
    .map((j) => j.name);
  return withDownstream(jobs, seeds);
}

/**
 * A rerun of `wf`: a new workflow of the same pipeline (same name, `rerun_of`, same workspace id)
 * with fresh rows for the jobs in `rerun` (and any job not final, with their downstream); the other
 * jobs are copied as they ended, without running again. Then advanced. Returns the new id.
 */
export async function createRerun(
  core: EngineCore,
  tx: Queryable,
  wf: WorkflowRecord,
  jobs: readonly JobRecord[],
  rerun: Set<string>,
  opts: { startedBy: string | null; autoRerunNumber?: number },
): Promise<string> {
  // a job still stopping after a cancel has no outcome to copy: it runs again
  const fresh = withDownstream(jobs, [
    ...rerun,
    ...jobs.filter((j) => !isFinalJobStatus(j.status)).map((j) => j.name),
  ]);
  const newId = await insertWorkflow(core, tx, {
    pipelineId: wf.pipeline_id,
    projectId: wf.project_id,
    name: wf.name,
    startedBy: opts.startedBy,
    rerunOf: wf.id,
    workspaceId: wf.workspace_id,
    maxAutoReruns: wf.max_auto_reruns,
    autoRerunNumber: opts.autoRerunNumber ?? 0,
    tag: wf.tag,
  });
  for (const job of jobs) {
    const common = {
      name: job.name,
      type: job.type,
      requires: job.requires,
      spec: job.spec,
      contexts: job.contexts,
      position: job.position,
    };
    if (fresh.has(job.name)) {
      await insertJob(core, tx, newId, job.project_id, { ...common, status: 'blocked' });
    } else {
      await insertJob(core, tx, newId, job.project_id, {
        ...common,
        status: job.status,
        approvedBy: job.approved_by,
        canceledBy: job.canceled_by,
        copiedFrom: job.copied_from ?? job.id,
        queuedAt: job.queued_at,
        startedAt: job.started_at,
        stoppedAt: job.stopped_at,
        resourceClass: job.resource_class,
        executorType: job.executor_type,
      });
    }
  }
  await advanceWorkflow(core, tx, newId);
  await notifyPipelineChanged(tx, wf.pipeline_id);
  return newId;
}
