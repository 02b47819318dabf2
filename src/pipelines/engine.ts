// The PipelineEngine (CONTRACTS.md): projects, triggers with background config processing,
// and the workflow actions, assembled from the systems of this folder over one EngineCore.
import { compileConfig } from '../config/index.js';
import type { OrbResolver } from '../config/index.js';
import type { Resources } from '../ops/index.js';
import { TorusError } from '../ops/index.js';
import type { TaskOutcome } from '../scheduler/protocol.js';
import * as actions from './actions.js';
import { continuePipeline, type ContinueInput } from './continuation.js';
import type { CompileFn, EngineCore, EngineScheduler } from './core.js';
import {
  createProject,
  getProject,
  listProjects,
  type CreateProjectInput,
  type ProjectRow,
} from './projects.js';
import { fireDueSchedules, listWorkflowSchedules, ScheduleLoop } from './schedules.js';
import { insertPipeline, processPipeline, type TriggerInput } from './trigger.js';
import { GitVcsProvider, type VcsProvider } from './vcs.js';

export interface PipelineEngine {
  createProject(input: CreateProjectInput): Promise<ProjectRow>;
  getProject(slugOrId: string): Promise<ProjectRow | null>;
  listProjects(): Promise<ProjectRow[]>;
  /** Creates the pipeline row (state 'created') and returns at once; fetch+compile+workflows continue in the background. */
  triggerPipeline(
    input: TriggerInput,
  ): Promise<{ id: string; number: number; state: string; createdAt: Date }>;
  /** resolves when the pipeline's background processing (compile, workflow creation) is done (tests, CLI). */
  settled(pipelineId: string): Promise<void>;
  /**
   * POST /pipeline/continue: continues a pipeline in its setup phase with a continuation config.
   * Unknown key → TORUS_E_UNAUTHORIZED; already continued/errored → TORUS_E_CONFLICT; a config that
   * cannot run errors the pipeline and throws TORUS_E_CONFIG_INVALID with the compiler's messages.
   */
  continuePipeline(input: ContinueInput): Promise<{ pipelineId: string }>;
  approveJob(workflowId: string, approvalRequestId: string, actorId: string): Promise<void>;
  cancelWorkflow(workflowId: string, actorId: string): Promise<void>;
  cancelJob(jobId: string, actorId: string): Promise<void>;
  rerunWorkflow(
    workflowId: string,
    opts: { fromFailed?: boolean; failedTestsOnly?: boolean; jobs?: string[]; actorId: string },
  ): Promise<{ workflowId: string }>;
  onTaskStarted(jobId: string): Promise<void>;
  onJobFinished(jobId: string, outcome: TaskOutcome): Promise<void>;
  /** at start: finish pipelines left in 'created' by a crash, re-evaluate workflows whose jobs finished meanwhile. */
  recover(): Promise<void>;
  /** fires the workflow schedules that are due (the ScheduleLoop's tick); returns the new pipelines' ids */
  fireSchedules(): Promise<string[]>;
  /** a project's legacy workflow schedules (`triggers: - schedule:`) with their next times */
  listWorkflowSchedules(projectId: string): Promise<WorkflowScheduleInfo[]>;
  /** starts firing workflow schedules every settings.scheduleTickMs (servers call it after recover()) */
  startSchedules(): void;
  /** waits for background work; stops accepting triggers */
  stop(): Promise<void>;
}

export interface WorkflowScheduleInfo {
  id: string;
  branch: string;
  workflow: string;
  cron: string;
  nextRunAt: Date;
  lastRunAt: Date | null;
}

export interface PipelineEngineDeps {
  scheduler: EngineScheduler;
  /** default: plain git, mirrors under `${settings.dataDir}/repos` */
  vcs?: VcsProvider;
  /** default: the config compiler (src/config) */
  compile?: CompileFn;
  /** where the compiler finds orb sources (the orb registry, a later issue); none: orbs are a config error */
  orbResolver?: OrbResolver;
}

