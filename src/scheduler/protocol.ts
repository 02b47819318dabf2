// The agent protocol: what an agent and the server say to each other over HTTP. It is the only
// edge between them, for standalone agents and for the embedded server's local agents alike.
//
// All routes sit under AGENT_API_PREFIX and need `Authorization: Bearer <agent token>`. A token
// is bound to a resource class or a pattern ('machine:*'); an agent claims only from those.
//
//   POST /claim                              ClaimRequest → 200 ClaimResponse | 204 (nothing within waitMs)
//   POST /tasks/:taskId/heartbeat            HeartbeatRequest → 200 HeartbeatResponse | 409 lease lost
//   POST /tasks/:taskId/steps/:index/start   StepStartRequest → 204 | 409
//   POST /tasks/:taskId/steps/:index/output  OutputRequest (JSON) or OutputFramesRequest (frames) → 204 | 409
//                                            (idempotent by seq)
//   POST /tasks/:taskId/steps/:index/end     StepEndRequest → 204 | 409
//   POST /tasks/:taskId/steps/:index/report  StepReportRequest → 204 | 409   (start+output+end at once,
//                                            for a step that ended before its first flush; idempotent)
//   POST /tasks/:taskId/complete             CompleteRequest → 204 | 409
//
// Every request after the claim carries the lease id; a 409 means the lease expired and the task was
// given to someone else (or finished): the agent must stop working on it.
import type { ExecutorSpec, Step } from '../config/model.js';

export const AGENT_API_PREFIX = '/api/agent/v1';
/** how long a lease lasts without a heartbeat */
export const DEFAULT_LEASE_MS = 30_000;
/** how often agents renew (the server tells them in the claim response) */
export const DEFAULT_HEARTBEAT_MS = 5_000;
/** the longest a claim request is held open */
export const MAX_CLAIM_WAIT_MS = 30_000;

export interface CheckoutSpec {
  /** URL the agent clones from (file://, http(s)://, ssh://) */
  repoUrl: string;
  revision: string;
  branch?: string;
  tag?: string;
}

/** What an agent needs to run one task (one parallel run of a job). */
export interface TaskSpec {
  taskId: string;
  jobId: string;
  jobNumber: number;
  jobName: string;
  projectSlug: string;
  nodeIndex: number;
  nodeTotal: number;
  executor: ExecutorSpec;
  resourceClass: string;
  /** as configured, '~' not yet expanded */
  workingDirectory: string;
  shell?: string;
  /** job environment, built-in CIRCLE_* variables and (later) project and context variables, merged */
  environment: Record<string, string>;
  steps: Step[];
  checkout: CheckoutSpec;
  /** values to mask in output (project and context secrets); later issues fill it */
  secrets: string[];
  /**
   * The project SSH keys the job's `add_ssh_keys` steps ask for (decrypted at claim, only for jobs
   * that have such a step; their private keys are also in `secrets`).
   */
  sshKeys?: TaskSshKey[];
  /** Set when the job reruns failed tests only: what failed in the job's previous run. */
  rerunFailedTests?: RerunFailedTests;
}

export interface TaskSshKey {
  /** MD5, 'aa:bb:…' */
  fingerprint: string;
  /** 'SHA256:…' */
  fingerprintSha256: string;
  /** '' = every host */
  hostname: string;
  privateKey: string;
}

/** "Rerun failed tests": `circleci tests run` keeps only the input names that failed before. */
export interface RerunFailedTests {
  /** the workflow whose run of this job the tests come from */
  workflowId: string;
  /** test cases the previous run stored */
  totalTests: number;
  /** its failed (failure or error) test cases, each once; empty: nothing failed, all tests run */
  failed: Array<{ name: string; classname: string; file?: string }>;
}

export interface ClaimRequest {
  agentId: string;
  name?: string;
  hostname?: string;
  version?: string;
  /** the resource classes this agent wants work for; each must be allowed by its token */
  resourceClasses: string[];
  /** how long to hold the request open waiting for work (≤ MAX_CLAIM_WAIT_MS) */
  waitMs: number;
}

export interface ClaimResponse {
  task: TaskSpec;
  leaseId: string;
  leaseMs: number;
  heartbeatMs: number;
}

export interface HeartbeatRequest {
  leaseId: string;
}

export interface HeartbeatResponse {
  /** true when the job was canceled: stop the steps and complete with 'canceled' */
  cancel: boolean;
}

export interface StepStartRequest {
  leaseId: string;
  name: string;
  type: string;
  background?: boolean;
  /** ISO time */
  startedAt: string;
}

export interface OutputChunk {
  /** per-step sequence number starting at 0; a chunk already stored is ignored */
  seq: number;
  stream: 'out' | 'err';
  /** ISO time the bytes were read */
  time: string;
  data: string;
}

export interface OutputRequest {
  leaseId: string;
  chunks: OutputChunk[];
}

/**
 * An output request whose body is `application/vnd.torus.output-frames` (src/scheduler/output-format.ts):
 * the lease in the `x-torus-lease` header, the chunks as records. The server checks each record and
 * stores the body as sent, so output is encoded once, by the agent (the fast path for loud steps).
 */
export interface OutputFramesRequest {
  leaseId: string;
  records: Buffer;
}

export const LEASE_HEADER = 'x-torus-lease';

export type StepStatus = 'running' | 'success' | 'failed' | 'timedout' | 'canceled';

export interface StepEndRequest {
  leaseId: string;
  status: Exclude<StepStatus, 'running'>;
  exitCode: number | null;
  stoppedAt: string;
}

/** A step that started and ended before anything of it was sent: reported in one request. */
export interface StepReportRequest {
  leaseId: string;
  name: string;
  type: string;
  background?: boolean;
  /** ISO time */
  startedAt: string;
  chunks: OutputChunk[];
  status: Exclude<StepStatus, 'running'>;
  exitCode: number | null;
  /** ISO time */
  stoppedAt: string;
}

export type TaskOutcome = 'success' | 'failed' | 'timedout' | 'canceled' | 'infrastructure_fail';

export interface CompleteRequest {
  leaseId: string;
  status: TaskOutcome;
  /** shown in the job's messages when not success */
  message?: string;
}
