// Dynamic configuration, second half: POST /api/v2/pipeline/continue. The continuation key (the
// CIRCLE_CONTINUATION_KEY of a setup workflow's job) names the pipeline; the configuration is
// compiled with the pipeline's values and its trigger parameters plus the given ones, and its
// workflows are created as a trigger's are (state → pending) — or the pipeline is errored and the
// caller learns the compiler's reasons. A pipeline is continued once, within 6 hours.
import type { CompiledWorkflow, PipelineValues, WorkflowJob } from '../config/model.js';
import { TorusError } from '../ops/index.js';
import { type EngineCore, notifyPipelineChanged, orbResolverFor } from './core.js';
import { hashContinuationKey } from './continuation-keys.js';
import { FilterPatternError } from './filters.js';
import type { PipelineError } from './pipeline-state.js';
import {
  createWorkflows,
  loadPipeline,
  selectWorkflows,
  unqueueableJobs,
  validateParameters,
} from './trigger.js';

/** CircleCI refuses continuations more than 6 hours after the pipeline was created. */
export const CONTINUATION_WINDOW_MS = 6 * 60 * 60 * 1000;

/** Where compiler messages about the continuation config point (it has no file in the repository). */
export const CONTINUATION_FILENAME = 'continuation config';

export interface ContinueInput {
  continuationKey: string;
  /** the continuation config (YAML) */
  configuration: string;
  parameters?: Record<string, string | number | boolean>;
}

type Parameters = Record<string, string | number | boolean>;

const SETUP_STATES = new Set(['setup-pending', 'setup']);

function bad(message: string): TorusError {
  return new TorusError('TORUS_E_BAD_REQUEST', message);
}

/**
 * Continues a pipeline waiting in its setup phase. Returns its id. Refusals that leave the pipeline
 * as it was (bad request, unknown key, already continued) throw TorusError; a continuation config
 * that cannot run errors the pipeline and throws TORUS_E_CONFIG_INVALID with the reasons.
 */
