// The workflow state machine: CircleCI's workflow statuses, the transitions Torus allows, and the
// status a workflow has given the statuses of its jobs.
import type { JobStatus } from './job-state.js';

export const WORKFLOW_STATUSES = [
  'running',
  'failing',
  'on_hold',
  'success',
  'failed',
  'error',
  'canceled',
  'not_run',
  'unauthorized',
] as const;
export type WorkflowStatus = (typeof WORKFLOW_STATUSES)[number];

/** What a workflow can become from each status; a status with no way out is final. */
export const WORKFLOW_TRANSITIONS: Readonly<Record<WorkflowStatus, readonly WorkflowStatus[]>> = {
  running: ['failing', 'on_hold', 'success', 'failed', 'error', 'canceled', 'unauthorized'],
  // a job failed while others still run; only approvals may be left waiting after that
  failing: ['on_hold', 'failed', 'error', 'canceled'],
  // waiting on an approval: approving resumes it, or finishes it when nothing depends on the approval
  on_hold: ['running', 'failing', 'success', 'failed', 'error', 'canceled', 'unauthorized'],
  success: [],
  failed: [],
  error: [],
  canceled: [],
  not_run: [],
  unauthorized: [],
};

export function isWorkflowStatus(s: string): s is WorkflowStatus {
  return (WORKFLOW_STATUSES as readonly string[]).includes(s);
}

export function isFinalWorkflowStatus(s: WorkflowStatus): boolean {
  return WORKFLOW_TRANSITIONS[s].length === 0;
}

export function canTransitionWorkflow(from: WorkflowStatus, to: WorkflowStatus): boolean {
  return from === to || WORKFLOW_TRANSITIONS[from].includes(to);
}

/**
 * The status of a workflow that was not canceled, from its jobs' statuses:
 * - jobs queued or running → `running`, or `failing` once any job failed;
 * - otherwise an approval waits → `on_hold`;
 * - all final → `failed` if any job failed (timedout, infrastructure_fail included), else
 *   `canceled` if a job was canceled, else `unauthorized` if one was, else `success`
 *   (jobs `not_run` because a flexible requirement was not met do not fail a workflow).
 */
export function deriveWorkflowStatus(jobs: readonly JobStatus[]): WorkflowStatus {
  let active = false;
  let onHold = false;
  let blocked = false;
  let failed = false;
  let canceled = false;
  let unauthorized = false;
  for (const s of jobs) {
    switch (s) {
      case 'queued':
      case 'running':
        active = true;
        break;
      case 'on_hold':
        onHold = true;
        break;
      case 'blocked':
        blocked = true;
        break;
      case 'failed':
      case 'timedout':
      case 'infrastructure_fail':
      case 'terminated-unknown':
        failed = true;
        break;
      case 'canceled':
        canceled = true;
        break;
      case 'unauthorized':
        unauthorized = true;
        break;
      case 'success':
      case 'not_run':
      case 'retried':
        break;
      default: {
        const never: never = s;
        throw new Error(`unknown job status ${String(never)}`);
      }
    }
  }
  if (active) return failed ? 'failing' : 'running';
  if (onHold) return 'on_hold';
  // blocked jobs with nothing active or held are about to be decided by the DAG advance
  if (blocked) return failed ? 'failing' : 'running';
  if (failed) return 'failed';
  if (canceled) return 'canceled';
  if (unauthorized) return 'unauthorized';
  return 'success';
}
