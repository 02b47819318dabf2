// The workflow job state machine: CircleCI's job statuses, the transitions Torus allows between
// them, and how a blocked job decides once its requirements are final (flexible `requires`).
import type { RequiredStatus, Requirement } from '../config/model.js';

export const JOB_STATUSES = [
  'blocked',
  'queued',
  'running',
  'success',
  'failed',
  'timedout',
  'infrastructure_fail',
  'canceled',
  'on_hold',
  'not_run',
  'retried',
  'unauthorized',
  'terminated-unknown',
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export type JobType = 'build' | 'approval' | 'no-op';

/** What a job can become from each status; a status with no way out is final. */
export const JOB_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  // requirements decided: build → queued, approval → on_hold, no-op → success; or not_run;
  // or canceled with its workflow; unauthorized is for restricted contexts (later issue).
  blocked: ['queued', 'on_hold', 'success', 'not_run', 'canceled', 'unauthorized'],
  // the scheduler may finish a job that never started (canceled while queued, lease give-up)
  queued: ['running', 'success', 'failed', 'timedout', 'infrastructure_fail', 'canceled'],
  running: ['success', 'failed', 'timedout', 'infrastructure_fail', 'canceled', 'terminated-unknown'],
  // approved → success; canceled with its workflow
  on_hold: ['success', 'canceled'],
  success: [],
  failed: [],
  timedout: [],
  infrastructure_fail: [],
  canceled: [],
  not_run: [],
  retried: [],
  unauthorized: [],
  'terminated-unknown': [],
};

export function isJobStatus(s: string): s is JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(s);
}

export function isFinalJobStatus(s: JobStatus): boolean {
  return JOB_TRANSITIONS[s].length === 0;
}

export function canTransitionJob(from: JobStatus, to: JobStatus): boolean {
  return JOB_TRANSITIONS[from].includes(to);
}

/** Throws when `from → to` is not in the table: a bug in the engine, never a user error. */
export function assertJobTransition(from: JobStatus, to: JobStatus, what: string): void {
  if (!canTransitionJob(from, to)) {
    throw new Error(`internal: job ${what} cannot go from ${from} to ${to}`);
  }
}

/** A job that failed in any way (CircleCI counts timeouts and infrastructure failures as failures). */
export function isFailureStatus(s: JobStatus): boolean {
  return s === 'failed' || s === 'timedout' || s === 'infrastructure_fail' || s === 'terminated-unknown';
}

/**
 * The `requires` status a final job offers its dependents: `failed` covers timedout and
 * infrastructure_fail, as in CircleCI's flexible requires. Null while not final.
 */
export function requiredStatusOf(s: JobStatus): RequiredStatus | null {
  switch (s) {
    case 'success':
      return 'success';
    case 'failed':
    case 'timedout':
    case 'infrastructure_fail':
    case 'terminated-unknown':
      return 'failed';
    case 'canceled':
      return 'canceled';
    case 'not_run':
      return 'not_run';
    case 'unauthorized':
      return 'unauthorized';
    case 'blocked':
    case 'queued':
    case 'running':
    case 'on_hold':
    case 'retried': // superseded by another run; Torus never produces it
      return null;
    default: {
      const never: never = s;
      throw new Error(`unknown job status ${String(never)}`);
    }
  }
}

export type RequirementDecision = 'wait' | 'ready' | 'not_run';

/**
 * A blocked job waits until every requirement is final; then it runs when each one ended in a
 * status it accepts, and is `not_run` otherwise. Requirements naming no job of the workflow
 * (filtered out) are ignored, as CircleCI does.
 */
export function decideRequirements(
  requires: readonly Requirement[],
  statusOf: (name: string) => JobStatus | undefined,
): RequirementDecision {
  let satisfied = true;
  for (const req of requires) {
    const status = statusOf(req.name);
    if (status === undefined) continue;
    const offered = requiredStatusOf(status);
    if (offered === null) return 'wait';
    if (!req.statuses.includes(offered)) satisfied = false;
  }
  return satisfied ? 'ready' : 'not_run';
}

/** The status a job takes when its requirements are met. */
export function readyStatusOf(type: JobType): JobStatus {
  switch (type) {
    case 'build':
      return 'queued';
    case 'approval':
      return 'on_hold';
    // a no-op job does nothing: it succeeds as soon as it may run
    case 'no-op':
      return 'success';
    default: {
      const never: never = type;
      throw new Error(`unknown job type ${String(never)}`);
    }
  }
}
