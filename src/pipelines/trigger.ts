// Triggering a pipeline: the pipeline row (numbered per project, state `created`) is written at
// once; then, in the background, the config is fetched at the revision, compiled with the pipeline
// values and parameters, and the workflows are created — or the pipeline is `errored` with
// CircleCI's errors[{type, message}]. A `setup: true` config creates its setup workflow and the
// pipeline waits in `setup-pending`/`setup` for POST /pipeline/continue (continuation.ts).
import type { CompiledConfig, CompiledWorkflow, PipelineValues, WorkflowJob } from '../config/model.js';
import { TorusError } from '../ops/index.js';
import type { Queryable } from '../storage/index.js';
import {
  CONFIG_PATH,
  type EngineCore,
  type PipelineRecord,
  type ProjectRecord,
  type ScheduledWorkflow,
  PIPELINE_COLUMNS,
  PROJECT_COLUMNS,
  isUuid,
  notifyPipelineChanged,
  orbResolverFor,
} from './core.js';
import { createWorkflow } from './dag.js';
import { FilterPatternError, selectWorkflowJobs } from './filters.js';
import { isScheduledHere, syncWorkflowSchedules } from './schedules.js';
import type { PipelineError } from './pipeline-state.js';
import { queueKeyOf } from './task-spec.js';
import { VcsError, type ResolvedCommit } from './vcs.js';

export type TriggerType = 'api' | 'explicit' | 'webhook' | 'scheduled_pipeline';
const TRIGGER_TYPES: readonly TriggerType[] = ['api', 'explicit', 'webhook', 'scheduled_pipeline'];

export interface TriggerInput {
  projectId: string;
  branch?: string;
  tag?: string;
  revision?: string;
  parameters?: Record<string, string | number | boolean>;
  actorId?: string;
  triggerType: TriggerType;
  /** a legacy workflow schedule firing (schedules.ts): the pipeline runs that workflow alone */
  scheduledWorkflow?: ScheduledWorkflow;
  /** a scheduled pipeline firing (pipeline-schedules.ts) */
  pipelineSchedule?: { id: string; name: string };
}

// CircleCI's limits on API-supplied pipeline parameters
const MAX_PARAMETERS = 100;
const MAX_PARAMETER_KEY = 128;
const MAX_PARAMETER_VALUE = 512;

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20 || s.charCodeAt(i) === 0x7f) return true;
  return false;
}

