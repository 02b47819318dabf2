// Pipelines: projects on plain git, pipeline triggers (config fetch + compile in the background),
// and the workflow DAG — filters, requires with statuses, approvals, cancel, rerun. The public face
// of src/pipelines/ (other modules import only this).
export { createPipelineEngine, type PipelineEngine, type PipelineEngineDeps } from './engine.js';
export type { ProjectRow, CreateProjectInput } from './projects.js';
export type { TriggerType, TriggerInput } from './trigger.js';
export { CONTINUATION_WINDOW_MS, type ContinueInput } from './continuation.js';
export { CONTINUATION_KEY_ENV, hashContinuationKey } from './continuation-keys.js';
export type { EngineScheduler, CompileFn } from './core.js';
export { secretsPreparer } from './job-secrets.js';
export {
  GitVcsProvider,
  VcsError,
  classifyVcsUrl,
  type VcsProvider,
  type ResolvedCommit,
  type GitRefRequest,
} from './vcs.js';
export {
  JOB_STATUSES,
  JOB_TRANSITIONS,
  isFinalJobStatus,
  type JobStatus,
  type JobType,
} from './job-state.js';
export {
  WORKFLOW_STATUSES,
  WORKFLOW_TRANSITIONS,
  isFinalWorkflowStatus,
  type WorkflowStatus,
} from './workflow-state.js';
export {
  PIPELINE_STATES,
  PIPELINE_TRANSITIONS,
  type PipelineState,
  type PipelineError,
} from './pipeline-state.js';
export { matchesPattern, filtersAllow, selectWorkflowJobs } from './filters.js';
export {
  createPipelineSchedule,
  deletePipelineSchedule,
  getPipelineSchedule,
  listPipelineSchedules,
  updatePipelineSchedule,
  type PipelineSchedule,
  type ScheduleInput,
  type Timetable,
} from './pipeline-schedules.js';
