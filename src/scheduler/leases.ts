// Leases: heartbeats renew them; a loop finds expired ones and re-queues their tasks (or, after
// settings.maxLeaseRequeues re-queues, fails them with infrastructure_fail). The loop sleeps until the
// earliest lease ends (re-armed by claims) with a coarse safety poll for leases other replicas took.
import { CHANNELS } from '../storage/index.js';
import type { HeartbeatResponse } from './protocol.js';
import {
  appendJobMessages,
  jobOutcomeIfFinal,
  leaseLost,
  leaseProblem,
  lockJobFinal,
  notFound,
  readTask,
  taskStatus,
  type JobMessage,
  type SchedulerContext,
} from './context.js';
import { canTransition, aggregateOutcome, type TaskStatus } from './task-states.js';
import { endRunningSteps } from './steps.js';
import type { TaskOutcome } from './protocol.js';

/** The longest the loop sleeps: catches leases taken by other replicas (whose own loop died with them). */
export const SAFETY_POLL_MS = 5_000;
const SWEEP_BATCH = 100;

export async function renewLease(
  ctx: SchedulerContext,
  taskId: string,
  leaseId: string,
): Promise<HeartbeatResponse> {
  const { db, clock, settings } = ctx.res;
  const now = clock.now();
  const expires = new Date(now.getTime() + settings.leaseMs);
  const { rows } = await db.query<{ cancel_requested: boolean }>(
    `WITH t AS (
       UPDATE tasks SET lease_expires_at = $3
       WHERE id = $1 AND lease_id = $2 AND status = 'running' AND lease_expires_at > $4
       RETURNING cancel_requested, agent_id),
     a AS (UPDATE agents SET last_seen_at = $4 WHERE id IN (SELECT agent_id FROM t))
     SELECT cancel_requested FROM t`,
    [taskId, leaseId, expires, now],
  );
  const row = rows[0];
  if (row) return { cancel: row.cancel_requested };
  const task = await readTask(db, taskId);
  if (!task) throw notFound(taskId);
  throw leaseLost(taskId, leaseProblem(task, leaseId, now) ?? 'the lease expired');
}

interface Expired {
  jobId: string;
  requeued: boolean;
  outcome: TaskOutcome | null;
  jobOutcomes: TaskOutcome[] | null;
  deletedKeys: string[];
  deletedSteps: number[];
  message: JobMessage;
}

/** Handles one task whose lease may have expired; null when it had not (renewed, finished, another replica did it). */
async function expireLease(ctx: SchedulerContext, taskId: string, jobId: string): Promise<Expired | null> {
  const { db, clock, settings } = ctx.res;
  return db.transaction(async (tx) => {
    await lockJobFinal(tx, jobId);
    const row = await readTask(tx, taskId, 'FOR UPDATE');
    const now = clock.now();
    if (
      !row ||
      row.status !== 'running' ||
      !row.lease_expires_at ||
      row.lease_expires_at.getTime() > now.getTime()
    )
      return null;
    const from: TaskStatus = taskStatus(row);
    const run = `parallel run ${row.node_index}`;
    if (!row.cancel_requested && row.attempt < settings.maxLeaseRequeues) {
      if (!canTransition(from, 'queued', 'lease_expired_requeue'))
        throw new Error(`cannot re-queue a ${from} task`);
      await tx.query(
        `UPDATE tasks SET status = 'queued', attempt = attempt + 1, agent_id = NULL, lease_id = NULL,
           lease_expires_at = NULL, started_at = NULL, message = NULL
         WHERE id = $1`,
        [taskId],
      );
      const segments = await tx.query<{ object_key: string | null }>(
        'DELETE FROM output_segments WHERE task_id = $1 RETURNING object_key',
        [taskId],
      );
      const steps = await tx.query<{ step_index: number; output_key: string | null }>(
        'DELETE FROM steps WHERE task_id = $1 RETURNING step_index, output_key',
        [taskId],
      );
      // What the lost attempt stored for this parallel run goes with it, in this transaction, so the
      // next attempt starts clean (its uploads cannot be mixed with or removed as the old ones).
      // Caches stay: they are the project's, immutable, and valid whoever saved them.
      const blobs = await tx.query<{ object_key: string }>(
        `WITH a AS (DELETE FROM artifacts WHERE job_id = $1 AND node_index = $2 RETURNING object_key),
              w AS (DELETE FROM workspace_layers WHERE job_id = $1 AND node_index = $2 RETURNING object_key),
              t AS (DELETE FROM test_results WHERE job_id = $1 AND node_index = $2 RETURNING 1)
         SELECT object_key FROM a UNION ALL SELECT object_key FROM w`,
        [jobId, row.node_index],
      );
      await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.taskQueued, row.resource_class]);
      await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.taskChanged, taskId]);
      for (const s of steps.rows)
        await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.stepOutput, `${taskId}:${s.step_index}`]);
      return {
        jobId,
        requeued: true,
        outcome: null,
        jobOutcomes: null,
        deletedKeys: [
          ...steps.rows.flatMap((s) => (s.output_key ? [s.output_key] : [])),
          ...segments.rows.flatMap((s) => (s.object_key ? [s.object_key] : [])),
          ...blobs.rows.map((b) => b.object_key),
        ],
        deletedSteps: steps.rows.map((s) => s.step_index),
        message: {
          type: 'warning',
          message: `re-queued: its agent stopped responding (attempt ${row.attempt + 2})`,
          reason: `lease expired (${run}, agent ${row.agent_id ?? 'unknown'})`,
        },
      };
    }
    const outcome: TaskOutcome = row.cancel_requested ? 'canceled' : 'infrastructure_fail';
    if (!canTransition(from, outcome, 'lease_expired_give_up'))
      throw new Error(`cannot move a ${from} task to ${outcome}`);
    const text = row.cancel_requested
      ? 'canceled: its agent stopped responding after the job was canceled'
      : `its agent stopped responding ${row.attempt + 1} time${row.attempt === 0 ? '' : 's'}; giving up`;
    await tx.query(
      // lease_id cleared: the lost agent's late "complete" gets 409, not the idempotent-repeat answer
      'UPDATE tasks SET status = $2, message = $3, stopped_at = $4, lease_id = NULL, lease_expires_at = NULL WHERE id = $1',
      [taskId, outcome, text, now],
    );
    await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.taskChanged, taskId]);
    return {
      jobId,
      requeued: false,
      outcome,
      jobOutcomes: await jobOutcomeIfFinal(tx, jobId),
      deletedKeys: [],
      deletedSteps: [],
      message: {
        type: outcome === 'canceled' ? 'info' : 'error',
        message: text,
        reason: `lease expired (${run})`,
      },
    };
  });
}

