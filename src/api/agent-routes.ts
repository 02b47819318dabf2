// The agent protocol's HTTP routes (see src/scheduler/protocol.ts), mounted at AGENT_API_PREFIX:
// bearer-token auth, body validation, and the mapping of scheduler errors to {message} responses.
import { Readable } from 'node:stream';
import {
  errorCodes,
  type FastifyError,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { isTorusError, TorusError } from '../ops/index.js';
import { LEASE_HEADER } from '../scheduler/protocol.js';
import { OUTPUT_FRAMES_CONTENT_TYPE } from '../scheduler/output-format.js';
import type {
  AuthenticatedAgent,
  ClaimRequest,
  CompleteRequest,
  HeartbeatRequest,
  OutputRequest,
  OutputFramesRequest,
  Scheduler,
  StepEndRequest,
  StepReportRequest,
  StepStartRequest,
} from '../scheduler/index.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const leaseId = { type: 'string', pattern: UUID } as const;
const taskParams = {
  type: 'object',
  required: ['taskId'],
  properties: { taskId: { type: 'string', pattern: UUID } },
} as const;
const stepParams = {
  type: 'object',
  required: ['taskId', 'index'],
  properties: {
    taskId: { type: 'string', pattern: UUID },
    index: { type: 'integer', minimum: 0, maximum: 100_000 },
  },
} as const;
const taskOutcome = {
  type: 'string',
  enum: ['success', 'failed', 'timedout', 'canceled', 'infrastructure_fail'],
} as const;

const claimBody = {
  type: 'object',
  required: ['agentId', 'resourceClasses', 'waitMs'],
  properties: {
    agentId: { type: 'string', minLength: 1, maxLength: 200 },
    name: { type: 'string', maxLength: 200 },
    hostname: { type: 'string', maxLength: 255 },
    version: { type: 'string', maxLength: 100 },
    resourceClasses: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      items: { type: 'string', minLength: 1, maxLength: 200 },
    },
    waitMs: { type: 'integer', minimum: 0 },
  },
} as const;
const heartbeatBody = { type: 'object', required: ['leaseId'], properties: { leaseId } } as const;
const stepStartBody = {
  type: 'object',
  required: ['leaseId', 'name', 'type', 'startedAt'],
  properties: {
    leaseId,
    name: { type: 'string' },
    type: { type: 'string' },
    background: { type: 'boolean' },
    startedAt: { type: 'string' },
  },
} as const;
const outputBody = {
  type: 'object',
  required: ['leaseId', 'chunks'],
  properties: {
    leaseId,
    chunks: {
      type: 'array',
      items: {
        type: 'object',
        required: ['seq', 'stream', 'time', 'data'],
        properties: {
          seq: { type: 'integer', minimum: 0, maximum: 2_147_483_647 },
          stream: { type: 'string', enum: ['out', 'err'] },
          time: { type: 'string' },
          data: { type: 'string' },
        },
      },
    },
  },
} as const;
const stepEndBody = {
  type: 'object',
  required: ['leaseId', 'status', 'exitCode', 'stoppedAt'],
  properties: {
    leaseId,
    status: { type: 'string', enum: ['success', 'failed', 'timedout', 'canceled'] },
    exitCode: { type: ['integer', 'null'] },
    stoppedAt: { type: 'string' },
  },
} as const;
const stepReportBody = {
  type: 'object',
  required: ['leaseId', 'name', 'type', 'startedAt', 'chunks', 'status', 'exitCode', 'stoppedAt'],
  properties: {
    ...stepStartBody.properties,
    chunks: outputBody.properties.chunks,
    status: stepEndBody.properties.status,
    exitCode: stepEndBody.properties.exitCode,
    stoppedAt: stepEndBody.properties.stoppedAt,
  },
} as const;
const completeBody = {
  type: 'object',
  required: ['leaseId', 'status'],
  properties: { leaseId, status: taskOutcome, message: { type: 'string', maxLength: 10_000 } },
} as const;

/** Output requests carry batches of log text: allow more than Fastify's 1 MiB default. */
const OUTPUT_BODY_LIMIT = 16 * 1024 * 1024;
/** frames bodies from this size on are read into a reused buffer */
const REUSED_BODY_MIN_BYTES = 64 * 1024;
/** reused buffers are at least this large, so one fits the next requests of a loud step too */
const REUSED_BODY_BUFFER_BYTES = 9 * 1024 * 1024;
/** free reused buffers kept (one per agent streaming at the same time) */
const REUSED_BODY_BUFFERS_KEPT = 4;

