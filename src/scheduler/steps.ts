// Steps and their output: rows in `steps`; output of running steps in `output_segments` (one per agent
// request, idempotent by first seq): small segments inline, large ones as objects, so fast output never
// goes through the database. When the step ends its output becomes one object (`steps.output_key`) or,
// when large, stays a list of segment objects.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { CHANNELS, type ObjectStore, type Queryable } from '../storage/index.js';
import { decodeRecords, scanRecords } from './output-format.js';
import { TorusError } from '../ops/index.js';
import type {
  OutputChunk,
  OutputFramesRequest,
  OutputRequest,
  StepEndRequest,
  StepReportRequest,
  StepStartRequest,
  StepStatus,
} from './protocol.js';
import {
  holdLease,
  leaseLost,
  leaseProblem,
  notFound,
  readTask,
  type SchedulerContext,
  type TaskRow,
} from './context.js';

/** A new object-store key for (part of) a step's output; random, so a retried or stale request never overwrites. */
export function stepOutputKey(taskId: string, index: number): string {
  return `output/${taskId}/${index}/${randomUUID()}.jsonl`;
}

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

/** the chunks of a request: times checked, in seq order, duplicates dropped */
function normalizeChunks(chunks: readonly OutputChunk[]): OutputChunk[] {
  return chunks
    .map((c) => ({
      seq: c.seq,
      stream: c.stream,
      time: parseTime(`chunk ${c.seq} time`, c.time).toISOString(),
      // kept as printed: JSON escapes a NUL, so even the inline (text) form can hold it
      data: c.data,
    }))
    .sort((a, b) => a.seq - b.seq)
    .filter((c, i, all) => i === 0 || all[i - 1]?.seq !== c.seq);
}

function jsonLines(chunks: readonly OutputChunk[]): string {
  let out = '';
  for (const c of chunks) out += JSON.stringify(c) + '\n';
  return out;
}

