// What happens to workflows after they are created: the scheduler's reports (a job started, a job
// finished), approvals, cancellation and reruns. Each action is one transaction under the
// workflow's row lock, ending with a DAG advance.
import type { Queryable } from '../storage/index.js';
import { TorusError } from '../ops/index.js';
import { aggregateOutcome, type TaskOutcome } from '../scheduler/index.js';
import {
  type EngineCore,
  type JobRecord,
  type WorkflowRecord,
  JOB_COLUMNS,
  isUuid,
  lockWorkflow,
  lockWorkflowOrThrow,
  notifyPipelineChanged,
  workflowJobs,
} from './core.js';
import { advanceWorkflow, createRerun, rerunFromFailedSet, withDownstream } from './dag.js';
import { anyFailedTests } from './failed-tests.js';
import { canTransitionJob, isFinalJobStatus, type JobStatus } from './job-state.js';
import { isFinalWorkflowStatus } from './workflow-state.js';

async function findJob(tx: Queryable, jobId: string): Promise<JobRecord | null> {
  if (!isUuid(jobId)) return null;
  const { rows } = await tx.query<JobRecord>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1`, [jobId]);
  return rows[0] ?? null;
}

/** Locks the job's workflow, then reads the job under that lock. */
async function lockJob(
  tx: Queryable,
  jobId: string,
): Promise<{ job: JobRecord; workflow: WorkflowRecord } | null> {
  const first = await findJob(tx, jobId);
  if (!first) return null;
  const workflow = await lockWorkflow(tx, first.workflow_id);
  const job = await findJob(tx, jobId);
  return workflow && job ? { job, workflow } : null;
}

export async function onTaskStarted(core: EngineCore, jobId: string): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const locked = await lockJob(tx, jobId);
    if (!locked) {
      core.res.logger.warn({ jobId }, 'a task started for a job the engine does not know');
      return;
    }
    const { job, workflow } = locked;
    if (job.status !== 'queued') {
      // already running (another parallel task started first) or finished (canceled meanwhile)
      return;
    }
    await tx.query(
      `UPDATE jobs SET status = 'running', started_at = coalesce(started_at, $2) WHERE id = $1`,
      [job.id, core.res.clock.now()],
    );
    // dynamic configuration: the setup workflow is running
    await tx.query(
      `UPDATE pipelines SET state = 'setup', updated_at = $2 WHERE id = $1 AND state = 'setup-pending'`,
      [workflow.pipeline_id, core.res.clock.now()],
    );
    await notifyPipelineChanged(tx, workflow.pipeline_id);
    await advanceWorkflow(core, tx, job.workflow_id);
  });
}

export async function onJobFinished(core: EngineCore, jobId: string, outcome: TaskOutcome): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const locked = await lockJob(tx, jobId);
    if (!locked) {
      core.res.logger.warn({ jobId, outcome }, 'a job finished that the engine does not know');
      return;
    }
    const { job, workflow } = locked;
    if (isFinalJobStatus(job.status)) {
      // reported twice, or canceled here before the scheduler's report: the first word stands
      core.res.logger.debug({ jobId, status: job.status, outcome }, 'job already final; report ignored');
      return;
    }
    if (!canTransitionJob(job.status, outcome)) {
      core.res.logger.warn(
        { jobId, status: job.status, outcome },
        'job cannot take the reported outcome; ignored',
      );
      return;
    }
    await tx.query('UPDATE jobs SET status = $2, stopped_at = $3 WHERE id = $1', [
      job.id,
      outcome,
      core.res.clock.now(),
    ]);
    await notifyPipelineChanged(tx, workflow.pipeline_id);
    await advanceWorkflow(core, tx, job.workflow_id);
  });
}

export async function approveJob(
  core: EngineCore,
  workflowId: string,
  approvalRequestId: string,
  actorId: string,
): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    await lockWorkflowOrThrow(tx, workflowId);
    const { rows } = isUuid(approvalRequestId)
      ? await tx.query<JobRecord>(
          `SELECT ${JOB_COLUMNS} FROM jobs WHERE workflow_id = $1 AND approval_request_id = $2`,
          [workflowId, approvalRequestId],
        )
      : { rows: [] };
    const job = rows[0];
    if (!job) {
      throw new TorusError(
        'TORUS_E_NOT_FOUND',
        `Approval request not found: workflow ${workflowId} has no approval job ${approvalRequestId}`,
      );
    }
    if (job.status !== 'on_hold') {
      const why =
        job.status === 'blocked'
          ? 'it is not waiting for approval yet: the jobs it requires have not finished'
          : job.status === 'success'
            ? 'it was already approved'
            : `it is ${job.status}`;
      throw new TorusError('TORUS_E_BAD_REQUEST', `Job ${job.name} cannot be approved: ${why}.`);
    }
    const now = core.res.clock.now();
    await tx.query(
      `UPDATE jobs SET status = 'success', approved_by = $2, started_at = coalesce(started_at, $3), stopped_at = $3 WHERE id = $1`,
      [job.id, actorId, now],
    );
    await advanceWorkflow(core, tx, workflowId);
  });
}

/** Cancels one non-final job inside the caller's transaction (workflow already locked). */
async function cancelOne(
  core: EngineCore,
  tx: Queryable,
  job: JobRecord,
  actorId: string | null,
): Promise<void> {
  const now = core.res.clock.now();
  switch (job.status) {
    case 'running':
    case 'queued': {
      const { runningTasks } = await core.scheduler.cancelJob(tx, job.id);
      if (runningTasks > 0) {
        // agents learn at their next heartbeat; the job turns canceled when the scheduler reports it
        await tx.query('UPDATE jobs SET canceled_by = $2 WHERE id = $1', [job.id, actorId]);
        return;
      }
      break;
    }
    case 'blocked':
    case 'on_hold':
      break;
    case 'success':
    case 'failed':
    case 'timedout':
    case 'infrastructure_fail':
    case 'canceled':
    case 'not_run':
    case 'retried':
    case 'unauthorized':
    case 'terminated-unknown':
      return;
    default: {
      const never: never = job.status;
      throw new Error(`unknown job status ${String(never)}`);
    }
  }
  await tx.query(`UPDATE jobs SET status = 'canceled', canceled_by = $2, stopped_at = $3 WHERE id = $1`, [
    job.id,
    actorId,
    now,
  ]);
  job.status = 'canceled';
}

export async function cancelWorkflow(
  core: EngineCore,
  workflowId: string,
  actorId: string | null,
): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const wf = await lockWorkflowOrThrow(tx, workflowId);
    if (isFinalWorkflowStatus(wf.status)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `Workflow ${wf.name} has already finished (${wf.status}); there is nothing to cancel.`,
      );
    }
    for (const job of await workflowJobs(tx, workflowId)) {
      await cancelOne(core, tx, job, actorId);
    }
    await tx.query(
      `UPDATE workflows SET status = 'canceled', canceled_by = $2, stopped_at = $3 WHERE id = $1`,
      [wf.id, actorId, core.res.clock.now()],
    );
    await notifyPipelineChanged(tx, wf.pipeline_id);
  });
}

export async function cancelJob(core: EngineCore, jobId: string, actorId: string | null): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const locked = await lockJob(tx, jobId);
    if (!locked) throw new TorusError('TORUS_E_NOT_FOUND', `Job not found: ${jobId}`);
    const { job, workflow } = locked;
    if (isFinalJobStatus(job.status)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `Job ${job.name} has already finished (${job.status}); there is nothing to cancel.`,
      );
    }
    await cancelOne(core, tx, job, actorId);
    await notifyPipelineChanged(tx, workflow.pipeline_id);
    await advanceWorkflow(core, tx, job.workflow_id);
  });
}

export interface RerunOptions {
  fromFailed?: boolean;
  /**
   * CircleCI's "Rerun failed tests": a rerun from failed whose jobs' `circleci tests run` get only
   * the tests that failed in their previous run (failed-tests.ts).
   */
  failedTestsOnly?: boolean;
  jobs?: string[];
  actorId: string | null;
}

/**
 * A rerun is a new workflow of the same pipeline (same name, `rerun_of`, same workspace id) with
 * fresh job rows: every job by default; with `fromFailed`, the failed and canceled jobs and their
 * downstream; with `jobs`, those and their downstream. The other jobs are copied as they ended,
 * without running again. CircleCI refuses to rerun a workflow that has not finished. With
 * `failedTestsOnly`, the jobs are those of `fromFailed` and the new workflow is marked so that its
 * jobs receive their previous run's failed tests; a workflow whose jobs stored no failed test is
 * refused with CircleCI's message (CircleCI starts the rerun and fails it; refusing tells sooner).
 */
export async function rerunWorkflow(
  core: EngineCore,
  workflowId: string,
  opts: RerunOptions,
): Promise<{ workflowId: string }> {
  if (opts.fromFailed && opts.jobs && opts.jobs.length > 0) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'from_failed and jobs are mutually exclusive: pass one of them.',
    );
  }
  if (opts.failedTestsOnly && opts.jobs && opts.jobs.length > 0) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'failed_tests_only reruns the failed jobs: it cannot be combined with jobs; pass one of them.',
    );
  }
  return core.res.db.transaction(async (tx) => {
    const wf = await lockWorkflowOrThrow(tx, workflowId);
    if (!isFinalWorkflowStatus(wf.status)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `Workflow ${wf.name} is still ${wf.status}; wait for it to finish or cancel it before rerunning it.`,
      );
    }
    const jobs = await workflowJobs(tx, workflowId);
    let rerun: Set<string>;
    if (opts.fromFailed || opts.failedTestsOnly) {
      rerun = rerunFromFailedSet(jobs);
      if (rerun.size === 0) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `Workflow ${wf.name} has no failed or canceled jobs to rerun from.`,
        );
      }
      if (
        opts.failedTestsOnly &&
        !(await anyFailedTests(
          tx,
          jobs.filter((j) => rerun.has(j.name)).map((j) => j.copied_from ?? j.id),
        ))
      ) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `can not rerun failed tests: no failed tests could be found in workflow ${wf.name} (${wf.id}). ` +
            'Rerun the workflow from failed (from_failed: true) to run all of its tests again.',
        );
      }
    } else if (opts.jobs && opts.jobs.length > 0) {
      const seeds: string[] = [];
      for (const id of opts.jobs) {
        const job = jobs.find((j) => j.id === id);
        if (!job) throw new TorusError('TORUS_E_BAD_REQUEST', `Job ${id} is not part of workflow ${wf.id}.`);
        seeds.push(job.name);
      }
      rerun = withDownstream(jobs, seeds);
    } else {
      rerun = new Set(jobs.map((j) => j.name));
    }
    const newId = await createRerun(core, tx, wf, jobs, rerun, { startedBy: opts.actorId });
    // same transaction as the enqueue: no agent can claim a job of the rerun before it is marked
    if (opts.failedTestsOnly)
      await tx.query('UPDATE workflows SET rerun_failed_tests = true WHERE id = $1', [newId]);
    return { workflowId: newId };
  });
}

/** Re-runs the DAG advance of every workflow not yet final (a crash may have interrupted one). */
export async function recoverWorkflows(core: EngineCore): Promise<number> {
  const { rows } = await core.res.db.query<{ id: string }>(
    `SELECT id FROM workflows WHERE status IN ('running', 'failing', 'on_hold') ORDER BY created_at`,
  );
  let advanced = 0;
  for (const { id } of rows) {
    const changed = await core.res.db.transaction((tx) => advanceWorkflow(core, tx, id));
    if (changed) advanced++;
  }
  return advanced;
}

const TASK_OUTCOMES: readonly string[] = ['success', 'failed', 'timedout', 'infrastructure_fail', 'canceled'];

/**
 * Catches up with the scheduler's reports a crash (or a failing hook) lost: a queued job one of
 * whose tasks an agent has started is running; a queued or running job whose tasks are all final
 * finished with their aggregate outcome.
 */
export async function reconcileJobsWithTasks(core: EngineCore): Promise<number> {
  const { rows } = await core.res.db.query<{ id: string; status: JobStatus; task_statuses: string[] }>(
    `SELECT j.id, j.status, array_agg(t.status) AS task_statuses
       FROM jobs j JOIN tasks t ON t.job_id = j.id
      WHERE j.status IN ('queued', 'running')
      GROUP BY j.id, j.status`,
  );
  let fixed = 0;
  for (const job of rows) {
    if (job.task_statuses.every((s) => TASK_OUTCOMES.includes(s))) {
      await onJobFinished(core, job.id, aggregateOutcome(job.task_statuses as TaskOutcome[]));
      fixed++;
    } else if (job.status === 'queued' && job.task_statuses.some((s) => s !== 'queued')) {
      await onTaskStarted(core, job.id);
      fixed++;
    }
  }
  return fixed;
}