/**
 * Buffers that frames bodies are read into, reused. A loud step sends megabytes every few
 * milliseconds, and every buffer allocated counts towards V8's external memory, which V8 answers
 * with garbage collections (a young one per 32 MB or so, a full one per 64 MB): a new buffer per
 * request (Buffer.concat of the chunks) doubled them.
 */
class BodyBuffers {
  private readonly free: Buffer[] = [];

  take(bytes: number): Buffer {
    const at = this.free.findIndex((b) => b.length >= bytes);
    if (at >= 0) return this.free.splice(at, 1)[0]!;
    return Buffer.allocUnsafeSlow(Math.max(bytes, REUSED_BODY_BUFFER_BYTES));
  }

  give(buf: Buffer): void {
    if (this.free.length < REUSED_BODY_BUFFERS_KEPT) {
      this.free.push(buf);
      return;
    }
    // full: keep the larger ones
    const smallest = this.free.reduce((min, b, i) => (b.length < this.free[min]!.length ? i : min), 0);
    if (this.free[smallest]!.length < buf.length) this.free[smallest] = buf;
  }

  /**
   * A frames body read whole: into a reused buffer when its length is given (`release` hands the
   * buffer back: call it once nothing refers to `records` any more), else collected up to the limit.
   */
  async read(request: FastifyRequest): Promise<{ records: Buffer; release: () => void }> {
    const raw = request.body as Readable;
    const header = request.headers['content-length'];
    const length = header === undefined ? undefined : Number(header);
    if (length !== undefined && length > OUTPUT_BODY_LIMIT) throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE();
    if (length === undefined || length < REUSED_BODY_MIN_BYTES) {
      const parts: Buffer[] = [];
      let size = 0;
      for await (const chunk of raw) {
        size += (chunk as Buffer).length;
        if (size > OUTPUT_BODY_LIMIT) throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE();
        parts.push(chunk as Buffer);
      }
      return { records: Buffer.concat(parts, size), release: () => undefined };
    }
    const buf = this.take(length);
    let size = 0;
    try {
      // Node's HTTP parser ends the body at its content-length
      for await (const chunk of raw) {
        (chunk as Buffer).copy(buf, size);
        size += (chunk as Buffer).length;
      }
    } catch (err) {
      this.give(buf);
      throw err;
    }
    return { records: buf.subarray(0, size), release: () => this.give(buf) };
  }
}

/** the lease of a frames output request, from its header (src/scheduler/output-format.ts) */
function framesLease(request: FastifyRequest): string {
  const lease = request.headers[LEASE_HEADER];
  if (typeof lease !== 'string' || !new RegExp(UUID).test(lease))
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `an output-frames request names its lease in the ${LEASE_HEADER} header`,
    );
  return lease;
}

type TaskParams = { taskId: string };
type StepParams = { taskId: string; index: number };

/**
 * Agent auth for a plugin scope under AGENT_API_PREFIX: `{message}` errors and the bearer-token
 * check on every request. Returns the authenticated agent of a request. Shared by the agent blob
 * routes (agent-blobs.ts).
 */
export function useAgentAuth(
  app: FastifyInstance,
  scheduler: Pick<Scheduler, 'authenticateAgent'>,
): (request: FastifyRequest) => AuthenticatedAgent {
  const agents = new WeakMap<FastifyRequest, AuthenticatedAgent>();
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isTorusError(err)) return reply.code(err.status).send({ message: err.message });
    if (err.validation) return reply.code(400).send({ message: `invalid request: ${err.message}` });
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ message: err.message });
    }
    request.log.error({ err }, 'agent request failed');
    return reply.code(500).send({ message: 'internal server error; see the server log' });
  });

  app.addHook('onRequest', async (request, reply) => {
    const header = request.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m?.[1]) {
      return reply
        .code(401)
        .send({ message: 'missing agent token: send "Authorization: Bearer <agent token>"' });
    }
    const agent = await scheduler.authenticateAgent(m[1]);
    if (!agent) return reply.code(401).send({ message: 'invalid or revoked agent token' });
    agents.set(request, agent);
  });

  return (request) => {
    const a = agents.get(request);
    if (!a) throw new Error('agent route reached without authentication');
    return a;
  };
}

