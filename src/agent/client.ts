// runAgent: the agent's side of the HTTP protocol (src/scheduler/protocol.ts). Long-polls for a
// task, runs it with runTask, and reports through an HTTP TaskSink that batches output, renews the
// lease with heartbeats, retries through server restarts and gives up silently when the lease is lost.
import { randomUUID } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../ops/index.js';
import {
  AGENT_API_PREFIX,
  MAX_CLAIM_WAIT_MS,
  type ClaimRequest,
  type ClaimResponse,
  type CompleteRequest,
  type HeartbeatResponse,
  type OutputChunk,
  LEASE_HEADER,
  type StepReportRequest,
  type TaskOutcome,
} from '../scheduler/protocol.js';
import { sweepDockerOrphansSoon, type DockerExecutorOptions } from './executors/index.js';
import type { SandboxMode } from './sandbox.js';
import { OUTPUT_FRAMES_CONTENT_TYPE, frameParts, type ChunkBytes } from '../scheduler/output-format.js';
import { postParts } from './upload.js';
import { createBlobClient } from './blob-client.js';
import { runTask, type FinalStepStatus, type TaskSink } from './task.js';

/** output waits at most this long before it is sent */
export const OUTPUT_FLUSH_MS = 100;
/** buffered output of this size is sent at once */
export const OUTPUT_FLUSH_BYTES = 1024 * 1024;
/** one output request carries at most this much */
const OUTPUT_REQUEST_MAX_BYTES = 4 * 1024 * 1024;
/** a chunk grows by appending until this size, then a new chunk (new seq) starts */
const CHUNK_MAX_CHARS = 64 * 1024;
/** output buffered beyond this makes steps wait (backpressure) until it is below OUTPUT_LOW_WATER_BYTES */
export const OUTPUT_HIGH_WATER_BYTES = 8 * 1024 * 1024;
const OUTPUT_LOW_WATER_BYTES = 4 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;
const CLAIM_BACKOFF_MAX_MS = 10_000;
/** when the agent is stopping, how long it still tries to report the task's end */
const SHUTDOWN_REPORT_MS = 5_000;
const DEFAULT_CLAIM_WAIT_MS = 25_000;
/** the shortest time between two claims that found nothing */
const MIN_EMPTY_CLAIM_MS = 100;
export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  serverUrl: string;
  token: string;
  resourceClasses: string[];
  agentId?: string;
  name?: string;
  workRoot?: string;
  sandbox: SandboxMode;
  signal: AbortSignal;
  logger: Logger;
  claimWaitMs?: number;
  /** how long output (and a step's start) may wait to be sent together (default OUTPUT_FLUSH_MS) */
  outputFlushMs?: number;
  /** local agents: stop claiming when this fires (parent died), finish the current task, then return */
  drain?: AbortSignal;
  /** run `docker:` jobs through this engine (absent: they end as infrastructure_fail) */
  docker?: DockerExecutorOptions;
  /** the agent runs on the server's machine (`--local`): blobs may be read and written as files (BlobClientOptions.direct) */
  sameHost?: boolean;
}

class LeaseLost extends Error {
  constructor() {
    super('the task lease was lost');
  }
}

/** An HTTP answer that retrying will not change (4xx other than 409). */
class Refused extends Error {}

function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

async function readMessage(res: Response): Promise<string> {
  const text = await res.text().catch((err: unknown) => `(unreadable body: ${String(err)})`);
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') return body.message;
  } catch {
    // not JSON: use the raw text
  }
  return text.slice(0, 500);
}

interface StepBuffer {
  nextSeq: number;
  pending: OutputChunk[];
}