function validateTrigger(input: TriggerInput): void {
  const bad = (message: string) => new TorusError('TORUS_E_BAD_REQUEST', message);
  if (input.branch && input.tag) throw bad('branch and tag are mutually exclusive: pass one of them.');
  if (!TRIGGER_TYPES.includes(input.triggerType))
    throw bad(`Unknown trigger type ${JSON.stringify(input.triggerType)}.`);
  for (const [what, v] of [
    ['branch', input.branch],
    ['tag', input.tag],
  ] as const) {
    // git refuses these in ref names; refusing early gives a clearer message than "not found"
    if (
      v !== undefined &&
      (v === '' || v.startsWith('-') || hasControlChar(v) || /[\s~^:?*[\\]|\.\.|@\{/.test(v))
    ) {
      throw bad(`Invalid ${what} name ${JSON.stringify(v)}.`);
    }
  }
  if (input.revision !== undefined && !/^[0-9a-f]{4,40}$/i.test(input.revision)) {
    throw bad(`Invalid revision ${JSON.stringify(input.revision)}: give a commit SHA.`);
  }
  validateParameters(input.parameters ?? {});
}

/** CircleCI's limits on API-supplied pipeline parameters (trigger and continuation). */
export function validateParameters(params: Record<string, unknown>): void {
  const bad = (message: string) => new TorusError('TORUS_E_BAD_REQUEST', message);
  const keys = Object.keys(params);
  if (keys.length > MAX_PARAMETERS)
    throw bad(`Too many pipeline parameters (${keys.length}); at most ${MAX_PARAMETERS}.`);
  for (const k of keys) {
    const v = params[k];
    if (k.length > MAX_PARAMETER_KEY)
      throw bad(
        `Pipeline parameter name ${JSON.stringify(k.slice(0, 40))}… is longer than ${MAX_PARAMETER_KEY} characters.`,
      );
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw bad(`Pipeline parameter ${k} must be a string, number or boolean.`);
    }
    if (typeof v === 'string' && v.length > MAX_PARAMETER_VALUE) {
      throw bad(`Pipeline parameter ${k} is longer than ${MAX_PARAMETER_VALUE} characters.`);
    }
  }
}

export async function insertPipeline(core: EngineCore, input: TriggerInput): Promise<PipelineRecord> {
  validateTrigger(input);
  return core.res.db.transaction((tx) => insertPipelineIn(core, tx, input));
}

/** insertPipeline inside the caller's transaction (the input already validated). */
export async function insertPipelineIn(
  core: EngineCore,
  tx: Queryable,
  input: TriggerInput,
): Promise<PipelineRecord> {
  const proj = isUuid(input.projectId)
    ? await tx.query<{ default_branch: string }>(
        'UPDATE projects SET next_pipeline_number = next_pipeline_number + 1 WHERE id = $1 RETURNING default_branch, next_pipeline_number - 1 AS number',
        [input.projectId],
      )
    : { rows: [] };
  const project = proj.rows[0] as { default_branch: string; number: number } | undefined;
  if (!project) throw new TorusError('TORUS_E_NOT_FOUND', `Project not found: ${input.projectId}`);
  // neither branch nor tag: the default branch, as CircleCI's trigger API does
  const branch = input.tag ? null : (input.branch ?? project.default_branch);
  const now = core.res.clock.now();
  const { rows } = await tx.query<PipelineRecord>(
    `INSERT INTO pipelines (id, project_id, number, state, trigger_type, actor_id, received_at, branch, tag, revision,
       parameters, created_at, updated_at, scheduled_workflow, pipeline_schedule)
     VALUES ($1, $2, $3, 'created', $4, $5, $6, $7, $8, $9, $10, $6, $6, $11, $12)
     RETURNING ${PIPELINE_COLUMNS}`,
    [
      core.res.ids.uuid(),
      input.projectId,
      project.number,
      input.triggerType,
      input.actorId ?? null,
      now,
      branch,
      input.tag ?? null,
      input.revision?.toLowerCase() ?? null,
      JSON.stringify(input.parameters ?? {}),
      input.scheduledWorkflow ? JSON.stringify(input.scheduledWorkflow) : null,
      input.pipelineSchedule ? JSON.stringify(input.pipelineSchedule) : null,
    ],
  );
  const pipeline = rows[0];
  if (!pipeline) throw new Error('internal: pipeline insert returned nothing');
  await notifyPipelineChanged(tx, pipeline.id);
  return pipeline;
}

/**
 * pipeline.trigger_source (deprecated but still read): webhook | api | scheduled_pipeline, and
 * `schedule` for a legacy scheduled workflow.
 */
function triggerSource(pipeline: PipelineRecord): string {
  if (pipeline.scheduled_workflow) return 'schedule';
  return pipeline.trigger_type === 'explicit' ? 'api' : pipeline.trigger_type;
}

/** pipeline.trigger.type and pipeline.event.name for a plain-git trigger. */
function triggerKind(t: string): { type: string; event: string } {
  switch (t) {
    case 'webhook':
      return { type: 'webhook', event: 'push' };
    case 'scheduled_pipeline':
      return { type: 'schedule', event: 'schedule' };
    default:
      return { type: 'api', event: 'api' };
  }
}

export interface ValueInputs {
  pipeline: PipelineRecord;
  project: ProjectRecord;
  commit: ResolvedCommit;
  baseRevision: string | null;
  checkoutUrl: string;
}

/** The `pipeline.*` values a config can use, for a plain-git project. */
export function pipelineValuesOf(v: ValueInputs): PipelineValues {
  const { pipeline, project, commit } = v;
  const kind = triggerKind(pipeline.trigger_type);
  return {
    'pipeline.id': pipeline.id,
    'pipeline.number': pipeline.number,
    'pipeline.project.git_url': project.vcs_url,
    'pipeline.project.type': 'circleci',
    'pipeline.project.slug': project.slug,
    'pipeline.git.branch': pipeline.branch ?? '',
    'pipeline.git.tag': pipeline.tag ?? '',
    'pipeline.git.revision': commit.revision,
    'pipeline.git.base_revision': v.baseRevision ?? '',
    'pipeline.git.branch.is_default': pipeline.branch !== null && pipeline.branch === project.default_branch,
    'pipeline.git.repo_url': project.vcs_url,
    'pipeline.git.repo_owner': project.org_name,
    'pipeline.git.repo_name': project.name,
    'pipeline.git.commit.subject': commit.subject,
    'pipeline.git.commit.body': commit.body,
    'pipeline.git.commit.author_name': commit.authorName,
    'pipeline.git.commit.author_email': commit.authorEmail,
    'pipeline.git.commit.author_date': commit.authorDate,
    'pipeline.git.commit.committer_name': commit.committerName,
    'pipeline.git.commit.committer_email': commit.committerEmail,
    'pipeline.git.origin_repo_url': project.vcs_url,
    'pipeline.git.target_repo_url': project.vcs_url,
    'pipeline.trigger_source': triggerSource(pipeline),
    'pipeline.trigger.type': kind.type,
    'pipeline.event.name': kind.event,
    'pipeline.event.action': kind.event,
    'pipeline.trigger.received_at': pipeline.received_at.toISOString(),
    'pipeline.config.file_path': CONFIG_PATH,
    'pipeline.config.file_type': 'circleci',
    'pipeline.config.ref': pipeline.tag ? `refs/tags/${pipeline.tag}` : `refs/heads/${pipeline.branch ?? ''}`,
    'pipeline.config.repository.name': `${project.org_name}/${project.name}`,
    'pipeline.config.repository.url': project.vcs_url,
    'pipeline.config.sha': commit.revision,
    ...(pipeline.pipeline_schedule
      ? {
          'pipeline.schedule.id': pipeline.pipeline_schedule.id,
          'pipeline.schedule.name': pipeline.pipeline_schedule.name,
        }
      : {}),
  };
}

export async function loadPipeline(
  core: EngineCore,
  pipelineId: string,
): Promise<{ pipeline: PipelineRecord; project: ProjectRecord } | null> {
  const { rows } = await core.res.db.query<PipelineRecord>(
    `SELECT ${PIPELINE_COLUMNS}
       FROM pipelines WHERE id = $1`,
    [pipelineId],
  );
  const pipeline = rows[0];
  if (!pipeline) return null;
  const proj = await core.res.db.query<ProjectRecord>(
    `SELECT ${PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id WHERE p.id = $1`,
    [pipeline.project_id],
  );
  const project = proj.rows[0];
  if (!project) return null;
  return { pipeline, project };
}

interface Finish {
  values?: PipelineValues;
  revision?: string;
  vcs?: Record<string, unknown>;
  configSource?: string;
  configCompiled?: string;
}

/** Marks a pipeline still `created` as errored; a pipeline another process finished is left alone. */
async function markErrored(
  core: EngineCore,
  pipelineId: string,
  errors: PipelineError[],
  f: Finish = {},
): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE pipelines SET state = 'errored', errors = $2, revision = coalesce($3, revision), vcs = coalesce($4, vcs),
         config_source = coalesce($5, config_source), updated_at = $6, pipeline_values = coalesce($7, pipeline_values)
       WHERE id = $1 AND state = 'created'`,
      [
        pipelineId,
        JSON.stringify(errors),
        f.revision ?? null,
        f.vcs ? JSON.stringify(f.vcs) : null,
        f.configSource ?? null,
        core.res.clock.now(),
        f.values ? JSON.stringify(f.values) : null,
      ],
    );
    if (rowCount > 0) await notifyPipelineChanged(tx, pipelineId);
  });
  core.res.logger.info({ pipelineId, errors }, 'pipeline errored');
}

function vcsInfo(
  project: ProjectRecord,
  pipeline: PipelineRecord,
  commit: ResolvedCommit,
  checkoutUrl: string,
): Record<string, unknown> {
  // CircleCI's pipeline `vcs` object
  return {
    provider_name: 'circleci',
    origin_repository_url: checkoutUrl,
    target_repository_url: checkoutUrl,
    revision: commit.revision,
    ...(pipeline.branch ? { branch: pipeline.branch } : {}),
    ...(pipeline.tag ? { tag: pipeline.tag } : {}),
    commit: {
      subject: commit.subject,
      body: commit.body,
      author: { name: commit.authorName, email: commit.authorEmail },
      committer: { name: commit.committerName, email: commit.committerEmail },
      authored_at: commit.authorDate,
    },
    vcs_url: project.vcs_url,
  };
}

async function baseRevisionOf(core: EngineCore, pipeline: PipelineRecord): Promise<string | null> {
  if (!pipeline.branch) return null;
  const { rows } = await core.res.db.query<{ revision: string }>(
    `SELECT revision FROM pipelines WHERE project_id = $1 AND branch = $2 AND number < $3 AND revision IS NOT NULL
      ORDER BY number DESC LIMIT 1`,
    [pipeline.project_id, pipeline.branch, pipeline.number],
  );
  return rows[0]?.revision ?? null;
}

/**
 * Fetches, compiles and creates the workflows of a pipeline in state `created`. Every outcome a
 * user can cause (unknown branch, missing or invalid config) ends in `errored`; only failures of
 * the server itself (the database) throw, leaving the pipeline `created` for recover().
 */
export async function processPipeline(core: EngineCore, pipelineId: string): Promise<void> {
  const loaded = await loadPipeline(core, pipelineId);
  if (!loaded || loaded.pipeline.state !== 'created') return;
  const { pipeline, project } = loaded;
  const log = core.res.logger.child({ pipelineId, project: project.slug, number: pipeline.number });

  let commit: ResolvedCommit;
  let source: string | null;
  try {
    commit = await core.vcs.resolve(
      { id: project.id, vcsUrl: project.vcs_url },
      {
        branch: pipeline.branch ?? undefined,
        tag: pipeline.tag ?? undefined,
        revision: pipeline.revision ?? undefined,
      },
    );
    source = await core.vcs.readFile(
      { id: project.id, vcsUrl: project.vcs_url },
      commit.revision,
      CONFIG_PATH,
    );
  } catch (err) {
    if (!(err instanceof VcsError)) log.error({ err }, 'unexpected failure fetching the config');
    await markErrored(core, pipelineId, [{ type: 'config-fetch', message: (err as Error).message }]);
    return;
  }
  const checkoutUrl = core.vcs.checkoutUrl(project.vcs_url);
  const vcs = vcsInfo(project, pipeline, commit, checkoutUrl);
  if (source === null) {
    const at = pipeline.tag
      ? `tag ${pipeline.tag}`
      : pipeline.branch
        ? `branch ${pipeline.branch}`
        : 'the revision';
    await markErrored(
      core,
      pipelineId,
      [
        {
          type: 'config-fetch',
          message: `No ${CONFIG_PATH} found at ${commit.revision} (${at}): add one to the repository.`,
        },
      ],
      { revision: commit.revision, vcs },
    );
    return;
  }

  const values = pipelineValuesOf({
    pipeline,
    project,
    commit,
    baseRevision: await baseRevisionOf(core, pipeline),
    checkoutUrl,
  });
  const orbResolver = orbResolverFor(core, project.org_id);
  let compiled;
  try {
    compiled = await core.compile(source, {
      filename: CONFIG_PATH,
      pipelineValues: values,
      pipelineParameters: pipeline.parameters,
      ...(orbResolver ? { orbResolver } : {}),
    });
  } catch (err) {
    log.error({ err }, 'the config compiler threw');
    await markErrored(
      core,
      pipelineId,
      [{ type: 'config', message: `${CONFIG_PATH}: internal compiler error: ${(err as Error).message}` }],
      { revision: commit.revision, vcs, configSource: source, values },
    );
    return;
  }
  const finish: Finish = { revision: commit.revision, vcs, configSource: source, values };
  if (!compiled.ok) {
    await markErrored(
      core,
      pipelineId,
      compiled.errors.map((e) => ({
        type: 'config' as const,
        message: e.hint ? `${e.message}\n${e.hint}` : e.message,
      })),
      finish,
    );
    return;
  }
  const setupProblem = compiled.config.setup ? setupConfigProblem(compiled.config) : null;
  if (setupProblem) {
    await markErrored(core, pipelineId, [{ type: 'config', message: setupProblem }], finish);
    return;
  }
  let selections: { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[];
  try {
    selections = selectWorkflows(compiled.config, pipeline);
  } catch (err) {
    if (!(err instanceof FilterPatternError)) throw err;
    await markErrored(
      core,
      pipelineId,
      [{ type: 'config', message: `${CONFIG_PATH}: ${err.message}` }],
      finish,
    );
    return;
  }
  const config = compiled.config;
  if (config.setup && selections.length === 0) {
    // nothing could ever continue it
    await markErrored(
      core,
      pipelineId,
      [
        {
          type: 'config',
          message: `${CONFIG_PATH}: the setup workflow has no job to run on ${pipeline.tag ? `tag ${pipeline.tag}` : `branch ${pipeline.branch ?? ''}`} (filters removed them all), so the pipeline could never be continued`,
        },
      ],
      finish,
    );
    return;
  }
  const unqueueable = unqueueableJobs(config, selections);
  if (unqueueable.length > 0) {
    await markErrored(
      core,
      pipelineId,
      unqueueable.map((message) => ({ type: 'config' as const, message })),
      finish,
    );
    return;
  }
  try {
    await createAll(core, pipelineId, { ...pipeline, revision: commit.revision }, config, selections, {
      revision: commit.revision,
      vcs,
      source,
      compiled: compiled.processedYaml,
      values,
      setup: compiled.config.setup,
    });
  } catch (err) {
    // a refusal with a user-facing reason (the scheduler's, say) errors the pipeline; anything
    // else is the server's trouble: the pipeline stays created for recover()
    if (!(err instanceof TorusError)) throw err;
    await markErrored(core, pipelineId, [{ type: 'config', message: err.message }], finish);
    return;
  }
  log.info({ workflows: selections.map((x) => x.workflow.name) }, 'pipeline created its workflows');
}

/** Why a `setup: true` config cannot run as a setup workflow (CircleCI's constraints), or null. */
function setupConfigProblem(config: CompiledConfig): string | null {
  if (config.sourceVersion !== '2.1') {
    return `${CONFIG_PATH}: a setup configuration (\`setup: true\`) needs version: 2.1`;
  }
  const runnable = config.workflows.filter((w) => w.triggers.length === 0);
  if (runnable.length !== 1) {
    return `${CONFIG_PATH}: a setup configuration (\`setup: true\`) must have exactly one workflow to run; it has ${runnable.length} (${runnable.map((w) => w.name).join(', ') || 'none'})`;
  }
  return null;
}

