// The pipeline state machine: CircleCI's pipeline states and the transitions Torus makes.
// `setup-pending`/`setup`: dynamic configuration (a setup workflow waiting for its continuation).

export const PIPELINE_STATES = ['created', 'errored', 'setup-pending', 'setup', 'pending'] as const;
export type PipelineState = (typeof PIPELINE_STATES)[number];

export const PIPELINE_TRANSITIONS: Readonly<Record<PipelineState, readonly PipelineState[]>> = {
  // config fetched and compiled → pending (workflows created); any problem → errored
  // setup: true → setup-pending (setup workflow created) → setup (its first job started)
  created: ['pending', 'errored', 'setup-pending'],
  // continued (or errored) before the scheduler reported the setup job started
  'setup-pending': ['setup', 'pending', 'errored'],
  // POST /pipeline/continue: pending (continuation workflows created) or errored (config invalid, expired)
  setup: ['pending', 'errored'],
  pending: [],
  errored: [],
};

/** CircleCI's pipeline error types (API `errors[].type`). */
export type PipelineErrorType = 'config' | 'config-fetch' | 'timeout' | 'permission' | 'plan';

export interface PipelineError {
  type: PipelineErrorType;
  message: string;
}

export function canTransitionPipeline(from: PipelineState, to: PipelineState): boolean {
  return PIPELINE_TRANSITIONS[from].includes(to);
}
