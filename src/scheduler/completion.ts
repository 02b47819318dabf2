// Finishing tasks: an agent completing one, and canceling a job's tasks. When the last task of a job
// becomes final, onJobFinished gets the job's outcome, exactly once (the JOB_FINAL advisory lock
// serializes everything that can make a job's tasks all final).
import { CHANNELS, type Queryable } from '../storage/index.js';
import { TorusError } from '../ops/index.js';
import type { CompleteRequest } from './protocol.js';
import {
  appendJobMessages,
  jobOutcomeIfFinal,
  leaseLost,
  leaseProblem,
  lockJobFinal,
  notFound,
  readTask,
  taskStatus,
  type SchedulerContext,
} from './context.js';
import { canTransition, isFinal, isTaskOutcome } from './task-states.js';
import { endRunningSteps } from './steps.js';
import { finishJob } from './leases.js';

export async function completeTask(
  ctx: SchedulerContext,
  taskId: string,
  req: CompleteRequest,
): Promise<void> {
  const { db, clock } = ctx.res;
  if (!isTaskOutcome(req.status)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `status must be one of success, failed, timedout, canceled, infrastructure_fail`,
    );
  }
  const found = await readTask(db, taskId);
  if (!found) throw notFound(taskId);
  const jobId = found.job_id;
  const result = await db.transaction(async (tx) => {
    await lockJobFinal(tx, jobId);
    const row = await readTask(tx, taskId, 'FOR UPDATE');
    if (!row) throw notFound(taskId);
    const from = taskStatus(row);
    // Completing twice (the first response was lost) is fine: same lease, task already final.
    if (isFinal(from) && row.lease_id === req.leaseId) return null;
    const problem = leaseProblem(row, req.leaseId, clock.now());
    if (problem) throw leaseLost(taskId, problem);
    if (!canTransition(from, req.status, 'complete'))
      throw new Error(`cannot complete a ${from} task as ${req.status}`);
    await tx.query(
      'UPDATE tasks SET status = $2, message = $3, stopped_at = $4, lease_expires_at = NULL WHERE id = $1',
      [taskId, req.status, req.message ?? null, clock.now()],
    );
    await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.taskChanged, taskId]);
    return { jobOutcomes: await jobOutcomeIfFinal(tx, jobId) };
  });
  if (!result) return;
  await endRunningSteps(
    ctx,
    taskId,
    req.status === 'success' ? 'success' : req.status === 'canceled' ? 'canceled' : 'failed',
  );
  if (req.status !== 'success' && req.message) {
    await appendJobMessages(db, jobId, [
      { type: req.status === 'canceled' ? 'info' : 'error', message: req.message },
    ]);
  }
  if (result.jobOutcomes) await finishJob(ctx, jobId, result.jobOutcomes);
}

export interface CancelResult {
  /** tasks that were queued and are now canceled */
  canceledTasks: number;
  /** tasks still running: their agents learn at their next heartbeat; onJobFinished follows when they end */
  runningTasks: number;
}

/**
 * In the caller's transaction: queued tasks → canceled, running tasks get cancel_requested. Never
 * calls onJobFinished itself: when `runningTasks` is 0 (no task will report back), the caller
 * finalizes the job as canceled; otherwise the hook fires when the last running task ends.
 */
export async function cancelJobTasks(
  ctx: SchedulerContext,
  tx: Queryable,
  jobId: string,
): Promise<CancelResult> {
  await lockJobFinal(tx, jobId);
  const now = ctx.res.clock.now();
  const canceled = await tx.query<{ id: string }>(
    `UPDATE tasks SET status = 'canceled', stopped_at = $2, message = 'canceled before it started'
     WHERE job_id = $1 AND status = 'queued' RETURNING id`,
    [jobId, now],
  );
  const running = await tx.query<{ id: string }>(
    `UPDATE tasks SET cancel_requested = true WHERE job_id = $1 AND status = 'running' RETURNING id`,
    [jobId],
  );
  if (running.rowCount === 0) await tx.query('DELETE FROM job_task_starts WHERE job_id = $1', [jobId]);
  for (const r of [...canceled.rows, ...running.rows]) {
    await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.taskChanged, r.id]);
  }
  return { canceledTasks: canceled.rowCount, runningTasks: running.rowCount };
}
