// POST /api/v2/pipeline/continue (CircleCI's continuePipeline): a setup workflow's job continues
// its pipeline with a generated config. The continuation key in the body is the credential — the
// continuation orb sends no API token — so this plugin must be mounted OUTSIDE the API-token hook
// (an API token, if sent, is not needed). Refusals are CircleCI's `{message}` with 4xx statuses.
import type { FastifyPluginAsync } from 'fastify';
import { sendApiError } from './http.js';
import { TorusError } from '../ops/index.js';
import type { PipelineEngine } from '../pipelines/index.js';

export interface ContinueRoutesDeps {
  engine: PipelineEngine;
}

export const CONTINUE_PATH = '/api/v2/pipeline/continue';

function bodyOf(raw: unknown): Record<string, unknown> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TorusError('TORUS_E_BAD_REQUEST', 'the request body must be a JSON object');
  }
  return raw as Record<string, unknown>;
}

function parametersOf(raw: unknown): Record<string, string | number | boolean> | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'parameters must be an object of pipeline parameter names to values',
    );
  }
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v === 'number' && !Number.isSafeInteger(v)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `pipeline parameter ${JSON.stringify(k)} is ${v}: numbers must be integers`,
      );
    }
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `pipeline parameter ${JSON.stringify(k)} must be an integer, a string or a boolean, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`,
      );
    }
    out[k] = v;
  }
  return out;
}

export function continueRoutes(deps: ContinueRoutesDeps): FastifyPluginAsync {
  return async (app) => {
    // the API's own mapping, so the plugin answers alike wherever it is mounted
    app.setErrorHandler(sendApiError);

    app.post(CONTINUE_PATH, async (req) => {
      const body = bodyOf(req.body);
      const key = body['continuation-key'];
      if (typeof key !== 'string' || key === '') {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          'continuation-key is required: pass the CIRCLE_CONTINUATION_KEY of a setup workflow job',
        );
      }
      const configuration = body.configuration;
      if (typeof configuration !== 'string') {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          'configuration is required: pass the continuation config as a YAML string',
        );
      }
      const parameters = parametersOf(body.parameters);
      await deps.engine.continuePipeline({
        continuationKey: key,
        configuration,
        ...(parameters ? { parameters } : {}),
      });
      return { message: 'Pipeline continued.' };
    });
  };
}
