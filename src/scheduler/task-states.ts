// The task state machine: a transition table plus predicates. A task is one parallel run of a job
// (job × node index); see README.md for the diagram.
import type { TaskOutcome } from './protocol.js';

export type TaskStatus = 'queued' | 'running' | TaskOutcome;

/** Why a task moves: the event that drives each transition. */
export type TaskEvent = 'claim' | 'complete' | 'lease_expired_requeue' | 'lease_expired_give_up' | 'cancel';

/** from → to → the events allowed to take that edge. Anything absent is refused. */
export const TASK_TRANSITIONS: Readonly<
  Record<TaskStatus, Partial<Record<TaskStatus, readonly TaskEvent[]>>>
> = {
  queued: { running: ['claim'], canceled: ['cancel'] },
  running: {
    queued: ['lease_expired_requeue'],
    success: ['complete'],
    failed: ['complete'],
    timedout: ['complete'],
    canceled: ['complete', 'lease_expired_give_up'],
    infrastructure_fail: ['complete', 'lease_expired_give_up'],
  },
  success: {},
  failed: {},
  timedout: {},
  canceled: {},
  infrastructure_fail: {},
};

export function canTransition(from: TaskStatus, to: TaskStatus, event: TaskEvent): boolean {
  return TASK_TRANSITIONS[from][to]?.includes(event) ?? false;
}

export function isFinal(status: TaskStatus): status is TaskOutcome {
  switch (status) {
    case 'queued':
    case 'running':
      return false;
    case 'success':
    case 'failed':
    case 'timedout':
    case 'canceled':
    case 'infrastructure_fail':
      return true;
    default: {
      const never: never = status;
      throw new Error(`unknown task status ${String(never)}`);
    }
  }
}

export function isTaskStatus(s: string): s is TaskStatus {
  return Object.prototype.hasOwnProperty.call(TASK_TRANSITIONS, s);
}

export function isTaskOutcome(s: string): s is TaskOutcome {
  return isTaskStatus(s) && isFinal(s);
}

/** Lower is stronger: the first outcome present among a job's tasks is the job's outcome. */
const OUTCOME_PRECEDENCE: readonly TaskOutcome[] = [
  'canceled',
  'infrastructure_fail',
  'timedout',
  'failed',
  'success',
];

/** The job's outcome from its tasks' outcomes: any canceled → canceled; else infrastructure_fail; else timedout; else failed; else success. */
export function aggregateOutcome(outcomes: readonly TaskOutcome[]): TaskOutcome {
  for (const o of OUTCOME_PRECEDENCE) if (outcomes.includes(o)) return o;
  return 'success';
}