/** Finds and handles every expired lease; returns how many tasks it moved. */
export async function sweepExpiredLeases(ctx: SchedulerContext): Promise<number> {
  const { db, clock, store, logger } = ctx.res;
  let moved = 0;
  for (;;) {
    const { rows } = await db.query<{ id: string; job_id: string }>(
      `SELECT id, job_id FROM tasks WHERE status = 'running' AND lease_expires_at <= $1
       ORDER BY lease_expires_at LIMIT ${SWEEP_BATCH}`,
      [clock.now()],
    );
    let movedNow = 0;
    for (const r of rows) {
      const ex = await expireLease(ctx, r.id, r.job_id);
      if (!ex) continue;
      movedNow++;
      logger.warn({ taskId: r.id, jobId: r.job_id, requeued: ex.requeued }, 'task lease expired');
      for (const key of ex.deletedKeys) await store.delete(key);
      if (ex.outcome) await endRunningSteps(ctx, r.id, ex.outcome === 'canceled' ? 'canceled' : 'failed');
      await appendJobMessages(db, ex.jobId, [ex.message]);
      if (ex.jobOutcomes) await finishJob(ctx, ex.jobId, ex.jobOutcomes);
    }
    moved += movedNow;
    if (rows.length < SWEEP_BATCH || movedNow === 0) return moved;
  }
}

/** Calls onJobFinished with the job's aggregate outcome (after any pending onTaskStarted of the job). */
export async function finishJob(
  ctx: SchedulerContext,
  jobId: string,
  outcomes: TaskOutcome[],
): Promise<void> {
  await ctx.jobHooks.jobFinished(jobId, aggregateOutcome(outcomes));
}

/** The loop: one timer, set for the earliest known lease end (at most SAFETY_POLL_MS away). */
export class LeaseExpiryLoop {
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private running = false;
  private sweeping: Promise<void> | undefined;
  private again = false;

  constructor(private readonly ctx: SchedulerContext) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.arm(0);
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    await this.sweeping;
  }

  /** A lease now ends at `at`: wake up then if that is sooner than planned. */
  leaseTaken(at: Date): void {
    // a little after the end, so the lease is over by the clock when the sweep looks
    this.arm(at.getTime() - this.ctx.res.clock.now().getTime() + 5);
  }

  private arm(inMs: number): void {
    if (!this.running) return;
    const delay = Math.max(0, Math.min(inMs, SAFETY_POLL_MS));
    const at = Date.now() + delay;
    if (this.timer && at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.tick();
    }, delay);
    this.timer.unref();
  }

  private tick(): void {
    if (this.sweeping) {
      this.again = true;
      return;
    }
    this.sweeping = (async () => {
      do {
        this.again = false;
        try {
          await sweepExpiredLeases(this.ctx);
        } catch (err) {
          this.ctx.res.logger.error({ err }, 'lease expiry sweep failed; retrying at the next tick');
        }
      } while (this.again && this.running);
      await this.rearmFromDatabase();
    })().finally(() => {
      this.sweeping = undefined;
    });
  }

  private async rearmFromDatabase(): Promise<void> {
    if (!this.running) return;
    try {
      const { rows } = await this.ctx.res.db.query<{ next: Date | null }>(
        "SELECT min(lease_expires_at) AS next FROM tasks WHERE status = 'running'",
      );
      const next = rows[0]?.next;
      this.arm(next ? next.getTime() - this.ctx.res.clock.now().getTime() + 5 : SAFETY_POLL_MS);
    } catch (err) {
      this.ctx.res.logger.error({ err }, 'cannot read the next lease end; polling');
      this.arm(SAFETY_POLL_MS);
    }
  }
}
