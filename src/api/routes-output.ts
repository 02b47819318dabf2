// Job output: CircleCI's v1.1 build details (steps[].actions[] with an output_url each), the
// output_url itself (CircleCI's JSON array of {type, time, message}), and Torus' live variant that
// streams a step's output as Server-Sent Events while it is printed, then an `end` event.
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OutputChunk, StepOutputPage } from '../scheduler/index.js';
import { TorusError } from '../ops/index.js';
import type { User } from '../accounts/index.js';
import { baseUrl, currentUser, positiveInt, queryString } from './http.js';
import * as reads from './reads.js';
import type { RouteDeps } from './routes-v2.js';
import type { OutputSigner } from './signing.js';

/** whom a valid output_url signature stands for: it grants reading that one step's output */
const SIGNED_URL_READER: User = {
  id: reads.NIL_UUID,
  login: 'signed-url',
  name: 'signed output URL',
  role: 'admin',
  suspended: false,
  createdAt: new Date(0),
  email: null,
  githubId: null,
};

type SlugParams = { vcs: string; org: string; repo: string; number: string };

/** how often an idle event stream gets a comment line, so proxies keep it open */
const SSE_KEEPALIVE_MS = 15_000;
/** a re-read now and then, in case a notification was lost (a database reconnect, say) */
const SSE_SAFETY_POLL_MS = 5_000;

