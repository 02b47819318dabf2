// The HTTP API: CircleCI's REST API v2 (the implemented subset, in CircleCI's shapes), the v1.1
// job endpoint and step output, live output as Server-Sent Events, Torus' admin extensions,
// /api/v2/openapi.json, health probes, and the agent protocol routes (agent-routes.ts).
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Accounts } from '../accounts/index.js';
import type { PipelineEngine } from '../pipelines/index.js';
import { AGENT_API_PREFIX, type Scheduler } from '../scheduler/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import { agentRoutes } from './agent-routes.js';
import { sendApiError, tokenAuthHook } from './http.js';
import { servedSpec } from './openapi.js';
import { registerOutputRoutes, registerOutputUrlRoute } from './routes-output.js';
import { PipelineChanges, registerTorusRoutes } from './routes-torus.js';
import { registerV2Routes, type RouteDeps } from './routes-v2.js';
import { continueRoutes } from './routes-continue.js';
import { secretsRoutes } from './routes-secrets.js';
import { agentBlobRoutes } from './agent-blobs.js';
import { registerArtifactRoutes } from './routes-artifacts.js';
import { scheduleRoutes } from './routes-schedules.js';
import { createBlobs } from '../blobs/index.js';
import { createSecretStore, openKeyring, type SecretStore } from '../secrets/index.js';
import { createOrbRegistry } from '../orbs/index.js';
import { compileRoutes, type CompileRoutesDeps } from './compile-routes.js';
import { createOutputSigner } from './signing.js';
import { sessionAnswer, sessionRoutes } from './routes-session.js';
import { webRoutes } from './web-routes.js';

export { validateParameters } from './routes-v2.js';
export { IMPLEMENTED_OPERATIONS, servedSpec } from './openapi.js';

export interface ApiDeps {
  engine: PipelineEngine;
  scheduler: Scheduler;
  accounts: Accounts;
  /** project and context variables (default: a store under the settings' keyring) */
  secrets?: SecretStore;
  /** the orbs a compile request's caller sees (the orb registry); none: orbs are a config error */
  orbResolverFor?: CompileRoutesDeps['orbResolverFor'];
}

/** request bodies (pipeline parameters, step output from agents) stay well under this */
const BODY_LIMIT_BYTES = 8 * 1024 * 1024;

/**
 * CircleCI accepts project slugs with their slashes URL-encoded (`circleci%2Forg%2Frepo`): decode
 * them before routing, so one route (`/project/:vcs/:org/:repo/…`) serves both spellings.
 */
export function decodeSlugSlashes(url: string): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (!/%2f/i.test(path) || !/^\/api\/(v2|v1\.1)\//.test(path)) return url;
  return path.replace(/%2f/gi, '/') + (q < 0 ? '' : url.slice(q));
}

/** Parses JSON bodies; an empty body is no body, malformed JSON a 400 that says what is wrong. */
function parseJsonBody(
  _req: FastifyRequest,
  body: string,
  done: (err: Error | null, value?: unknown) => void,
): void {
  if (body.trim() === '') {
    done(null, undefined);
    return;
  }
  try {
    done(null, JSON.parse(body));
  } catch (err) {
    done(
      new TorusError('TORUS_E_BAD_REQUEST', `The request body is not valid JSON: ${(err as Error).message}`),
    );
  }
}

export async function buildApp(res: Resources, deps: ApiDeps): Promise<FastifyInstance> {
  // pino's Logger is a FastifyBaseLogger; only the generic parameter differs.
  const app = Fastify({
    loggerInstance: res.logger,
    // one debug line per request (onResponse below) instead of two info lines: agents poll a lot
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    rewriteUrl: (req) => decodeSlugSlashes(req.url ?? '/'),
    // SSE streams and long-polling claims are closed by the server at shutdown, not awaited forever
    forceCloseConnections: true,
  }) as unknown as FastifyInstance;
  const routeDeps: RouteDeps = { res, ...deps };
  const changes = new PipelineChanges(routeDeps);
  app.addHook('onClose', async () => changes.close());

  app.removeContentTypeParser(['application/json']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseJsonBody);
  // curl -d sends form encoding; CircleCI's API reads the body as JSON whatever the header says.
  app.addContentTypeParser('*', { parseAs: 'string' }, parseJsonBody);

  app.setErrorHandler(sendApiError);
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ message: `Not found: ${req.method} ${req.url.split('?')[0]}` }),
  );

  app.addHook('onResponse', async (req, reply) => {
    req.log.debug(
      { method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ms: reply.elapsedTime },
      'request',
    );
  });

  // ---- public ----
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await res.db.query('SELECT 1');
      return { status: 'ok' };
    } catch (err) {
      return reply.status(503).send({ message: `database not ready: ${(err as Error).message}` });
    }
  });
  app.get('/api/v2/openapi.json', async () => servedSpec());

  // ---- the agent protocol (its own bearer-token auth) ----
  await app.register(agentRoutes(deps.scheduler), { prefix: AGENT_API_PREFIX });
  // artifacts, test results, caches and workspace layers, streamed to the object store
  const blobs = createBlobs(res);
  await app.register(agentBlobRoutes({ scheduler: deps.scheduler, blobs }), { prefix: AGENT_API_PREFIX });

  // ---- the user API: a personal API token on every request ----
  const authenticate = tokenAuthHook(deps.accounts);
  const signer = createOutputSigner(res.db, res.clock);
  // output_url: a token, or the signature the job details handed out
  registerOutputUrlRoute(app, routeDeps, signer, authenticate);
  // setup workflows: the continuation key is the credential (routes-continue.ts, by pipelines/)
  await app.register(continueRoutes({ engine: deps.engine }));
  const secrets = deps.secrets ?? createSecretStore(res, openKeyring(res.settings));
  await app.register(secretsRoutes({ res, accounts: deps.accounts, secrets }));
  await app.register(scheduleRoutes({ res, accounts: deps.accounts }));
  // config compilation for the circleci CLI: CircleCI compiles without a token too (compile-routes.ts)
  await app.register(
    compileRoutes({
      authenticate: (token) => deps.accounts.authenticate(token),
      ...(deps.orbResolverFor ? { orbResolverFor: deps.orbResolverFor } : {}),
      // the circleci CLI's orb and namespace commands (graphql/orbs-resolvers.ts)
      orbs: {
        registryFor: (validateSource) => createOrbRegistry(res, { validateSource }),
        accounts: deps.accounts,
      },
    }),
  );
  // the web app: its sign-in (a token for an HttpOnly cookie) and its files at `/`
  await app.register(sessionRoutes({ res, accounts: deps.accounts }));
  await app.register(webRoutes({ session: (req) => sessionAnswer(deps.accounts, req) }));
  await app.register(async (api) => {
    api.addHook('onRequest', authenticate);
    registerV2Routes(api, routeDeps);
    registerOutputRoutes(api, routeDeps, signer);
    registerTorusRoutes(api, routeDeps, changes);
    registerArtifactRoutes(api, { res, blobs });
  });

  return app;
}