/** One claimed task's connection to the server: lease, heartbeats, ordered reporting. */
class TaskConnection implements TaskSink {
  readonly abort = new AbortController();
  lost = false;
  cancelRequested = false;
  /** set when the server refused a report: the task ends as an infrastructure failure */
  failure: string | undefined;
  private renewedAt = Date.now();
  private chain: Promise<unknown> = Promise.resolve();
  private readonly steps = new Map<number, StepBuffer>();
  /** steps started whose start was not posted yet (it goes with the next flush, or as a report) */
  private readonly unsentStarts = new Map<
    number,
    { name: string; type: string; background: boolean; startedAt: Date }
  >();
  private bufferedBytes = 0;
  /** steps waiting for the buffer to empty below OUTPUT_LOW_WATER_BYTES */
  private roomWaiters: Array<() => void> = [];
  private flushTimer: NodeJS.Timeout | undefined;
  /** a flush waits in the queue: the output arriving meanwhile goes with it, no need for another */
  private flushQueued: Promise<void> | undefined;
  /** a flush that must send everything was asked for (not only the timer's) */
  private flushForced = false;
  private readonly heartbeatStop = new AbortController();
  private heartbeatLoop: Promise<void> | undefined;
  private deadlineOverride: number | undefined;
  /** aborts every request in flight: the lease is lost, or a stopping agent's time to report ran out */
  private readonly gone = new AbortController();
  private shutdownTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: AgentOptions,
    private readonly claim: ClaimResponse,
  ) {}

  private get log() {
    return this.opts.logger;
  }

  private get flushMs(): number {
    return this.opts.outputFlushMs ?? OUTPUT_FLUSH_MS;
  }

  private url(suffix: string): string {
    return `${this.opts.serverUrl.replace(/\/+$/, '')}${AGENT_API_PREFIX}/tasks/${encodeURIComponent(this.claim.task.taskId)}${suffix}`;
  }

  /** until when a failing server is retried: the lease's end (after it, the task is someone else's) */
  private get deadline(): number {
    return this.deadlineOverride ?? this.renewedAt + this.claim.leaseMs;
  }

  /** a stopping agent's last reports never wait past its shutdown deadline, even on a hung server */
  private requestTimeoutMs(): number {
    if (this.deadlineOverride === undefined) return REQUEST_TIMEOUT_MS;
    return Math.max(100, Math.min(REQUEST_TIMEOUT_MS, this.deadlineOverride - Date.now()));
  }

  /** the lease is gone (a report or a blob request answered 409): the task stops, nothing more is sent */
  markLost(): void {
    if (this.lost) return;
    this.lost = true;
    this.wakeRoomWaiters(true);
    this.log.warn({ taskId: this.claim.task.taskId }, 'lease lost: stopping the task without reporting');
    this.abort.abort();
    this.gone.abort();
  }

  /** the agent is stopping: what is left to report gets SHUTDOWN_REPORT_MS from now, however the server behaves */
  stopping(): void {
    if (this.deadlineOverride !== undefined) return;
    this.deadlineOverride = Date.now() + SHUTDOWN_REPORT_MS;
    this.shutdownTimer = setTimeout(() => this.gone.abort(), SHUTDOWN_REPORT_MS);
  }

  private requestSignal(timeoutMs: number): AbortSignal {
    return AbortSignal.any([this.gone.signal, AbortSignal.timeout(timeoutMs)]);
  }

  /** POST with retries on network errors and 5xx until the lease deadline; 409 → LeaseLost. */
  private async post(
    suffix: string,
    body: unknown,
    raw?: { contentType: string; parts: Buffer[] },
  ): Promise<Response> {
    const payload = raw ? undefined : JSON.stringify(body);
    const contentType = raw ? raw.contentType : 'application/json';
    let delay = RETRY_MIN_MS;
    for (;;) {
      if (this.lost) throw new LeaseLost();
      let problem: string;
      try {
        const headers = {
          authorization: `Bearer ${this.opts.token}`,
          'content-type': contentType,
          [LEASE_HEADER]: this.claim.leaseId,
        };
        const signal = this.requestSignal(this.requestTimeoutMs());
        const res = raw
          ? await postParts(this.url(suffix), headers, raw.parts, signal)
          : await fetch(this.url(suffix), { method: 'POST', headers, body: payload, signal });
        if (res.status === 409) {
          await res.body?.cancel();
          this.markLost();
          throw new LeaseLost();
        }
        if (res.ok) return res;
        const message = await readMessage(res);
        if (!isRetryableStatus(res.status))
          throw new Refused(`POST ${suffix} answered ${res.status}: ${message}`);
        problem = `HTTP ${res.status}: ${message}`;
      } catch (err) {
        if (err instanceof LeaseLost || err instanceof Refused) throw err;
        problem = (err as Error).message;
      }
      if (Date.now() + delay > this.deadline) {
        this.log.warn(
          { taskId: this.claim.task.taskId, problem },
          'server unreachable until the lease ran out',
        );
        this.markLost();
        throw new LeaseLost();
      }
      this.log.debug({ taskId: this.claim.task.taskId, problem, delay }, 'retrying a report to the server');
      await sleep(delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  /** runs reports one after another, in the order they were made */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined); // the caller of enqueue sees the error; the chain goes on
    return next;
  }

  private handle(err: unknown): void {
    this.wakeRoomWaiters(true);
    if (err instanceof LeaseLost) return;
    const message = (err as Error).message;
    this.log.error({ taskId: this.claim.task.taskId, err: message }, 'the server refused a report');
    this.failure ??= `The agent could not report to the server: ${message}`;
    this.abort.abort();
  }

  // --- TaskSink ---

  /**
   * The start is held until the next flush tick (≤ OUTPUT_FLUSH_MS) or the step's end, whichever
   * comes first: a step ending before then is sent as one `report` instead of start+output+end.
   */
  stepStart(
    index: number,
    info: { name: string; type: string; background: boolean; startedAt: Date },
  ): Promise<void> {
    if (this.lost) return Promise.resolve();
    this.unsentStarts.set(index, info);
    this.flushTimer ??= setTimeout(() => void this.flush(false), this.flushMs);
    return Promise.resolve();
  }

  output(index: number, stream: 'out' | 'err', data: string): void {
    if (!data || this.lost) return;
    let buf = this.steps.get(index);
    if (!buf) this.steps.set(index, (buf = { nextSeq: 0, pending: [] }));
    const last = buf.pending[buf.pending.length - 1];
    if (last && last.stream === stream && last.data.length + data.length <= CHUNK_MAX_CHARS)
      last.data += data;
    else buf.pending.push({ seq: buf.nextSeq++, stream, time: new Date().toISOString(), data });
    // characters, not bytes: a budget, and cheaper to count
    this.bufferedBytes += data.length;
    if (this.bufferedBytes >= OUTPUT_FLUSH_BYTES) void this.flush();
    else this.flushTimer ??= setTimeout(() => void this.flush(false), this.flushMs);
  }

  backpressure(): Promise<void> | undefined {
    if (this.lost || this.abort.signal.aborted || this.bufferedBytes < OUTPUT_HIGH_WATER_BYTES)
      return undefined;
    void this.flush();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** the buffer went down (or nothing more will be sent): waiting steps go on */
  private wakeRoomWaiters(always = false): void {
    if (this.roomWaiters.length === 0) return;
    if (!always && !this.lost && this.bufferedBytes > OUTPUT_LOW_WATER_BYTES) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  stepEnd(index: number, status: FinalStepStatus, exitCode: number | null): Promise<void> {
    const info = this.unsentStarts.get(index);
    if (info) return this.report(index, info, status, exitCode);
    void this.flush();
    return this.enqueue(async () => {
      await this.post(`/steps/${index}/end`, {
        leaseId: this.claim.leaseId,
        status,
        exitCode,
        stoppedAt: new Date().toISOString(),
      });
    }).catch((err: unknown) => this.handle(err));
  }

  /** a step nothing of which was sent yet: start, output and end in one request */
  private report(
    index: number,
    info: { name: string; type: string; background: boolean; startedAt: Date },
    status: FinalStepStatus,
    exitCode: number | null,
  ): Promise<void> {
    this.unsentStarts.delete(index);
    const buf = this.steps.get(index);
    const chunks = buf ? buf.pending.splice(0) : [];
    for (const c of chunks) this.bufferedBytes -= c.data.length;
    this.wakeRoomWaiters();
    const body: StepReportRequest = {
      leaseId: this.claim.leaseId,
      name: info.name,
      type: info.type,
      background: info.background,
      startedAt: info.startedAt.toISOString(),
      chunks,
      status,
      exitCode,
      stoppedAt: new Date().toISOString(),
    };
    return this.enqueue(async () => {
      await this.post(`/steps/${index}/report`, body);
    }).catch((err: unknown) => this.handle(err));
  }

  /**
   * Sends all buffered output (queued behind earlier reports); chunks keep their seq across retries.
   * The timer's flush (`forced` false) holds the starts of steps younger than OUTPUT_FLUSH_MS, with
   * their output, so that a step ending within its own window is one report even when the timer
   * was armed by an earlier step's output; any other flush sends everything.
   */
  flush(forced = true): Promise<void> {
    if (forced) this.flushForced = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.flushQueued) return this.flushQueued;
    return (this.flushQueued = this.enqueue(async () => {
      this.flushQueued = undefined;
      const sendAll = this.flushForced;
      this.flushForced = false;
      const now = Date.now();
      const starts = [...this.unsentStarts]
        .filter(([, info]) => sendAll || now - info.startedAt.getTime() >= this.flushMs)
        .sort(([a], [b]) => a - b);
      for (const [index] of starts) this.unsentStarts.delete(index);
      const held = [...this.unsentStarts.values()].map((info) => info.startedAt.getTime());
      if (held.length > 0) {
        const wait = Math.max(1, this.flushMs - (now - Math.min(...held)));
        this.flushTimer ??= setTimeout(() => void this.flush(false), wait);
      }
      for (const [index, info] of starts) {
        await this.post(`/steps/${index}/start`, {
          leaseId: this.claim.leaseId,
          name: info.name,
          type: info.type,
          background: info.background,
          startedAt: info.startedAt.toISOString(),
        });
      }
      for (const [index, buf] of this.steps) {
        // held, or started after the starts above went: its start (and output) go with the next flush
        if (this.unsentStarts.has(index)) continue;
        while (buf.pending.length > 0) {
          // frames: the server stores these bytes as they are (output is encoded once, here)
          const chunks: ChunkBytes[] = [];
          let bytes = 0;
          while (buf.pending.length > 0 && (bytes === 0 || bytes < OUTPUT_REQUEST_MAX_BYTES)) {
            const c = buf.pending.shift() as OutputChunk;
            bytes += c.data.length;
            chunks.push({ seq: c.seq, stream: c.stream, time: c.time, text: Buffer.from(c.data) });
          }
          await this.post(`/steps/${index}/output`, undefined, {
            contentType: OUTPUT_FRAMES_CONTENT_TYPE,
            parts: frameParts(chunks),
          });
          this.bufferedBytes -= bytes;
          this.wakeRoomWaiters();
        }
      }
    }).catch((err: unknown) => {
      this.handle(err);
      // refused or lost: nothing more is sent, so nothing should wait for room
      this.wakeRoomWaiters(true);
    }));
  }

  // --- lease ---

  startHeartbeats(): void {
    const stop = this.heartbeatStop.signal;
    this.heartbeatLoop = (async () => {
      while (!stop.aborted && !this.lost) {
        try {
          await sleep(this.claim.heartbeatMs, undefined, { signal: stop });
        } catch {
          // aborted: the task is over
          return;
        }
        await this.heartbeat();
      }
    })();
  }

  private async heartbeat(): Promise<void> {
    const taskId = this.claim.task.taskId;
    try {
      const res = await fetch(this.url('/heartbeat'), {
        method: 'POST',
        headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ leaseId: this.claim.leaseId }),
        // close() ends a heartbeat in flight: a stopping agent does not wait for a hung server
        signal: AbortSignal.any([
          this.heartbeatStop.signal,
          this.requestSignal(Math.max(this.claim.heartbeatMs, 1_000)),
        ]),
      });
      if (res.status === 409) {
        await res.body?.cancel();
        this.markLost();
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${await readMessage(res)}`);
      const body = (await res.json()) as HeartbeatResponse;
      this.renewedAt = Date.now();
      if (body.cancel && !this.cancelRequested) {
        this.cancelRequested = true;
        this.log.info({ taskId }, 'the job was canceled: stopping its steps');
        this.abort.abort();
      }
    } catch (err) {
      if (this.heartbeatStop.signal.aborted || this.lost) return; // the task is over
      if (Date.now() > this.renewedAt + this.claim.leaseMs) this.markLost();
      else this.log.warn({ taskId, err: (err as Error).message }, 'heartbeat failed; retrying');
    }
  }

  async complete(status: TaskOutcome, message: string | undefined, quick: boolean): Promise<void> {
    if (quick) this.stopping();
    await this.flush();
    const body: CompleteRequest = { leaseId: this.claim.leaseId, status, ...(message ? { message } : {}) };
    await this.enqueue(() => this.post('/complete', body)).catch((err: unknown) => {
      if (!(err instanceof LeaseLost))
        this.log.error(
          { taskId: this.claim.task.taskId, err: (err as Error).message },
          'could not report the task end',
        );
    });
  }

  async close(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.shutdownTimer) clearTimeout(this.shutdownTimer);
    this.heartbeatStop.abort();
    await this.heartbeatLoop;
  }
}

async function claimTask(
  opts: AgentOptions,
  agentId: string,
  signal: AbortSignal,
): Promise<ClaimResponse | null> {
  const waitMs = Math.min(opts.claimWaitMs ?? DEFAULT_CLAIM_WAIT_MS, MAX_CLAIM_WAIT_MS);
  const body: ClaimRequest = {
    agentId,
    name: opts.name,
    hostname: hostname(),
    version: AGENT_VERSION,
    resourceClasses: opts.resourceClasses,
    waitMs,
  };
  const res = await fetch(`${opts.serverUrl.replace(/\/+$/, '')}${AGENT_API_PREFIX}/claim`, {
    method: 'POST',
    headers: { authorization: `Bearer ${opts.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.any([signal, AbortSignal.timeout(waitMs + REQUEST_TIMEOUT_MS)]),
  });
  if (res.status === 204) {
    await res.body?.cancel();
    return null;
  }
  if (res.status === 200) return (await res.json()) as ClaimResponse;
  const message = await readMessage(res);
  if (res.status === 401 || res.status === 403) {
    throw new Error(
      `the server refused this agent's token for ${opts.resourceClasses.join(', ')} (HTTP ${res.status}): ${message}`,
    );
  }
  throw new Error(`claim answered HTTP ${res.status}: ${message}`);
}

async function runClaimedTask(opts: AgentOptions, claim: ClaimResponse, workRoot: string): Promise<void> {
  const { task } = claim;
  const log = opts.logger;
  log.info({ taskId: task.taskId, job: task.jobName, jobNumber: task.jobNumber }, 'task claimed');
  const conn = new TaskConnection(opts, claim);
  const onStop = () => {
    conn.stopping();
    conn.abort.abort();
  };
  opts.signal.addEventListener('abort', onStop);
  if (opts.signal.aborted) onStop();
  conn.startHeartbeats();
  try {
    let result: { status: TaskOutcome; message?: string };
    try {
      result = await runTask(task, conn, {
        workRoot,
        sandbox: opts.sandbox,
        signal: conn.abort.signal,
        logger: log,
        ...(opts.docker ? { docker: opts.docker } : {}),
        blobs: createBlobClient({
          serverUrl: opts.serverUrl,
          token: opts.token,
          taskId: task.taskId,
          leaseId: claim.leaseId,
          signal: conn.abort.signal,
          onLeaseLost: () => conn.markLost(),
          direct: opts.sameHost === true,
        }),
      });
    } catch (err) {
      result = {
        status: 'infrastructure_fail',
        message: `The agent failed while running the task: ${(err as Error).message}`,
      };
    }
    if (conn.lost) return;
    if (conn.failure) result = { status: 'infrastructure_fail', message: conn.failure };
    else if (opts.signal.aborted && !conn.cancelRequested) {
      result = { status: 'infrastructure_fail', message: 'The agent was stopped while running this task' };
    }
    await conn.complete(result.status, result.message, opts.signal.aborted);
    log.info({ taskId: task.taskId, status: result.status }, 'task finished');
  } finally {
    opts.signal.removeEventListener('abort', onStop);
    await conn.close();
  }
}

/** The claim loop: runs tasks one at a time until `signal` aborts (or `drain` fires between tasks). */
export async function runAgent(opts: AgentOptions): Promise<void> {
  const agentId = opts.agentId ?? randomUUID();
  const workRoot = opts.workRoot ?? path.join(tmpdir(), 'torus-agent');
  const stopClaiming = opts.drain ? AbortSignal.any([opts.signal, opts.drain]) : opts.signal;
  const log = opts.logger;
  let backoff = RETRY_MIN_MS;
  log.info({ agentId, resourceClasses: opts.resourceClasses, server: opts.serverUrl }, 'agent started');
  // what killed agents of this host left in the engine goes before this one takes work
  if (opts.docker) sweepDockerOrphansSoon(opts.docker, log);
  while (!stopClaiming.aborted) {
    let claim: ClaimResponse | null;
    const askedAt = Date.now();
    try {
      claim = await claimTask(opts, agentId, stopClaiming);
      backoff = RETRY_MIN_MS;
      // a server answering "nothing" at once (not holding the request) must not make this loop spin
      if (!claim && Date.now() - askedAt < MIN_EMPTY_CLAIM_MS) {
        await sleep(MIN_EMPTY_CLAIM_MS, undefined, { signal: stopClaiming }).catch(() => undefined); // stopping: the loop condition ends it
      }
    } catch (err) {
      if (stopClaiming.aborted) break;
      log.warn({ err: (err as Error).message, retryInMs: backoff }, 'claim failed');
      try {
        await sleep(backoff, undefined, { signal: stopClaiming });
      } catch {
        // stopping while waiting to retry
        break;
      }
      backoff = Math.min(backoff * 2, CLAIM_BACKOFF_MAX_MS);
      continue;
    }
    if (claim) await runClaimedTask(opts, claim, workRoot);
  }
  log.info({ agentId }, 'agent stopped');
}
