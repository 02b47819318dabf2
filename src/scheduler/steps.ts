// Steps and their output: rows in `steps`, output of running steps in `output_chunks` (idempotent by
// seq), moved into the object store as `output/<taskId>/<index>.jsonl` when the step ends.
import { Readable } from 'node:stream';
import { CHANNELS, readObjectText, type Queryable } from '../storage/index.js';
import { TorusError } from '../ops/index.js';
import type {
  OutputChunk,
  OutputRequest,
  StepEndRequest,
  StepReportRequest,
  StepStartRequest,
  StepStatus,
} from './protocol.js';
import { holdLease, notFound, readTask, type SchedulerContext } from './context.js';

/** The object-store key of a finished step's output. */
export function stepOutputKey(taskId: string, index: number): string {
  return `output/${taskId}/${index}.jsonl`;
}

const CHUNK_PAGE = 500;
const MOVE_ATTEMPTS = 5;

function parseTime(what: string, iso: string): Date {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime()))
    throw new TorusError('TORUS_E_BAD_REQUEST', `${what} must be an ISO time, got ${JSON.stringify(iso)}`);
  return d;
}

async function notifyStep(q: Queryable, taskId: string, index: number): Promise<void> {
  await q.query('SELECT pg_notify($1, $2)', [CHANNELS.stepOutput, `${taskId}:${index}`]);
}

export async function startStep(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  req: StepStartRequest,
): Promise<void> {
  const startedAt = parseTime('startedAt', req.startedAt);
  await ctx.res.db.transaction(async (tx) => {
    await holdLease(tx, taskId, req.leaseId, ctx.res.clock.now());
    // A retried start (its response was lost) finds the row already there: nothing to do.
    // One statement: the insert and its notification.
    await tx.query(
      `WITH ins AS (
         INSERT INTO steps (task_id, step_index, name, type, status, background, started_at)
         VALUES ($1, $2, $3, $4, 'running', $5, $6) ON CONFLICT (task_id, step_index) DO NOTHING
         RETURNING 1)
       SELECT pg_notify($7, $8)`,
      [
        taskId,
        index,
        req.name,
        req.type,
        req.background ?? false,
        startedAt,
        CHANNELS.stepOutput,
        `${taskId}:${index}`,
      ],
    );
  });
}

/**
 * A step that started and ended before the agent sent anything of it: its output goes straight to
 * the object store (no output_chunks rows), then one transaction stores the ended step. A retried
 * report rewrites the same object and finds the row there: nothing more happens.
 */
export async function reportStep(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  req: StepReportRequest,
): Promise<void> {
  const { db, store, clock } = ctx.res;
  const startedAt = parseTime('startedAt', req.startedAt);
  const stoppedAt = parseTime('stoppedAt', req.stoppedAt);
  const chunks = req.chunks
    .map((c) => ({
      seq: c.seq,
      stream: c.stream,
      time: parseTime(`chunk ${c.seq} time`, c.time).toISOString(),
      data: c.data.replace(/\0/g, '\uFFFD'),
    }))
    .sort((a, b) => a.seq - b.seq)
    .filter((c, i, all) => i === 0 || all[i - 1]?.seq !== c.seq);
  const key = stepOutputKey(taskId, index);
  let size = 0;
  if (chunks.length > 0) {
    const text = chunks.map((c) => JSON.stringify(c) + '\n').join('');
    size = (await store.put(key, Readable.from([text]))).size;
  }
  await db.transaction(async (tx) => {
    await holdLease(tx, taskId, req.leaseId, clock.now());
    await tx.query(
      `WITH ins AS (
         INSERT INTO steps (task_id, step_index, name, type, status, background, started_at,
                            exit_code, stopped_at, output_key, output_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (task_id, step_index) DO NOTHING
         RETURNING 1)
       SELECT pg_notify($12, $13)`,
      [
        taskId,
        index,
        req.name,
        req.type,
        req.status,
        req.background ?? false,
        startedAt,
        req.exitCode,
        stoppedAt,
        chunks.length > 0 ? key : null,
        size,
        CHANNELS.stepOutput,
        `${taskId}:${index}`,
      ],
    );
  });
}

