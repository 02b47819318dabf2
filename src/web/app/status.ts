// CircleCI's statuses (pipelines, workflows, jobs, steps) as the app shows them: a tone for the
// colour and icon, a label, and whether the thing can still change.

export type Tone = 'success' | 'failed' | 'running' | 'hold' | 'waiting' | 'canceled' | 'neutral';

export function toneOf(status: string): Tone {
  switch (status) {
    case 'success':
    case 'fixed':
      return 'success';
    case 'failed':
    case 'failing':
    case 'error':
    case 'errored':
    case 'timedout':
    case 'infrastructure_fail':
    case 'unauthorized':
    case 'terminated-unknown':
      return 'failed';
    case 'running':
    case 'setup':
      return 'running';
    case 'on_hold':
      return 'hold';
    case 'queued':
    case 'blocked':
    case 'created':
    case 'pending':
    case 'setup-pending':
      return 'waiting';
    case 'canceled':
    case 'cancelled':
      return 'canceled';
    default:
      return 'neutral';
  }
}

const LABELS: Record<string, string> = {
  on_hold: 'On hold',
  not_run: 'Not run',
  infrastructure_fail: 'Infra fail',
  timedout: 'Timed out',
  'terminated-unknown': 'Terminated',
  'setup-pending': 'Setting up',
};

export function statusLabel(status: string): string {
  return LABELS[status] ?? status.charAt(0).toUpperCase() + status.slice(1).replace(/[_-]/g, ' ');
}

/** statuses that no longer change by themselves (a rerun makes a new workflow) */
const ACTIVE = new Set([
  'running',
  'failing',
  'on_hold',
  'queued',
  'blocked',
  'created',
  'pending',
  'setup',
  'setup-pending',
]);

export function isActive(status: string): boolean {
  return ACTIVE.has(status);
}

/**
 * A pipeline's status as its list shows it: CircleCI's API has none, so it is read from the
 * workflows (the worst that happened wins; anything still moving is shown as moving).
 */
export function pipelineStatus(state: string, workflows: Array<{ status: string }> | undefined): string {
  if (state === 'errored') return 'errored';
  if (!workflows || workflows.length === 0)
    return state === 'created' || state === 'setup-pending' ? 'pending' : state;
  const has = (...s: string[]) => workflows.some((w) => s.includes(w.status));
  if (has('failing')) return 'failing';
  if (has('running')) return 'running';
  if (has('on_hold')) return 'on_hold';
  if (has('failed', 'error', 'unauthorized')) return 'failed';
  if (has('canceled')) return 'canceled';
  if (workflows.every((w) => w.status === 'success')) return 'success';
  return workflows[0]!.status;
}