export function agentRoutes(scheduler: Scheduler): FastifyPluginAsync {
  return async (app) => {
    const agentOf = useAgentAuth(app, scheduler);
    const bodyBuffers = new BodyBuffers();
    // Long-polling claims end (204) when the server closes, so closing does not wait up to 30 s.
    const waitingClaims = new Set<AbortController>();
    app.addHook('preClose', async () => {
      for (const ac of waitingClaims) ac.abort();
    });

    app.post<{ Body: ClaimRequest }>(
      '/claim',
      { schema: { body: claimBody } },
      async (request, reply: FastifyReply) => {
        // The client going away (agent stopped, connection dropped) ends the wait, so the claim cannot
        // win a task no one will receive.
        const ac = new AbortController();
        const onClose = () => {
          if (!reply.raw.writableEnded) ac.abort();
        };
        reply.raw.once('close', onClose);
        waitingClaims.add(ac);
        try {
          const claimed = await scheduler.claim(agentOf(request), request.body, ac.signal);
          if (!claimed) return reply.code(204).send();
          return reply.code(200).send(claimed);
        } finally {
          waitingClaims.delete(ac);
          reply.raw.off('close', onClose);
        }
      },
    );

    app.post<{ Params: TaskParams; Body: HeartbeatRequest }>(
      '/tasks/:taskId/heartbeat',
      { schema: { params: taskParams, body: heartbeatBody } },
      async (request) => scheduler.heartbeat(request.params.taskId, request.body.leaseId),
    );

    app.post<{ Params: StepParams; Body: StepStartRequest }>(
      '/tasks/:taskId/steps/:index/start',
      { schema: { params: stepParams, body: stepStartBody } },
      async (request, reply) => {
        await scheduler.stepStart(request.params.taskId, request.params.index, request.body);
        return reply.code(204).send();
      },
    );

    // frames reach the handler as the request stream, read into a reused buffer there: the
    // scheduler checks each record and stores the body as sent
    app.addContentTypeParser(OUTPUT_FRAMES_CONTENT_TYPE, (_req, payload, done) => done(null, payload));
    app.post<{ Params: StepParams; Body: OutputRequest | Readable }>(
      '/tasks/:taskId/steps/:index/output',
      {
        schema: {
          params: stepParams,
          body: {
            content: {
              'application/json': { schema: outputBody },
              [OUTPUT_FRAMES_CONTENT_TYPE]: { schema: {} },
            },
          },
        },
        bodyLimit: OUTPUT_BODY_LIMIT,
      },
      async (request, reply) => {
        const { taskId, index } = request.params;
        if (!(request.body instanceof Readable)) {
          await scheduler.stepOutput(taskId, index, request.body);
          return reply.code(204).send();
        }
        const leaseId = framesLease(request);
        const { records, release } = await bodyBuffers.read(request);
        try {
          await scheduler.stepOutput(taskId, index, { leaseId, records } satisfies OutputFramesRequest);
        } finally {
          release();
        }
        return reply.code(204).send();
      },
    );

    app.post<{ Params: StepParams; Body: StepEndRequest }>(
      '/tasks/:taskId/steps/:index/end',
      { schema: { params: stepParams, body: stepEndBody } },
      async (request, reply) => {
        await scheduler.stepEnd(request.params.taskId, request.params.index, request.body);
        return reply.code(204).send();
      },
    );

    app.post<{ Params: StepParams; Body: StepReportRequest }>(
      '/tasks/:taskId/steps/:index/report',
      { schema: { params: stepParams, body: stepReportBody }, bodyLimit: OUTPUT_BODY_LIMIT },
      async (request, reply) => {
        await scheduler.stepReport(request.params.taskId, request.params.index, request.body);
        return reply.code(204).send();
      },
    );

    app.post<{ Params: TaskParams; Body: CompleteRequest }>(
      '/tasks/:taskId/complete',
      { schema: { params: taskParams, body: completeBody } },
      async (request, reply) => {
        await scheduler.complete(request.params.taskId, request.body);
        return reply.code(204).send();
      },
    );
  };
}
