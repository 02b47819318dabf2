// The agent protocol's blob routes (see .team/ISSUE4.md and src/blobs/): artifacts, test results
// and timings, caches and workspace layers, mounted at AGENT_API_PREFIX next to agentRoutes. Agent
// token auth as agent-routes.ts; every request names its lease in `X-Torus-Lease` (409 when it is
// not the task's live lease). Bodies of PUTs stream straight into the object store.
//
//   PUT  /tasks/:taskId/artifacts?path=P          raw bytes → 201 {path, size}   ('..' in P → 400)
//   PUT  /tasks/:taskId/test-results              {tests: TestCase[]} → 201 {count}
//   GET  /tasks/:taskId/test-timings              → 200 {source, tests}
//   POST /tasks/:taskId/caches/lookup             {keys, file?} → 200 {key, size, encoding, file?} | 404
//   GET  /tasks/:taskId/caches/blob?key=K         → 200 bytes (X-Torus-Encoding) | 404
//   POST /tasks/:taskId/caches/stage              → 200 {file} | 404 (objects are not files here)
//   PUT  /tasks/:taskId/caches/blob?key=K         bytes, or no body and X-Torus-File: <staged file>
//                                                 (X-Torus-Encoding) → 201 {key, size} | 409 exists
//
// `file` (lookup) and `stage` serve the server's own agents on its machine with a filesystem store:
// they read and write cache archives as files, with no copy through the server (bench/cache.ts).
//   PUT  /tasks/:taskId/workspace                 bytes (X-Torus-Encoding) → 201 {layerId, size}
//   GET  /tasks/:taskId/workspace/layers          → 200 {layers: [{id, jobName, size, encoding}]}
//   GET  /tasks/:taskId/workspace/layers/:id      → 200 bytes (X-Torus-Encoding) | 404
import type { IncomingMessage } from 'node:http';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { TorusError } from '../ops/index.js';
import type { Scheduler } from '../scheduler/index.js';
import {
  BLOB_ENCODINGS,
  MAX_CACHE_KEY,
  type BlobEncoding,
  type Blobs,
  type LeasedTask,
  type StoredBlob,
  type TestCase,
} from '../blobs/index.js';
import { useAgentAuth } from './agent-routes.js';

/** the header naming the compression of a cache archive or workspace layer */
export const ENCODING_HEADER = 'x-torus-encoding';
export const LEASE_HEADER = 'x-torus-lease';
/** the header naming a staged file (POST caches/stage) a cache PUT stores instead of a body */
export const FILE_HEADER = 'x-torus-file';

/** JSON bodies (test results of a big suite) are read whole: this is their cap */
const JSON_BODY_LIMIT = 64 * 1024 * 1024;
const MAX_LOOKUP_KEYS = 50;

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const taskParams = {
  type: 'object',
  required: ['taskId'],
  properties: { taskId: { type: 'string', pattern: UUID } },
} as const;
const layerParams = {
  type: 'object',
  required: ['taskId', 'id'],
  properties: { taskId: { type: 'string', pattern: UUID }, id: { type: 'string', pattern: UUID } },
} as const;
const keyQuery = {
  type: 'object',
  required: ['key'],
  properties: { key: { type: 'string', minLength: 1, maxLength: MAX_CACHE_KEY } },
} as const;
const testResultsBody = {
  type: 'object',
  required: ['tests'],
  properties: {
    tests: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'classname', 'result', 'runTime'],
        properties: {
          name: { type: 'string' },
          classname: { type: 'string' },
          file: { type: 'string' },
          result: { type: 'string', enum: ['success', 'failure', 'error', 'skipped'] },
          message: { type: 'string' },
          runTime: { type: 'number', minimum: 0 },
          source: { type: 'string', maxLength: 200 },
        },
      },
    },
  },
} as const;
const lookupBody = {
  type: 'object',
  required: ['keys'],
  properties: {
    keys: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_LOOKUP_KEYS,
      items: { type: 'string', maxLength: MAX_CACHE_KEY },
    },
    file: { type: 'boolean' },
  },
} as const;

type TaskParams = { taskId: string };

function httpError(statusCode: number, message: string): Error {
  return Object.assign(new Error(message), { statusCode });
}

/** Reads a JSON body from the raw request, refusing more than `limit` bytes (413). */
async function readJson(raw: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of raw) {
    const b = c as Buffer;
    size += b.length;
    if (size > limit) throw httpError(413, `the request body is larger than ${limit} bytes`);
    chunks.push(b);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the request body is not valid JSON: ${(err as Error).message}`,
    );
  }
}

function encodingHeader(req: FastifyRequest): BlobEncoding {
  const v = req.headers[ENCODING_HEADER];
  if (v === undefined || v === '') return 'gzip';
  if (typeof v !== 'string' || !(BLOB_ENCODINGS as readonly string[]).includes(v)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${ENCODING_HEADER} must be one of ${BLOB_ENCODINGS.join(', ')}, got ${JSON.stringify(v)}`,
    );
  }
  return v as BlobEncoding;
}

function sendBlob(reply: FastifyReply, blob: StoredBlob) {
  return reply
    .header('content-length', blob.size)
    .header(ENCODING_HEADER, blob.encoding)
    .type('application/octet-stream')
    .send(blob.stream);
}