export async function appendStepOutput(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  req: OutputRequest,
): Promise<void> {
  // Postgres text cannot hold NUL; a job printing one gets U+FFFD, as a terminal would show garbage.
  const chunks = req.chunks.map((c) => ({
    seq: c.seq,
    stream: c.stream,
    time: parseTime(`chunk ${c.seq} time`, c.time).toISOString(),
    data: c.data.replace(/\0/g, '\uFFFD'),
  }));
  await ctx.res.db.transaction(async (tx) => {
    await holdLease(tx, taskId, req.leaseId, ctx.res.clock.now());
    const { rows } = await tx.query<{ status: string }>(
      'SELECT status FROM steps WHERE task_id = $1 AND step_index = $2 FOR SHARE',
      [taskId, index],
    );
    const step = rows[0];
    if (!step)
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `step ${index} of task ${taskId} has not started: send steps/${index}/start first`,
      );
    // A retried request for a step that has ended: its chunks were stored and moved already.
    if (step.status !== 'running' || chunks.length === 0) return;
    await tx.query(
      `INSERT INTO output_chunks (task_id, step_index, seq, stream, ts, data)
       SELECT $1, $2, c.seq, c.stream, c.time, c.data
       FROM jsonb_to_recordset($3::jsonb) AS c(seq integer, stream text, time timestamptz, data text)
       ON CONFLICT DO NOTHING`,
      [taskId, index, JSON.stringify(chunks)],
    );
    await notifyStep(tx, taskId, index);
  });
}

interface ChunkRow {
  seq: number;
  stream: 'out' | 'err';
  ts: Date;
  data: string;
}

function toChunk(r: ChunkRow): OutputChunk {
  return { seq: r.seq, stream: r.stream, time: r.ts.toISOString(), data: r.data };
}

async function* chunkLines(
  q: Queryable,
  taskId: string,
  index: number,
  maxSeq: number,
): AsyncGenerator<string> {
  let after = -1;
  for (;;) {
    const { rows } = await q.query<ChunkRow>(
      `SELECT seq, stream, ts, data FROM output_chunks
       WHERE task_id = $1 AND step_index = $2 AND seq > $3 AND seq <= $4 ORDER BY seq LIMIT ${CHUNK_PAGE}`,
      [taskId, index, after, maxSeq],
    );
    for (const r of rows) yield JSON.stringify(toChunk(r)) + '\n';
    const last = rows[rows.length - 1];
    if (!last || rows.length < CHUNK_PAGE) return;
    after = last.seq;
  }
}

export interface StepEnd {
  status: Exclude<StepStatus, 'running'>;
  exitCode: number | null;
  stoppedAt: Date;
}

/**
 * Ends a running step: writes its chunks to the object store first, then in one transaction marks
 * the step ended and deletes the chunks. A crash between the two leaves the chunks (and an object
 * the next attempt overwrites), never a step with lost output. If chunks arrived while the object
 * was being written, it is written again. `leaseId` null: the server ends it (task finished or failed).
 */
