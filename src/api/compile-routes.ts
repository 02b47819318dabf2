// The config-compile endpoints of the official `circleci` CLI: `POST /api/v2/compile-config-with-defaults`
// (REST, `config validate|process` on a server that answers its probe) and `POST /graphql-unstable`
// (the GraphQL API: `buildConfig`, `orbConfig`, and the orb registry's queries and mutations,
// graphql/orbs-schema.ts). Mounted at the root, outside the token-required
// scope: CircleCI compiles without a token too, and the CLI probes the REST route with no body.
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Accounts } from '../accounts/index.js';
import type { OrbResolver, PipelineValues } from '../config/index.js';
import type { OrbRegistry, OrbRegistryOptions } from '../orbs/index.js';
import { requestToken } from './http.js';
import {
  checkPipelineParameters,
  isScalar,
  orbSourceValidator,
  runGraphQL,
  torusSchema,
  validateConfig,
  type GraphQLContext,
} from './graphql/index.js';

export interface CompileRoutesDeps {
  /** the user a personal API token belongs to, or null for an unknown/revoked token */
  authenticate(token: string): Promise<{ id: string } | null>;
  /** one resolver for every caller (tests); orbResolverFor wins when both are given */
  orbResolver?: OrbResolver;
  /**
   * The orbs a caller sees: a signed-in user the private orbs of their organizations, anonymous
   * callers public orbs only (the orb registry's `forViewer`).
   */
  orbResolverFor?(viewer: { id: string } | null): Promise<OrbResolver>;
  /** the orb registry behind the GraphQL orb fields; without it they answer an error */
  orbs?: {
    /** a registry whose publishes check sources with `validateSource` (made per request) */
    registryFor(validateSource: NonNullable<OrbRegistryOptions['validateSource']>): OrbRegistry;
    accounts: Pick<Accounts, 'getOrg' | 'getUser' | 'memberRole'>;
  };
}

export const COMPILE_CONFIG_PATH = '/api/v2/compile-config-with-defaults';
export const GRAPHQL_PATH = '/graphql-unstable';

class BadRequest extends Error {}

/** An empty body is no body; anything else must be JSON. */
function parseBody(raw: unknown): unknown {
  if (raw === undefined || raw === null) return undefined;
  const text = typeof raw === 'string' ? raw : String(raw);
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new BadRequest(`The request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** No token is anonymous (compile needs none); a token that is not known is refused. */
async function signedInUser(
  req: FastifyRequest,
  deps: CompileRoutesDeps,
): Promise<{ id: string } | null | 'invalid'> {
  const token = requestToken(req);
  if (!token) return null;
  return (await deps.authenticate(token)) ?? 'invalid';
}

async function orbResolverOf(
  deps: CompileRoutesDeps,
  viewer: { id: string } | null,
): Promise<OrbResolver | undefined> {
  return deps.orbResolverFor ? deps.orbResolverFor(viewer) : deps.orbResolver;
}

function pipelineValuesFromMap(value: unknown): PipelineValues {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new BadRequest('options.pipeline_values must be a map of "pipeline.*" names to values');
  const values: PipelineValues = {};
  for (const [k, v] of Object.entries(value)) {
    if (!isScalar(v))
      throw new BadRequest(`options.pipeline_values: "${k}" must be a string, a number, a boolean or null`);
    values[k] = v;
  }
  return values;
}

export function compileRoutes(deps: CompileRoutesDeps): FastifyPluginAsync {
  return async (app) => {
    // Bodies are read as text whatever their content type and decoded here, so this plugin decides
    // what an empty body (the CLI's probe) and malformed JSON answer, whatever the parent does.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

    app.setErrorHandler((err: FastifyError, req, reply) => {
      if (err instanceof BadRequest) return reply.status(400).send({ message: err.message });
      if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        return reply.status(err.statusCode).send({ message: err.message });
      }
      req.log.error({ err, url: req.url }, 'compile request failed');
      return reply
        .status(500)
        .send({ message: `Internal server error (request ${req.id}); the server log has the details.` });
    });

    app.post(COMPILE_CONFIG_PATH, async (req: FastifyRequest, reply: FastifyReply) => {
      const body = parseBody(req.body);
      // The CLI probes with no body: 404 would make it use GraphQL, < 400 makes it fail; 400 = "use REST".
      if (body === undefined) {
        return reply
          .status(400)
          .send({ message: 'The request body must be {"config_yaml": "...", "options": {...}}.' });
      }
      const user = await signedInUser(req, deps);
      if (user === 'invalid') return reply.status(401).send({ message: 'Invalid token provided.' });
      if (typeof body !== 'object' || body === null || Array.isArray(body))
        throw new BadRequest('The request body must be a JSON object.');
      const { config_yaml: configYaml, options = {} } = body as Record<string, unknown>;
      if (typeof configYaml !== 'string')
        throw new BadRequest('config_yaml is required and must be the config text.');
      if (typeof options !== 'object' || options === null || Array.isArray(options))
        throw new BadRequest('options must be a JSON object.');
      const opts = options as Record<string, unknown>;
      const params = checkPipelineParameters(opts.pipeline_parameters, 'options.pipeline_parameters');
      if (params.error) throw new BadRequest(params.error);
      const result = await validateConfig(configYaml, {
        pipelineValues: pipelineValuesFromMap(opts.pipeline_values),
        pipelineParameters: params.parameters,
        orbResolver: await orbResolverOf(deps, user),
      });
      return reply.status(200).send({
        valid: result.valid,
        'source-yaml': result.sourceYaml,
        'output-yaml': result.outputYaml,
        errors: result.errors,
      });
    });

    app.post(GRAPHQL_PATH, async (req: FastifyRequest, reply: FastifyReply) => {
      const body = parseBody(req.body);
      const user = await signedInUser(req, deps);
      if (user === 'invalid') {
        // 200 with errors: the CLI reports any other status as "failure calling GraphQL API"
        return reply.status(200).send({
          data: null,
          errors: [{ message: 'Invalid token provided.', extensions: { code: 'UNAUTHENTICATED' } }],
        });
      }
      const orbResolver = await orbResolverOf(deps, user);
      const context: GraphQLContext = { viewer: user, orbResolver };
      if (deps.orbs) {
        // a published orb is validated as `orbConfig` validates it, its imports as its publisher sees them
        context.orbs = {
          registry: deps.orbs.registryFor(orbSourceValidator(orbResolver)),
          accounts: deps.orbs.accounts,
        };
      }
      return reply.status(200).send(await runGraphQL(torusSchema(), body, context));
    });
  };
}