export interface AgentBlobDeps {
  scheduler: Pick<Scheduler, 'authenticateAgent'>;
  blobs: Blobs;
}

export function agentBlobRoutes(deps: AgentBlobDeps): FastifyPluginAsync {
  const { blobs } = deps;
  return async (app) => {
    useAgentAuth(app, deps.scheduler);
    // Bodies are not parsed: stream routes read request.raw; JSON routes parse it in preValidation
    // (so the route's schema still checks it).
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
    const jsonBody = async (req: FastifyRequest) => {
      req.body = await readJson(req.raw, JSON_BODY_LIMIT);
    };

    const leased = async (req: FastifyRequest<{ Params: TaskParams }>): Promise<LeasedTask> => {
      const lease = req.headers[LEASE_HEADER];
      if (typeof lease !== 'string' || lease === '') {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `missing lease: send the header "X-Torus-Lease: <leaseId>"`,
        );
      }
      return blobs.task(req.params.taskId, lease);
    };

    app.put<{ Params: TaskParams; Querystring: { path: string } }>(
      '/tasks/:taskId/artifacts',
      {
        schema: {
          params: taskParams,
          querystring: {
            type: 'object',
            required: ['path'],
            properties: { path: { type: 'string', minLength: 1, maxLength: 4096 } },
          },
        },
      },
      async (req, reply) => {
        const task = await leased(req);
        return reply.code(201).send(await blobs.putArtifact(task, req.query.path, req.raw));
      },
    );

    app.put<{ Params: TaskParams; Body: { tests: TestCase[] } }>(
      '/tasks/:taskId/test-results',
      { schema: { params: taskParams, body: testResultsBody }, preValidation: jsonBody },
      async (req, reply) => {
        const task = await leased(req);
        return reply.code(201).send(await blobs.putTestResults(task, req.body.tests));
      },
    );

    app.get<{ Params: TaskParams }>(
      '/tasks/:taskId/test-timings',
      { schema: { params: taskParams } },
      async (req) => blobs.testTimings(await leased(req)),
    );

    app.post<{ Params: TaskParams; Body: { keys: string[]; file?: boolean } }>(
      '/tasks/:taskId/caches/lookup',
      { schema: { params: taskParams, body: lookupBody }, preValidation: jsonBody },
      async (req, reply) => {
        const found = await blobs.lookupCache(await leased(req), req.body.keys, {
          file: req.body.file === true,
        });
        if (!found) return reply.code(404).send({ message: 'no cache matches any of the keys' });
        return found;
      },
    );

    app.get<{ Params: TaskParams; Querystring: { key: string } }>(
      '/tasks/:taskId/caches/blob',
      { schema: { params: taskParams, querystring: keyQuery } },
      async (req, reply) => {
        const blob = await blobs.getCache(await leased(req), req.query.key);
        if (!blob)
          return reply.code(404).send({ message: `no cache with key ${JSON.stringify(req.query.key)}` });
        return sendBlob(reply, blob);
      },
    );

    app.post<{ Params: TaskParams }>(
      '/tasks/:taskId/caches/stage',
      { schema: { params: taskParams } },
      async (req, reply) => {
        const file = await blobs.stageCache(await leased(req));
        if (!file)
          return reply.code(404).send({ message: "this server's objects are not files on its machine" });
        return { file };
      },
    );

    app.put<{ Params: TaskParams; Querystring: { key: string } }>(
      '/tasks/:taskId/caches/blob',
      { schema: { params: taskParams, querystring: keyQuery } },
      async (req, reply) => {
        const task = await leased(req);
        const encoding = encodingHeader(req);
        const staged = req.headers[FILE_HEADER];
        const outcome = await blobs.putCache(
          task,
          req.query.key,
          encoding,
          typeof staged === 'string' && staged !== '' ? { file: staged } : req.raw,
        );
        if (outcome === 'exists') {
          return reply.code(409).send({ message: 'cache key exists; caches are immutable' });
        }
        return reply.code(201).send({ key: req.query.key });
      },
    );

    app.put<{ Params: TaskParams }>(
      '/tasks/:taskId/workspace',
      { schema: { params: taskParams } },
      async (req, reply) => {
        const task = await leased(req);
        const encoding = encodingHeader(req);
        return reply.code(201).send(await blobs.putWorkspaceLayer(task, encoding, req.raw));
      },
    );

    app.get<{ Params: TaskParams }>(
      '/tasks/:taskId/workspace/layers',
      { schema: { params: taskParams } },
      async (req) => ({ layers: await blobs.workspaceLayers(await leased(req)) }),
    );

    app.get<{ Params: TaskParams & { id: string } }>(
      '/tasks/:taskId/workspace/layers/:id',
      { schema: { params: layerParams } },
      async (req, reply) => {
        const blob = await blobs.getWorkspaceLayer(await leased(req), req.params.id.toLowerCase());
        if (!blob)
          return reply.code(404).send({ message: `no workspace layer ${req.params.id} in this workflow` });
        return sendBlob(reply, blob);
      },
    );
  };
}