function nonNegativeInt(raw: string | undefined, name: string, dflt: number): number {
  if (raw === undefined) return dflt;
  if (!/^\d{1,6}$/.test(raw))
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${name} must be a non-negative integer, got ${JSON.stringify(raw)}`,
    );
  return Number(raw);
}

/**
 * Every page of a step's output, the first read before anything is answered (so a missing task or
 * step is still an error response), the rest as the answer streams.
 */
async function outputPages(
  scheduler: RouteDeps['scheduler'],
  taskId: string,
  step: number,
): Promise<AsyncIterable<StepOutputPage>> {
  const first = await scheduler.readStepOutput(taskId, step);
  return (async function* () {
    let page = first;
    for (;;) {
      yield page;
      const last = page.chunks[page.chunks.length - 1];
      if (!page.more || !last) return;
      page = await scheduler.readStepOutput(taskId, step, last.seq);
    }
  })();
}

function circleMessage(c: OutputChunk) {
  return { type: c.stream, time: c.time, message: c.data };
}

/** Starts an event stream on the raw response; Fastify no longer answers this request. */
export function openEventStream(
  req: FastifyRequest,
  reply: FastifyReply,
): { send(event: string, data: unknown): void; comment(text: string): void } {
  reply.hijack();
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    // nginx and friends would otherwise buffer the stream
    'x-accel-buffering': 'no',
  });
  // a first line at once tells the client the stream is open before any event has happened
  reply.raw.write(': stream open\n\n');
  return {
    send(event, data) {
      if (!reply.raw.writableEnded) reply.raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    comment(text) {
      if (!reply.raw.writableEnded) reply.raw.write(`: ${text}\n\n`);
    },
  };
}

export function registerOutputRoutes(app: FastifyInstance, deps: RouteDeps, signer: OutputSigner): void {
  const { res, scheduler } = deps;
  const db = res.db;

  const jobOf = async (req: FastifyRequest<{ Params: SlugParams }>, user: User = currentUser(req)) => {
    const { vcs, org, repo, number } = req.params;
    const project = await reads.findProject(db, user, `${vcs}/${org}/${repo}`);
    return reads.findJobByNumber(db, user, project, positiveInt(number, 'Job'));
  };

  const taskOf = async (jobId: string, index: number) => {
    const taskId = await reads.taskOf(db, jobId, index);
    if (!taskId) throw new TorusError('TORUS_E_NOT_FOUND', `the job has no parallel run ${index} (yet)`);
    return taskId;
  };

  app.get<{ Params: SlugParams }>('/api/v1.1/project/:vcs/:org/:repo/:number', async (req) => {
    const j = await jobOf(req);
    const base = baseUrl(req, res.settings.url);
    const steps = await reads.jobSteps(db, j.id);
    const urls = new Map<string, string>();
    for (const st of steps) {
      const query = await signer.sign(j.project_slug, j.number!, st.step_index, st.node_index);
      urls.set(
        `${st.step_index}/${st.node_index}`,
        `${base}/api/v1.1/project/${j.project_slug}/${j.number}/output/${st.step_index}/${st.node_index}?${query}`,
      );
    }
    return reads.v11JobJson(j, steps, base, (step, index) => urls.get(`${step}/${index}`)!);
  });

  // Torus extension: ?step=&index=&follow=true streams (SSE); without follow, the JSON array.
  app.get<{ Params: SlugParams }>(
    '/api/v2/project/:vcs/:org/:repo/job/:number/output',
    async (req, reply) => {
      const j = await jobOf(req);
      const step = nonNegativeInt(queryString(req, 'step'), 'step', 0);
      const taskId = await taskOf(j.id, nonNegativeInt(queryString(req, 'index'), 'index', 0));
      const follow =
        queryString(req, 'follow') === 'true' || (req.headers.accept ?? '').includes('text/event-stream');
      if (!follow) {
        const pages = await outputPages(scheduler, taskId, step);
        return reply.type('application/json; charset=utf-8').send(
          Readable.from(
            (async function* () {
              yield '{"items":[';
              let first = true;
              let done = false;
              for await (const page of pages) {
                for (const c of page.chunks) {
                  yield (first ? '' : ',') + JSON.stringify(circleMessage(c));
                  first = false;
                }
                done = page.done;
              }
              yield `],"done":${done}}`;
            })(),
          ),
        );
      }

      const stream = openEventStream(req, reply);
      let lastSeq = -1;
      let pumping = false;
      let again = false;
      let finished = false;
      const sub: { unfollow?: () => Promise<void> } = {};
      const timers: NodeJS.Timeout[] = [];
      const finish = () => {
        if (finished) return;
        finished = true;
        for (const t of timers) clearInterval(t);
        if (sub.unfollow) {
          sub.unfollow().catch((err: unknown) => req.log.warn({ err }, 'output stream: unfollow failed'));
        }
        if (!reply.raw.writableEnded) reply.raw.end();
      };
      const pump = async (): Promise<void> => {
        if (pumping) {
          again = true;
          return;
        }
        pumping = true;
        try {
          do {
            again = false;
            const { chunks, done, more } = await scheduler.readStepOutput(taskId, step, lastSeq);
            for (const c of chunks) {
              if (c.seq <= lastSeq) continue;
              lastSeq = c.seq;
              stream.send('output', { seq: c.seq, ...circleMessage(c) });
            }
            if (more) again = true;
            if (done) {
              const st = await db.query<{ status: string; exit_code: number | null }>(
                'SELECT status, exit_code FROM steps WHERE task_id = $1 AND step_index = $2',
                [taskId, step],
              );
              stream.send('end', {
                status: st.rows[0]?.status ?? null,
                exit_code: st.rows[0]?.exit_code ?? null,
              });
              finish();
              return;
            }
          } while (again && !finished);
        } finally {
          pumping = false;
        }
      };
      const pumpLogged = () => {
        if (finished) return;
        pump().catch((err: unknown) => {
          req.log.error({ err }, 'output stream failed');
          stream.send('error', { message: err instanceof Error ? err.message : String(err) });
          finish();
        });
      };
      reply.raw.on('close', finish);
      // Subscribe before the first read, so nothing printed in between is missed.
      const unfollow = await scheduler.followStep(taskId, step, pumpLogged);
      sub.unfollow = unfollow;
      if (finished) {
        await unfollow();
        return reply;
      }
      timers.push(setInterval(() => stream.comment('keep-alive'), SSE_KEEPALIVE_MS));
      timers.push(setInterval(pumpLogged, SSE_SAFETY_POLL_MS));
      pumpLogged();
      return reply;
    },
  );
}

/**
 * The output_url: `[{type, time, message}]` (`?file=true`: plain text). Outside the token-required
 * scope: a valid `exp`/`sig` (as handed out in the v1.1 job) is enough, as CircleCI's presigned
 * URLs are; without them the request needs an API token like any other.
 */
export function registerOutputUrlRoute(
  app: FastifyInstance,
  deps: RouteDeps,
  signer: OutputSigner,
  authenticate: (req: FastifyRequest) => Promise<void>,
): void {
  const { res, scheduler } = deps;
  const db = res.db;
  app.get<{ Params: SlugParams & { step: string; index: string } }>(
    '/api/v1.1/project/:vcs/:org/:repo/:number/output/:step/:index',
    async (req, reply) => {
      const { vcs, org, repo } = req.params;
      const n = positiveInt(req.params.number, 'Job');
      const step = nonNegativeInt(req.params.step, 'step', 0);
      const index = nonNegativeInt(req.params.index, 'index', 0);
      const sig = queryString(req, 'sig');
      let user: User;
      if (sig !== undefined) {
        // The signature names the slug as the job details spelled it: the stored one.
        const project = await reads.findProject(db, SIGNED_URL_READER, `${vcs}/${org}/${repo}`);
        if (!(await signer.verify(project.slug, n, step, index, queryString(req, 'exp') ?? '', sig))) {
          throw new TorusError(
            'TORUS_E_FORBIDDEN',
            'This output URL has expired or is not valid: fetch the job again for a fresh one.',
          );
        }
        user = SIGNED_URL_READER;
      } else {
        await authenticate(req);
        user = currentUser(req);
      }
      const project = await reads.findProject(db, user, `${vcs}/${org}/${repo}`);
      const j = await reads.findJobByNumber(db, user, project, n);
      const taskId = await reads.taskOf(db, j.id, index);
      if (!taskId) throw new TorusError('TORUS_E_NOT_FOUND', `the job has no parallel run ${index} (yet)`);
      const pages = await outputPages(scheduler, taskId, step);
      // streamed a page at a time: a step's output may be far larger than the server's memory budget
      if (queryString(req, 'file') === 'true') {
        return reply.type('text/plain; charset=utf-8').send(
          Readable.from(
            (async function* () {
              for await (const page of pages) yield page.chunks.map((c) => c.data).join('');
            })(),
          ),
        );
      }
      return reply.type('application/json; charset=utf-8').send(
        Readable.from(
          (async function* () {
            yield '[';
            let first = true;
            for await (const page of pages) {
              for (const c of page.chunks) {
                yield (first ? '' : ',') + JSON.stringify(circleMessage(c));
                first = false;
              }
            }
            yield ']';
          })(),
        ),
      );
    },
  );
}
