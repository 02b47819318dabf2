// The scheduler: the task queue keyed by resource class, claims and leases, step output, agent
// tokens and queue diagnostics. The public face of src/scheduler/ (other modules import only this).
import type { Queryable } from '../storage/index.js';
import { CHANNELS } from '../storage/index.js';
import type { Resources } from '../ops/index.js';
import type {
  TaskSpec,
  ClaimRequest,
  ClaimResponse,
  HeartbeatResponse,
  StepStartRequest,
  OutputRequest,
  OutputFramesRequest,
  StepEndRequest,
  StepReportRequest,
  CompleteRequest,
} from './protocol.js';
import {
  DEFAULT_OUTPUT_LIMITS,
  JobHooks,
  type JobMessage,
  type OutputLimits,
  type SchedulerContext,
  type SchedulerHooks,
} from './context.js';
import { ClaimWaiters, SharedListener, StepFollowers } from './waiters.js';
import { claimTask, enqueueTasks, type AuthenticatedAgent } from './claim.js';
import { LeaseExpiryLoop, renewLease, sweepExpiredLeases } from './leases.js';
import {
  appendStepOutput,
  endStepByAgent,
  readStepOutput,
  reportStep,
  startStep,
  type StepOutputPage,
} from './steps.js';
import { cancelJobTasks, completeTask, type CancelResult } from './completion.js';
import { explainQueuedJob } from './explain.js';
import { authenticateAgent, createAgentToken } from './tokens.js';

export * from './protocol.js';
export type { SchedulerHooks, JobMessage } from './context.js';
export type { AuthenticatedAgent } from './claim.js';
export type { CancelResult } from './completion.js';
export {
  isFinal,
  aggregateOutcome,
  canTransition,
  TASK_TRANSITIONS,
  type TaskStatus,
  type TaskEvent,
} from './task-states.js';
export { classMatches, patternAllows } from './resource-classes.js';
export { stepOutputKey, type StepOutputPage } from './steps.js';
export { OUTPUT_FRAMES_CONTENT_TYPE, encodeFrames, decodeRecords } from './output-format.js';
export { AGENT_TOKEN_PREFIX } from './tokens.js';
export { AGENT_SEEN_WINDOW_MS } from './explain.js';
export { startLocalAgents, type LocalAgentsOptions, type LocalAgents } from './launchers/local.js';

export interface Scheduler {
  /** Inserts one task per spec (node index = position) in the caller's transaction and NOTIFYs. Returns task ids. */
  enqueue(
    tx: Queryable,
    job: { jobId: string; resourceClass: string; specs: Omit<TaskSpec, 'taskId'>[] },
  ): Promise<string[]>;
  /**
   * In the caller's transaction: queued tasks → canceled at once; running tasks get cancel_requested
   * (agent learns at next heartbeat). Never calls onJobFinished: when the result's `runningTasks` is 0
   * the caller finalizes the job (canceled) itself; otherwise onJobFinished follows when they end.
   */
  cancelJob(tx: Queryable, jobId: string): Promise<CancelResult>;
  /** Long-polls up to req.waitMs; null when nothing came or the signal aborted (client gone). 403 for a class the token does not allow. */
  claim(agent: AuthenticatedAgent, req: ClaimRequest, signal: AbortSignal): Promise<ClaimResponse | null>;
  /** TorusError TORUS_E_LEASE_LOST → 409 */
  heartbeat(taskId: string, leaseId: string): Promise<HeartbeatResponse>;
  stepStart(taskId: string, index: number, req: StepStartRequest): Promise<void>;
  stepOutput(taskId: string, index: number, req: OutputRequest | OutputFramesRequest): Promise<void>;
  stepEnd(taskId: string, index: number, req: StepEndRequest): Promise<void>;
  /** A step that started and ended before anything of it was sent: stored ended, in one request. */
  stepReport(taskId: string, index: number, req: StepReportRequest): Promise<void>;
  complete(taskId: string, req: CompleteRequest): Promise<void>;
  /** Why a queued job is still waiting (no agent serves its resource class, …); [] when nothing to say. */
  explainQueued(jobId: string): Promise<JobMessage[]>;
  /** Output of a step after afterSeq, a bounded page at a time (`more`: read again after its last chunk). */
  readStepOutput(taskId: string, stepIndex: number, afterSeq?: number): Promise<StepOutputPage>;
  /** Subscribe to new output/state of a step (for live following); returns unsubscribe. */
  followStep(taskId: string, stepIndex: number, onChange: () => void): Promise<() => Promise<void>>;
  authenticateAgent(token: string): Promise<AuthenticatedAgent | null>;
  createAgentToken(resourceClass: string, name: string): Promise<{ id: string; token: string }>;
  /** Starts the lease-expiry loop. */
  start(): void;
  /** Stops the loop, sends waiting claims home empty, and drops this process's LISTENs. */
  stop(): Promise<void>;
  /** Runs one lease-expiry pass now (tests, admin tools); returns how many tasks it moved. */
  expireLeasesNow(): Promise<number>;
}

export function createScheduler(
  res: Resources,
  hooks: SchedulerHooks,
  options: { output?: Partial<OutputLimits> } = {},
): Scheduler {
  const queuedListener = new SharedListener(res.db, CHANNELS.taskQueued, res.logger);
  const outputListener = new SharedListener(res.db, CHANNELS.stepOutput, res.logger);
  let stopped = false;
  const ctx: SchedulerContext = {
    res,
    jobHooks: new JobHooks(hooks, res.logger),
    waiters: new ClaimWaiters(queuedListener),
    followers: new StepFollowers(outputListener),
    leaseTaken: (at) => expiry.leaseTaken(at),
    output: { ...DEFAULT_OUTPUT_LIMITS, ...options.output },
  };
  const expiry = new LeaseExpiryLoop(ctx);

  return {
    enqueue: (tx, job) => enqueueTasks(ctx, tx, job),
    cancelJob: (tx, jobId) => cancelJobTasks(ctx, tx, jobId),
    claim: (agent, req, signal) => claimTask(ctx, agent, req, signal, () => stopped),
    heartbeat: (taskId, leaseId) => renewLease(ctx, taskId, leaseId),
    stepStart: (taskId, index, req) => startStep(ctx, taskId, index, req),
    stepOutput: (taskId, index, req) => appendStepOutput(ctx, taskId, index, req),
    stepEnd: (taskId, index, req) => endStepByAgent(ctx, taskId, index, req),
    stepReport: (taskId, index, req) => reportStep(ctx, taskId, index, req),
    complete: (taskId, req) => completeTask(ctx, taskId, req),
    explainQueued: (jobId) => explainQueuedJob(ctx, jobId),
    readStepOutput: (taskId, index, afterSeq) => readStepOutput(ctx, taskId, index, afterSeq),
    followStep: (taskId, index, onChange) => ctx.followers.follow(`${taskId}:${index}`, onChange),
    authenticateAgent: (token) => authenticateAgent(ctx, token),
    createAgentToken: (cls, name) => createAgentToken(ctx, cls, name),
    start() {
      stopped = false;
      expiry.start();
    },
    async stop() {
      stopped = true;
      await expiry.stop();
      ctx.waiters.wakeAll();
      await ctx.jobHooks.drain();
      await queuedListener.close();
      await outputListener.close();
    },
    expireLeasesNow: () => sweepExpiredLeases(ctx),
  };
}