export function createPipelineEngine(res: Resources, deps: PipelineEngineDeps): PipelineEngine {
  const core: EngineCore = {
    res,
    scheduler: deps.scheduler,
    vcs: deps.vcs ?? new GitVcsProvider({ dataDir: res.settings.dataDir }),
    compile: deps.compile ?? ((source, opts) => compileConfig(source, opts)),
    orbResolver: deps.orbResolver,
  };
  /** background processing of pipelines, by id, until it ends */
  const inflight = new Map<string, Promise<void>>();
  let stopped = false;
  const fireSchedules = async (): Promise<string[]> => {
    if (stopped) return [];
    const ids = await fireDueSchedules(core);
    for (const id of ids) void startProcessing(id).catch(() => undefined); // logged in startProcessing
    return ids;
  };
  const scheduleLoop = new ScheduleLoop(res, fireSchedules, res.settings.scheduleTickMs);

  function startProcessing(pipelineId: string): Promise<void> {
    const existing = inflight.get(pipelineId);
    if (existing) return existing;
    const work = processPipeline(core, pipelineId).finally(() => inflight.delete(pipelineId));
    inflight.set(pipelineId, work);
    // settled() callers see the failure; this logs it for everyone else (the pipeline stays
    // `created` and recover() retries it at the next start)
    work.catch((err: unknown) =>
      res.logger.error({ err, pipelineId }, 'pipeline processing failed; it stays created'),
    );
    return work;
  }

  return {
    createProject: (input) => createProject(core, input),
    getProject: (slugOrId) => getProject(core, slugOrId),
    listProjects: () => listProjects(core),

    async triggerPipeline(input) {
      if (stopped)
        throw new TorusError(
          'TORUS_E_UNAVAILABLE',
          'The server is shutting down; trigger the pipeline again in a moment.',
        );
      const p = await insertPipeline(core, input);
      void startProcessing(p.id).catch(() => undefined); // logged in startProcessing
      return { id: p.id, number: p.number, state: p.state, createdAt: p.created_at };
    },

    async settled(pipelineId) {
      await inflight.get(pipelineId);
    },

    async continuePipeline(input) {
      if (stopped)
        throw new TorusError(
          'TORUS_E_UNAVAILABLE',
          'The server is shutting down; continue the pipeline again in a moment.',
        );
      return continuePipeline(core, input);
    },

    approveJob: (workflowId, approvalRequestId, actorId) =>
      actions.approveJob(core, workflowId, approvalRequestId, actorId),
    cancelWorkflow: (workflowId, actorId) => actions.cancelWorkflow(core, workflowId, actorId),
    cancelJob: (jobId, actorId) => actions.cancelJob(core, jobId, actorId),
    rerunWorkflow: (workflowId, opts) =>
      actions.rerunWorkflow(core, workflowId, {
        fromFailed: opts.fromFailed,
        failedTestsOnly: opts.failedTestsOnly,
        jobs: opts.jobs,
        actorId: opts.actorId,
      }),
    onTaskStarted: (jobId) => actions.onTaskStarted(core, jobId),
    onJobFinished: (jobId, outcome) => actions.onJobFinished(core, jobId, outcome),

    async recover() {
      const { rows } = await res.db.query<{ id: string }>(
        `SELECT id FROM pipelines WHERE state = 'created' ORDER BY created_at`,
      );
      for (const { id } of rows) {
        try {
          await startProcessing(id);
        } catch (err) {
          // already logged; one broken pipeline must not keep the others from recovering
          res.logger.warn({ err, pipelineId: id }, 'recover: pipeline left created');
        }
      }
      const jobs = await actions.reconcileJobsWithTasks(core);
      const advanced = await actions.recoverWorkflows(core);
      if (rows.length > 0 || jobs > 0 || advanced > 0) {
        res.logger.info(
          { pipelines: rows.length, jobs, workflows: advanced },
          'recovered interrupted pipeline work',
        );
      }
    },

    fireSchedules,
    listWorkflowSchedules: (projectId) => listWorkflowSchedules(res.db, projectId),
    startSchedules: () => scheduleLoop.start(),

    async stop() {
      stopped = true;
      await scheduleLoop.stop();
      await Promise.allSettled([...inflight.values()]);
    },
  };
}