export async function endStep(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  end: StepEnd,
  leaseId: string | null,
): Promise<void> {
  const { db, store, clock } = ctx.res;
  const key = stepOutputKey(taskId, index);
  for (let i = 0; i < MOVE_ATTEMPTS; i++) {
    const snap = await db.query<{ n: number; max: number }>(
      'SELECT count(*)::int AS n, coalesce(max(seq), -1) AS max FROM output_chunks WHERE task_id = $1 AND step_index = $2',
      [taskId, index],
    );
    const { n, max } = snap.rows[0] ?? { n: 0, max: -1 };
    const size = n > 0 ? (await store.put(key, Readable.from(chunkLines(db, taskId, index, max)))).size : 0;
    const done = await db.transaction(async (tx) => {
      if (leaseId !== null) await holdLease(tx, taskId, leaseId, clock.now());
      const { rows } = await tx.query<{ status: string }>(
        'SELECT status FROM steps WHERE task_id = $1 AND step_index = $2 FOR UPDATE',
        [taskId, index],
      );
      const step = rows[0];
      if (!step)
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `step ${index} of task ${taskId} has not started: send steps/${index}/start first`,
        );
      if (step.status !== 'running') return true; // ended already: a retried request
      const now = await tx.query<{ n: number; max: number }>(
        'SELECT count(*)::int AS n, coalesce(max(seq), -1) AS max FROM output_chunks WHERE task_id = $1 AND step_index = $2',
        [taskId, index],
      );
      if (now.rows[0]?.n !== n || now.rows[0]?.max !== max) return false; // more output arrived: write again
      await tx.query(
        `UPDATE steps SET status = $3, exit_code = $4, stopped_at = $5, output_key = $6, output_bytes = $7
         WHERE task_id = $1 AND step_index = $2`,
        [taskId, index, end.status, end.exitCode, end.stoppedAt, n > 0 ? key : null, size],
      );
      await tx.query('DELETE FROM output_chunks WHERE task_id = $1 AND step_index = $2', [taskId, index]);
      await notifyStep(tx, taskId, index);
      return true;
    });
    if (done) return;
  }
  throw new Error(`step ${index} of task ${taskId}: output kept arriving while it was being stored`);
}

export async function endStepByAgent(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  req: StepEndRequest,
): Promise<void> {
  const stoppedAt = parseTime('stoppedAt', req.stoppedAt);
  await endStep(ctx, taskId, index, { status: req.status, exitCode: req.exitCode, stoppedAt }, req.leaseId);
}

/** Steps still running when their task became final: stored and ended with `status`. */
export async function endRunningSteps(
  ctx: SchedulerContext,
  taskId: string,
  status: StepEnd['status'],
): Promise<void> {
  const { rows } = await ctx.res.db.query<{ step_index: number }>(
    "SELECT step_index FROM steps WHERE task_id = $1 AND status = 'running' ORDER BY step_index",
    [taskId],
  );
  for (const r of rows) {
    await endStep(
      ctx,
      taskId,
      r.step_index,
      { status, exitCode: null, stoppedAt: ctx.res.clock.now() },
      null,
    );
  }
}

export async function readStepOutput(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  afterSeq = -1,
): Promise<{ chunks: OutputChunk[]; done: boolean }> {
  const { db, store } = ctx.res;
  const { rows } = await db.query<{ status: string; output_key: string | null }>(
    'SELECT status, output_key FROM steps WHERE task_id = $1 AND step_index = $2',
    [taskId, index],
  );
  const step = rows[0];
  if (!step) {
    const task = await readTask(db, taskId);
    if (!task) throw notFound(taskId);
    // Not started (yet): done only if the task is over and will never start it.
    return { chunks: [], done: task.status !== 'queued' && task.status !== 'running' };
  }
  if (step.status === 'running') {
    const live = await db.query<ChunkRow>(
      'SELECT seq, stream, ts, data FROM output_chunks WHERE task_id = $1 AND step_index = $2 AND seq > $3 ORDER BY seq',
      [taskId, index, afterSeq],
    );
    return { chunks: live.rows.map(toChunk), done: false };
  }
  if (!step.output_key) return { chunks: [], done: true };
  const text = await readObjectText(store, step.output_key);
  if (text === null)
    throw new Error(
      `output of step ${index} of task ${taskId} is missing from the object store (${step.output_key})`,
    );
  const chunks: OutputChunk[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const c = JSON.parse(line) as OutputChunk;
    if (c.seq > afterSeq) chunks.push(c);
  }
  return { chunks, done: true };
}
