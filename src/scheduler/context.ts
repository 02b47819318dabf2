// What the scheduler's parts share: resources, hooks, the in-process listeners, and small SQL
// helpers for leases and per-job serialization.
import type { Queryable } from '../storage/index.js';
import { TorusError, type Logger, type Resources } from '../ops/index.js';
import type { TaskOutcome, TaskSpec } from './protocol.js';
import type { ClaimWaiters, StepFollowers } from './waiters.js';
import { isFinal, isTaskStatus, type TaskStatus } from './task-states.js';

export interface SchedulerHooks {
  /** first claim of any task of the job */
  onTaskStarted(jobId: string): Promise<void>;
  /** all tasks of the job final */
  onJobFinished(jobId: string, outcome: TaskOutcome): Promise<void>;
  /**
   * Completes a claimed task's spec with what is never stored in the queue (decrypted project and
   * context variables), or refuses it: the task then fails with that message without reaching an agent.
   */
  prepareTask?(jobId: string, spec: TaskSpec): Promise<TaskSpec | { refuse: string }>;
}

export interface JobMessage {
  type: 'info' | 'warning' | 'error';
  message: string;
  reason?: string;
}

export interface SchedulerContext {
  res: Resources;
  jobHooks: JobHooks;
  waiters: ClaimWaiters;
  followers: StepFollowers;
  /** tells the lease-expiry loop that a lease now ends at `at` */
  leaseTaken(at: Date): void;
  output: OutputLimits;
}

/** How step output is stored (src/scheduler/steps.ts); tests make them small. */
export interface OutputLimits {
  /** a segment (one agent request) up to this size stays in the database; a larger one goes to the object store */
  inlineSegmentMaxBytes: number;
  /** a step's output up to this size becomes one object when the step ends; larger output keeps its segments */
  compactMaxBytes: number;
  /** one read returns at most about this much (a reader reads on for the rest) */
  readMaxBytes: number;
}

export const DEFAULT_OUTPUT_LIMITS: OutputLimits = {
  inlineSegmentMaxBytes: 64 * 1024,
  compactMaxBytes: 16 * 1024 * 1024,
  readMaxBytes: 8 * 1024 * 1024,
};

/**
 * Advisory lock (pg_advisory_xact_lock(int, int): this namespace, the job id's hash) serializing
 * everything that can make a job's tasks all final (complete, lease expiry, cancel), so exactly one
 * of them sees "all final". Lock order: this lock, then task rows. Claims never take it (they lock
 * one task row, and learn "first of its job" from job_task_starts), so no cycle can form.
 */
const LOCK_JOB_FINAL = 7_340_101;

export async function lockJobFinal(tx: Queryable, jobId: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [LOCK_JOB_FINAL, jobId]);
}

/**
 * Runs the hooks: onTaskStarted in the background (a claim does not wait for the engine), and
 * onJobFinished only after that job's pending onTaskStarted, so the engine sees them in order.
 * A failing hook is logged: the task states are committed and the engine's recover() reconciles.
 */
export class JobHooks {
  private readonly starting = new Map<string, Promise<void>>();
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly hooks: SchedulerHooks,
    private readonly logger: Logger,
  ) {}

  taskStarted(jobId: string): void {
    const p: Promise<void> = this.hooks
      .onTaskStarted(jobId)
      .catch((err: unknown) => this.logger.error({ err, jobId }, 'onTaskStarted hook failed'))
      .finally(() => {
        if (this.starting.get(jobId) === p) this.starting.delete(jobId);
        this.inflight.delete(p);
      });
    this.starting.set(jobId, p);
    this.inflight.add(p);
  }

  async prepareTask(jobId: string, spec: TaskSpec): Promise<TaskSpec | { refuse: string }> {
    return this.hooks.prepareTask ? await this.hooks.prepareTask(jobId, spec) : spec;
  }

  async jobFinished(jobId: string, outcome: TaskOutcome): Promise<void> {
    await this.starting.get(jobId);
    try {
      await this.hooks.onJobFinished(jobId, outcome);
    } catch (err) {
      this.logger.error({ err, jobId, outcome }, 'onJobFinished hook failed');
    }
  }

  /** waits for background hooks (stop) */
  async drain(): Promise<void> {
    await Promise.all([...this.inflight]);
  }
}

