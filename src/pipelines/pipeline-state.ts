// The pipeline state machine: CircleCI's pipeline states and the transitions Torus makes.
// `setup-pending`/`setup` (dynamic configuration) come with a later issue.

export const PIPELINE_STATES = ['created', 'errored', 'setup-pending', 'setup', 'pending'] as const;
export type PipelineState = (typeof PIPELINE_STATES)[number];

export const PIPELINE_TRANSITIONS: Readonly<Record<PipelineState, readonly PipelineState[]>> = {
  // config fetched and compiled → pending (workflows created); any problem → errored
  created: ['pending', 'errored', 'setup-pending'],
  'setup-pending': ['setup', 'errored'],
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