export async function continuePipeline(
  core: EngineCore,
  input: ContinueInput,
): Promise<{ pipelineId: string }> {
  if (typeof input.continuationKey !== 'string' || input.continuationKey === '') {
    throw bad('continuation-key is required: pass the CIRCLE_CONTINUATION_KEY of a setup workflow job.');
  }
  if (typeof input.configuration !== 'string') {
    throw bad('configuration is required: pass the continuation config as a YAML string.');
  }
  const given: Parameters = input.parameters ?? {};
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw bad('parameters must be an object of pipeline parameter names to values.');
  }
  validateParameters(given);

  const found = await core.res.db.query<{ pipeline_id: string }>(
    'SELECT pipeline_id FROM continuation_keys WHERE key_hash = $1',
    [hashContinuationKey(input.continuationKey)],
  );
  const pipelineId = found.rows[0]?.pipeline_id;
  if (!pipelineId) {
    throw new TorusError(
      'TORUS_E_UNAUTHORIZED',
      'Invalid continuation key: pass the CIRCLE_CONTINUATION_KEY given to a job of the setup workflow.',
    );
  }
  const loaded = await loadPipeline(core, pipelineId);
  if (!loaded)
    throw new TorusError('TORUS_E_NOT_FOUND', 'The pipeline of this continuation key no longer exists.');
  const { pipeline } = loaded;
  assertContinuable(pipeline.state);
  const log = core.res.logger.child({ pipelineId, number: pipeline.number });

  if (core.res.clock.now().getTime() - pipeline.created_at.getTime() > CONTINUATION_WINDOW_MS) {
    const message = 'Key has expired: a pipeline can only be continued within 6 hours of its creation.';
    await markContinuationErrored(core, pipelineId, [{ type: 'timeout', message }], null);
    throw bad(message);
  }

  const overlap = Object.keys(given).filter((k) => Object.hasOwn(pipeline.parameters, k));
  if (overlap.length > 0) {
    throw bad(
      `Pipeline parameters given at trigger time cannot be given again at continuation: ${overlap.join(', ')}. ` +
        'The trigger-time values are passed to the continuation config already.',
    );
  }
  const parameters: Parameters = { ...pipeline.parameters, ...given };

  const stored = await core.res.db.query<{ pipeline_values: PipelineValues | null }>(
    'SELECT pipeline_values FROM pipelines WHERE id = $1',
    [pipelineId],
  );
  const values = stored.rows[0]?.pipeline_values;
  if (!values) throw new Error(`internal: setup pipeline ${pipelineId} has no stored pipeline values`);

  const fail = async (errors: PipelineError[]): Promise<never> => {
    await markContinuationErrored(core, pipelineId, errors, input.configuration);
    throw new TorusError('TORUS_E_CONFIG_INVALID', errors.map((e) => e.message).join('\n'));
  };

  const orbResolver = orbResolverFor(core, loaded.project.org_id);
  let compiled;
  try {
    compiled = await core.compile(input.configuration, {
      filename: CONTINUATION_FILENAME,
      pipelineValues: values,
      pipelineParameters: parameters,
      ...(orbResolver ? { orbResolver } : {}),
    });
  } catch (err) {
    log.error({ err }, 'the config compiler threw on a continuation config');
    return fail([
      {
        type: 'config',
        message: `${CONTINUATION_FILENAME}: internal compiler error: ${(err as Error).message}`,
      },
    ]);
  }
  if (!compiled.ok) {
    return fail(
      compiled.errors.map((e) => ({
        type: 'config' as const,
        message: e.hint ? `${e.message}\n${e.hint}` : e.message,
      })),
    );
  }
  const config = compiled.config;
  if (config.setup) {
    return fail([
      {
        type: 'config',
        message: `${CONTINUATION_FILENAME}: a pipeline cannot be continued with another setup configuration (remove \`setup: true\`).`,
      },
    ]);
  }
  let selections: { workflow: CompiledWorkflow; jobs: WorkflowJob[] }[];
  try {
    selections = selectWorkflows(config, pipeline);
  } catch (err) {
    if (!(err instanceof FilterPatternError)) throw err;
    return fail([{ type: 'config', message: `${CONTINUATION_FILENAME}: ${err.message}` }]);
  }
  const unqueueable = unqueueableJobs(config, selections);
  if (unqueueable.length > 0)
    return fail(unqueueable.map((message) => ({ type: 'config' as const, message })));

  try {
    await core.res.db.transaction(async (tx) => {
      const locked = await tx.query<{ state: string }>(
        'SELECT state FROM pipelines WHERE id = $1 FOR UPDATE',
        [pipelineId],
      );
      // a concurrent continuation won
      assertContinuable(locked.rows[0]?.state ?? 'errored');
      await tx.query(
        `UPDATE pipelines SET state = 'pending', config_source = $2, config_compiled = $3, parameters = $4,
           continued_at = $5, updated_at = $5
          WHERE id = $1`,
        [
          pipelineId,
          input.configuration,
          compiled.processedYaml,
          JSON.stringify(parameters),
          core.res.clock.now(),
        ],
      );
      // state is pending from here on: the continuation's jobs get no continuation key
      await createWorkflows(core, tx, pipeline, config, selections);
      await notifyPipelineChanged(tx, pipelineId);
    });
  } catch (err) {
    // a refusal with a user-facing reason (the scheduler's, say) errors the pipeline
    if (!(err instanceof TorusError) || err.code === 'TORUS_E_CONFLICT') throw err;
    return fail([{ type: 'config', message: err.message }]);
  }
  log.info({ workflows: selections.map((x) => x.workflow.name) }, 'pipeline continued');
  return { pipelineId };
}

function assertContinuable(state: string): void {
  if (SETUP_STATES.has(state)) return;
  if (state === 'pending') {
    throw new TorusError(
      'TORUS_E_CONFLICT',
      'This pipeline has already been continued: a continuation key can be used once.',
    );
  }
  if (state === 'errored') {
    throw new TorusError('TORUS_E_CONFLICT', 'This pipeline is errored and can no longer be continued.');
  }
  throw new TorusError('TORUS_E_CONFLICT', `This pipeline is ${state}, not waiting for a continuation.`);
}

/** Errors a pipeline still in its setup phase; `source` (the continuation config) becomes its config. */
async function markContinuationErrored(
  core: EngineCore,
  pipelineId: string,
  errors: PipelineError[],
  source: string | null,
): Promise<void> {
  await core.res.db.transaction(async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE pipelines SET state = 'errored', errors = $2, updated_at = $3,
         config_source = coalesce($4, config_source),
         config_compiled = CASE WHEN $4::text IS NULL THEN config_compiled ELSE NULL END
        WHERE id = $1 AND state IN ('setup-pending', 'setup')`,
      [pipelineId, JSON.stringify(errors), core.res.clock.now(), source],
    );
    if (rowCount > 0) await notifyPipelineChanged(tx, pipelineId);
  });
  core.res.logger.info({ pipelineId, errors }, 'pipeline errored at continuation');
}