async function readObjectBuffer(store: ObjectStore, key: string): Promise<Buffer | null> {
  const body = await store.get(key);
  if (!body) return null;
  const parts: Buffer[] = [];
  for await (const b of body) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

async function deleteQuietly(store: ObjectStore, key: string): Promise<void> {
  // an object nothing refers to is only wasted space; the request's own outcome matters more
  await store.delete(key).catch(() => undefined);
}

/**
 * A step that started and ended before the agent sent anything of it: its output goes straight to
 * the object store, then one transaction stores the ended step. A retried report finds the row
 * there and removes the object it wrote again.
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
  const text = jsonLines(normalizeChunks(req.chunks));
  const key = text ? stepOutputKey(taskId, index) : null;
  const size = key ? (await store.put(key, text)).size : 0;
  let inserted: boolean;
  try {
    inserted = await db.transaction(async (tx) => {
      await holdLease(tx, taskId, req.leaseId, clock.now());
      const r = await tx.query<{ n: number }>(
        `WITH ins AS (
           INSERT INTO steps (task_id, step_index, name, type, status, background, started_at,
                              exit_code, stopped_at, output_key, output_bytes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (task_id, step_index) DO NOTHING
           RETURNING 1)
         SELECT (SELECT count(*) FROM ins)::int AS n, pg_notify($12, $13)`,
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
          key,
          size,
          CHANNELS.stepOutput,
          `${taskId}:${index}`,
        ],
      );
      return (r.rows[0]?.n ?? 0) > 0;
    });
  } catch (err) {
    if (key) await deleteQuietly(store, key);
    throw err;
  }
  if (!inserted && key) await deleteQuietly(store, key);
}

/** running steps' append state as this server last stored it: `${taskId}:${index}` → state */
const appendStates = new WeakMap<SchedulerContext, Map<string, AppendState>>();
/** steps remembered at most (a server appends to about as many steps as agents stream at once) */
const APPEND_STATES_MAX = 1_000;

interface AppendState {
  leaseId: string;
  leaseExpiresAt: Date;
  maxSeq: number;
}

function appendStatesOf(ctx: SchedulerContext): Map<string, AppendState> {
  let states = appendStates.get(ctx);
  if (!states) appendStates.set(ctx, (states = new Map()));
  return states;
}

/**
 * Output of a running step, one segment per request: inline when small, else written to the object
 * store first (after a lease check, so an agent without the lease cannot fill the store). Records
 * at or before the last stored seq were stored already (a retried request) and are dropped. One
 * statement per request, none holding a transaction open while the object is written: a step
 * printing fast sends a request every few milliseconds. The lease and the last seq come from what
 * this server stored last for the step while that lease is valid (the statement checks them again),
 * else from a read.
 */
export async function appendStepOutput(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  req: OutputRequest | OutputFramesRequest,
): Promise<void> {
  const { db, store, clock } = ctx.res;
  const states = appendStatesOf(ctx);
  const stateKey = `${taskId}:${index}`;
  const known = states.get(stateKey);
  let before: OutputState;
  if (known && known.leaseId === req.leaseId && known.leaseExpiresAt > clock.now()) {
    before = {
      status: 'running',
      lease_id: known.leaseId,
      lease_expires_at: known.leaseExpiresAt,
      step_status: 'running',
      max_seq: known.maxSeq,
    };
  } else {
    states.delete(stateKey);
    before = await outputState(db, taskId, index);
    checkAppend(taskId, index, before, req.leaseId, clock.now());
    if (before.step_status !== 'running') return; // a retried request for a step that has ended
  }
  const body = 'records' in req ? req.records : Buffer.from(jsonLines(normalizeChunks(req.chunks)));
  const spans = scanRecords(body);
  let fresh = spans.filter((r) => r.seq > before.max_seq);
  const inOrder = fresh.every((r, i) => i === 0 || fresh[i - 1]!.seq < r.seq);
  if (!inOrder)
    fresh = fresh.sort((x, y) => x.seq - y.seq).filter((r, i, all) => i === 0 || all[i - 1]!.seq !== r.seq);
  const first = fresh[0];
  const last = fresh[fresh.length - 1];
  if (!first || !last) return;
  // the common case (nothing seen before, in order) stores the body exactly as it came
  const data =
    inOrder && fresh.length === spans.length
      ? body
      : Buffer.concat(fresh.map((r) => body.subarray(r.start, r.end)));
  let key: string | null = null;
  if (data.length > ctx.output.inlineSegmentMaxBytes) {
    key = stepOutputKey(taskId, index);
    await store.put(key, data);
  }
  let inserted: boolean;
  try {
    // one statement: the lease, the step and the last seq checked again (row locks held to its end)
    // and the segment inserted only if all still hold
    const { rows } = await db.query(
      `INSERT INTO output_segments (task_id, step_index, first_seq, last_seq, bytes, data, object_key)
       SELECT $1, $2, $3, $4, $5, $6, $7 FROM tasks t, steps s
       WHERE t.id = $1 AND s.task_id = $1 AND s.step_index = $2
         AND t.status = 'running' AND t.lease_id = $8 AND t.lease_expires_at > $9 AND s.status = 'running'
         AND coalesce((SELECT last_seq FROM output_segments WHERE task_id = $1 AND step_index = $2
                       ORDER BY first_seq DESC LIMIT 1), -1) = $10
       FOR SHARE OF t FOR UPDATE OF s
       RETURNING pg_notify($11, $12)`,
      [
        taskId,
        index,
        first.seq,
        last.seq,
        data.length,
        key ? null : data,
        key,
        req.leaseId,
        clock.now(),
        before.max_seq,
        CHANNELS.stepOutput,
        `${taskId}:${index}`,
      ],
    );
    inserted = rows.length > 0;
    if (!inserted) {
      // why not: the lease, the step, or output that got in between (which the agent sends again)
      states.delete(stateKey);
      const after = await outputState(db, taskId, index);
      checkAppend(taskId, index, after, req.leaseId, clock.now());
      if (after.step_status === 'running')
        throw new TorusError(
          'TORUS_E_UNAVAILABLE',
          `output of step ${index} arrived twice at once: send it again`,
        );
    }
  } catch (err) {
    if (key) await deleteQuietly(store, key);
    throw err;
  }
  if (!inserted) {
    if (key) await deleteQuietly(store, key);
    return;
  }
  if (states.size >= APPEND_STATES_MAX) states.clear();
  // the lease's end as read (a heartbeat since only moves it later): past it, the state is read again
  states.set(stateKey, {
    leaseId: req.leaseId,
    leaseExpiresAt: new Date(before.lease_expires_at!),
    maxSeq: last.seq,
  });
}

interface OutputState {
  status: string | null;
  lease_id: string | null;
  lease_expires_at: Date | null;
  step_status: string | null;
  max_seq: number;
}

/** the task's lease, the step's status and the last stored seq, in one read */
async function outputState(q: Queryable, taskId: string, index: number): Promise<OutputState> {
  const { rows } = await q.query<OutputState>(
    `SELECT t.status, t.lease_id, t.lease_expires_at,
       (SELECT s.status FROM steps s WHERE s.task_id = t.id AND s.step_index = $2) AS step_status,
       -- segments never overlap: the last one by first seq (the primary key's order) ends the highest
       coalesce((SELECT o.last_seq FROM output_segments o WHERE o.task_id = t.id AND o.step_index = $2
                 ORDER BY o.first_seq DESC LIMIT 1), -1) AS max_seq
     FROM tasks t WHERE t.id = $1`,
    [taskId, index],
  );
  const row = rows[0];
  return row ?? { status: null, lease_id: null, lease_expires_at: null, step_status: null, max_seq: -1 };
}

/** 404 for no task, 409 for a lease that is not this agent's, 400 for a step not started */
function checkAppend(taskId: string, index: number, st: OutputState, leaseId: string, now: Date): void {
  if (st.status === null) throw notFound(taskId);
  const problem = leaseProblem(
    { status: st.status, lease_id: st.lease_id, lease_expires_at: st.lease_expires_at } as TaskRow,
    leaseId,
    now,
  );
  if (problem) throw leaseLost(taskId, problem);
  if (st.step_status === null)
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `step ${index} of task ${taskId} has not started: send steps/${index}/start first`,
    );
}