export interface TaskRow {
  id: string;
  job_id: string;
  node_index: number;
  resource_class: string;
  status: string;
  attempt: number;
  agent_id: string | null;
  lease_id: string | null;
  lease_expires_at: Date | null;
  cancel_requested: boolean;
}

const TASK_COLUMNS =
  'id, job_id, node_index, resource_class, status, attempt, agent_id, lease_id, lease_expires_at, cancel_requested';

export function taskStatus(row: { status: string }): TaskStatus {
  if (!isTaskStatus(row.status)) throw new Error(`task has an unknown status ${JSON.stringify(row.status)}`);
  return row.status;
}

export async function readTask(
  q: Queryable,
  taskId: string,
  lock: '' | 'FOR SHARE' | 'FOR UPDATE' = '',
): Promise<TaskRow | null> {
  const { rows } = await q.query<TaskRow>(`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = $1 ${lock}`, [
    taskId,
  ]);
  return rows[0] ?? null;
}

export function notFound(taskId: string): TorusError {
  return new TorusError('TORUS_E_NOT_FOUND', `task ${taskId} not found`);
}

export function leaseLost(taskId: string, why: string): TorusError {
  return new TorusError(
    'TORUS_E_LEASE_LOST',
    `the lease on task ${taskId} is no longer held (${why}); stop working on it`,
  );
}

/** Why `leaseId` is not the live lease of `row`, or null when it is. */
export function leaseProblem(row: TaskRow, leaseId: string, now: Date): string | null {
  if (row.lease_id !== leaseId) {
    if (row.status === 'queued') return 'the task was re-queued';
    if (row.status === 'running') return 'another agent holds it now';
    return `the task is already ${row.status}`;
  }
  if (row.status !== 'running') return `the task is already ${row.status}`;
  if (!row.lease_expires_at || row.lease_expires_at.getTime() <= now.getTime()) return 'the lease expired';
  return null;
}

/** Locks the task row (shared) and checks the lease; throws 404 / 409. */
export async function holdLease(tx: Queryable, taskId: string, leaseId: string, now: Date): Promise<TaskRow> {
  const row = await readTask(tx, taskId, 'FOR SHARE');
  if (!row) throw notFound(taskId);
  const problem = leaseProblem(row, leaseId, now);
  if (problem) throw leaseLost(taskId, problem);
  return row;
}

/**
 * The outcomes of the job's tasks when all are final, else null. Call under lockJobFinal; when
 * final, the job's job_task_starts row is no longer needed and goes.
 */
export async function jobOutcomeIfFinal(tx: Queryable, jobId: string): Promise<TaskOutcome[] | null> {
  const { rows } = await tx.query<{ status: string }>('SELECT status FROM tasks WHERE job_id = $1', [jobId]);
  const outcomes: TaskOutcome[] = [];
  for (const r of rows) {
    const s = taskStatus(r);
    if (!isFinal(s)) return null;
    outcomes.push(s);
  }
  if (outcomes.length === 0) return null;
  await tx.query('DELETE FROM job_task_starts WHERE job_id = $1', [jobId]);
  return outcomes;
}

/** Appends messages to the job's messages (outside any transaction that holds a job lock). */
export async function appendJobMessages(q: Queryable, jobId: string, messages: JobMessage[]): Promise<void> {
  if (messages.length === 0) return;
  await q.query('UPDATE jobs SET messages = messages || $2::jsonb WHERE id = $1', [
    jobId,
    JSON.stringify(messages),
  ]);
}