/** The scheduler's rule for queue keys (src/scheduler/resource-classes.ts). */
const QUEUE_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._:/+-]*$/;
const MAX_QUEUE_KEY = 200;

/** Messages for build jobs whose resource class the scheduler would refuse. */
export function unqueueableJobs(
  config: CompiledConfig,
  selections: { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[],
): string[] {
  const out = new Set<string>();
  for (const { jobs } of selections) {
    for (const job of jobs) {
      const spec = job.job ? config.jobs[job.job] : undefined;
      if (job.type !== 'build' || !spec) continue;
      const key = queueKeyOf(spec.executor, spec.resourceClass);
      if (!QUEUE_KEY_RE.test(key) || key.length > MAX_QUEUE_KEY) {
        out.add(
          `${CONFIG_PATH}: job ${job.job}: resource_class ${JSON.stringify(spec.resourceClass)} is not valid: use letters, digits and . _ / + - (e.g. "large" or "my-namespace/my-runner").`,
        );
      }
    }
  }
  return [...out];
}

async function createAll(
  core: EngineCore,
  pipelineId: string,
  pipeline: PipelineRecord,
  config: CompiledConfig,
  selections: { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[],
  f: {
    revision: string;
    vcs: Record<string, unknown>;
    source: string;
    compiled: string;
    values: PipelineValues;
    /** a setup config: the pipeline goes to setup-pending and the config is also kept as the setup config */
    setup: boolean;
  },
): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const locked = await tx.query<{ state: string }>('SELECT state FROM pipelines WHERE id = $1 FOR UPDATE', [
      pipelineId,
    ]);
    // another replica (or recover()) finished it meanwhile
    if (locked.rows[0]?.state !== 'created') return;
    await tx.query(
      `UPDATE pipelines SET state = $8, revision = $2, vcs = $3, config_source = $4, config_compiled = $5, updated_at = $6,
         pipeline_values = $7, setup_config_source = $9, setup_config_compiled = $10
        WHERE id = $1`,
      [
        pipelineId,
        f.revision,
        JSON.stringify(f.vcs),
        f.source,
        f.compiled,
        core.res.clock.now(),
        JSON.stringify(f.values),
        f.setup ? 'setup-pending' : 'pending',
        f.setup ? f.source : null,
        f.setup ? f.compiled : null,
      ],
    );
    // the state is stored from here on: the DAG gives the jobs of a setup workflow a continuation key
    // the revision is stored from here on: the DAG's queue step reads it
    await createWorkflows(core, tx, pipeline, config, selections);
    // a branch's newest config decides its workflow schedules
    if (!f.setup && pipeline.branch) await syncWorkflowSchedules(core, tx, pipeline, config);
    await notifyPipelineChanged(tx, pipelineId);
  });
}

export function selectWorkflows(
  config: CompiledConfig,
  pipeline: PipelineRecord,
): { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[] {
  const out: { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[] = [];
  const scheduled = pipeline.scheduled_workflow;
  for (const workflow of config.workflows) {
    // legacy scheduled workflows (`triggers:`) run only when their schedule fires (schedules.ts),
    // alone, never in pipelines triggered by a push, the API or a scheduled pipeline
    if (scheduled ? !isScheduledHere(workflow, scheduled, pipeline.branch) : workflow.triggers.length > 0)
      continue;
    const jobs = selectWorkflowJobs(workflow.jobs, { branch: pipeline.branch, tag: pipeline.tag });
    if (jobs.length > 0) out.push({ workflow, jobs });
  }
  return out;
}

export async function createWorkflows(
  core: EngineCore,
  tx: Queryable,
  pipeline: PipelineRecord,
  config: CompiledConfig,
  selections: { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[],
): Promise<void> {
  for (const { workflow, jobs } of selections) {
    await createWorkflow(core, tx, pipeline, config, workflow, jobs);
  }
}