interface SegmentRow {
  first_seq: number;
  last_seq: number;
  bytes: number | string;
  /** bytea: a Buffer from pg, a Uint8Array from PGlite */
  data: Uint8Array | null;
  object_key: string | null;
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** the JSON lines of segments in order, streamed (objects are read one at a time) */
async function* segmentBytes(store: ObjectStore, segments: readonly SegmentRow[]): AsyncGenerator<Buffer> {
  for (const s of segments) {
    if (s.data !== null) {
      yield asBuffer(s.data);
      continue;
    }
    const body = await store.get(s.object_key!);
    if (!body) throw new Error(`a segment of step output is missing from the object store (${s.object_key})`);
    for await (const b of body) yield b as Buffer;
  }
}

async function readSegments(
  q: Queryable,
  taskId: string,
  index: number,
  afterSeq = -1,
): Promise<SegmentRow[]> {
  const { rows } = await q.query<SegmentRow>(
    `SELECT first_seq, last_seq, bytes, data, object_key FROM output_segments
     WHERE task_id = $1 AND step_index = $2 AND last_seq > $3 ORDER BY first_seq`,
    [taskId, index, afterSeq],
  );
  return rows;
}

export interface StepEnd {
  status: Exclude<StepStatus, 'running'>;
  exitCode: number | null;
  stoppedAt: Date;
}

/** what a step's output becomes when it ends, and the objects written for it */
interface OutputPlan {
  outputKey: string | null;
  outputBytes: number;
  /** large output: the segments that stay (all objects) */
  keep: Array<{ first_seq: number; last_seq: number; bytes: number; object_key: string }> | null;
  written: string[];
}

/**
 * Small output (or many small segments) becomes one object; large output keeps its segment objects
 * and only its inline segments are written out, a run of consecutive ones per object.
 */
async function planOutput(
  { res: { store }, output }: SchedulerContext,
  taskId: string,
  index: number,
  segments: readonly SegmentRow[],
): Promise<OutputPlan> {
  const total = segments.reduce((n, s) => n + Number(s.bytes), 0);
  const only = segments.length === 1 ? segments[0] : undefined;
  if (segments.length === 0) return { outputKey: null, outputBytes: 0, keep: null, written: [] };
  if (only?.object_key) return { outputKey: only.object_key, outputBytes: total, keep: null, written: [] };
  if (total <= output.compactMaxBytes) {
    const key = stepOutputKey(taskId, index);
    const { size } = await store.put(key, Readable.from(segmentBytes(store, segments)));
    return { outputKey: key, outputBytes: size, keep: null, written: [key] };
  }
  const keep: NonNullable<OutputPlan['keep']> = [];
  const written: string[] = [];
  let run: SegmentRow[] = [];
  const writeRun = async () => {
    const first = run[0];
    const last = run[run.length - 1];
    if (!first || !last) return;
    const key = stepOutputKey(taskId, index);
    written.push(key);
    const { size } = await store.put(key, Buffer.concat(run.map((s) => asBuffer(s.data!))));
    keep.push({ first_seq: first.first_seq, last_seq: last.last_seq, bytes: size, object_key: key });
    run = [];
  };
  for (const s of segments) {
    if (s.data !== null) {
      run.push(s);
      continue;
    }
    await writeRun();
    keep.push({
      first_seq: s.first_seq,
      last_seq: s.last_seq,
      bytes: Number(s.bytes),
      object_key: s.object_key!,
    });
  }
  await writeRun();
  return { outputKey: null, outputBytes: total, keep, written };
}

/**
 * Ends a running step: writes what its output becomes to the object store first, then in one
 * transaction marks the step ended and replaces its segments. A crash between the two leaves the
 * segments (and an object nothing refers to), never a step with lost output. If output arrived
 * while the objects were being written, it starts again. `leaseId` null: the server ends it (task
 * finished or failed).
 */
export async function endStep(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  end: StepEnd,
  leaseId: string | null,
): Promise<void> {
  const { db, store, clock } = ctx.res;
  appendStatesOf(ctx).delete(`${taskId}:${index}`);
  for (let i = 0; i < MOVE_ATTEMPTS; i++) {
    const segments = await readSegments(db, taskId, index);
    const plan = await planOutput(ctx, taskId, index, segments);
    let outcome: 'stored' | 'ended already' | 'more output';
    try {
      outcome = await db.transaction(async (tx) => {
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
        if (step.status !== 'running') return 'ended already'; // a retried request
        const now = await tx.query<{ n: number; max: number }>(
          `SELECT count(*)::int AS n, coalesce(max(last_seq), -1) AS max FROM output_segments
           WHERE task_id = $1 AND step_index = $2`,
          [taskId, index],
        );
        const lastSeq = segments[segments.length - 1]?.last_seq ?? -1;
        if (now.rows[0]?.n !== segments.length || now.rows[0]?.max !== lastSeq) return 'more output';
        await tx.query(
          `UPDATE steps SET status = $3, exit_code = $4, stopped_at = $5, output_key = $6, output_bytes = $7
           WHERE task_id = $1 AND step_index = $2`,
          [taskId, index, end.status, end.exitCode, end.stoppedAt, plan.outputKey, plan.outputBytes],
        );
        await tx.query('DELETE FROM output_segments WHERE task_id = $1 AND step_index = $2', [taskId, index]);
        if (plan.keep)
          await tx.query(
            `INSERT INTO output_segments (task_id, step_index, first_seq, last_seq, bytes, data, object_key)
             SELECT $1, $2, s.first_seq, s.last_seq, s.bytes, NULL, s.object_key
             FROM jsonb_to_recordset($3::jsonb) AS s(first_seq integer, last_seq integer, bytes bigint, object_key text)`,
            [taskId, index, JSON.stringify(plan.keep)],
          );
        await notifyStep(tx, taskId, index);
        return 'stored';
      });
    } catch (err) {
      for (const k of plan.written) await deleteQuietly(store, k);
      throw err;
    }
    if (outcome === 'stored') {
      // segment objects folded into a new object are no longer referred to
      const kept = new Set([plan.outputKey, ...(plan.keep ?? []).map((k) => k.object_key)]);
      for (const s of segments)
        if (s.object_key && !kept.has(s.object_key)) await deleteQuietly(store, s.object_key);
      return;
    }
    for (const k of plan.written) await deleteQuietly(store, k);
    if (outcome === 'ended already') return;
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

export interface StepOutputPage {
  chunks: OutputChunk[];
  /** the step has ended and nothing after these chunks is left */
  done: boolean;
  /** more output is stored already: read again after the last chunk */
  more: boolean;
}

/**
 * Output of a step after `afterSeq`, at most about `readMaxBytes` per call (`more` says when
 * there is more): a running step's from its segments, an ended one's from its object or segments.
 */
export async function readStepOutput(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  afterSeq = -1,
): Promise<StepOutputPage> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await readStepOutputOnce(ctx, taskId, index, afterSeq);
    } catch (err) {
      // the step ended while it was being read and its segments were folded into one object
      if (!(err instanceof SegmentGone) || attempt >= 2) throw err;
    }
  }
}

class SegmentGone extends Error {}

async function readStepOutputOnce(
  ctx: SchedulerContext,
  taskId: string,
  index: number,
  afterSeq: number,
): Promise<StepOutputPage> {
  const { db, store } = ctx.res;
  const max = ctx.output.readMaxBytes;
  const { rows } = await db.query<{ status: string; output_key: string | null }>(
    'SELECT status, output_key FROM steps WHERE task_id = $1 AND step_index = $2',
    [taskId, index],
  );
  const step = rows[0];
  if (!step) {
    const task = await readTask(db, taskId);
    if (!task) throw notFound(taskId);
    // Not started (yet): done only if the task is over and will never start it.
    return { chunks: [], done: task.status !== 'queued' && task.status !== 'running', more: false };
  }
  const running = step.status === 'running';
  const segments: Array<Pick<SegmentRow, 'data' | 'object_key'>> = step.output_key
    ? [{ data: null, object_key: step.output_key }]
    : await readSegments(db, taskId, index, afterSeq);
  const chunks: OutputChunk[] = [];
  let bytes = 0;
  let more = false;
  for (const s of segments) {
    if (bytes >= max) {
      more = true;
      break;
    }
    let buf = s.data === null ? null : asBuffer(s.data);
    if (buf === null) {
      buf = await readObjectBuffer(store, s.object_key!);
      if (buf === null) {
        if (running) throw new SegmentGone();
        throw new Error(
          `output of step ${index} of task ${taskId} is missing from the object store (${s.object_key})`,
        );
      }
    }
    for (const c of decodeRecords(buf)) {
      if (bytes >= max) {
        more = true;
        break;
      }
      if (c.seq <= afterSeq) continue;
      chunks.push(c);
      bytes += c.data.length;
    }
    if (more) break;
  }
  return { chunks, done: !running && !more, more };
}
