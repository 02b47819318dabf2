// runAgent against a small in-memory implementation of the agent protocol's server side.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/harness/net.js';
import { createLogger } from '../ops/index.js';
import type {
  ClaimRequest,
  CompleteRequest,
  OutputChunk,
  StepEndRequest,
  TaskSpec,
} from '../scheduler/protocol.js';
import { AGENT_API_PREFIX } from '../scheduler/protocol.js';
import { runAgent } from './index.js';
import { parseAgentBody, processesMatching, runStep, taskSpec } from './testing.js';

const TOKEN = 'agent-token-for-tests';

interface FakeTask {
  spec: TaskSpec;
  leaseId: string;
  cancel: boolean;
  lost: boolean;
  heartbeats: number;
  starts: Map<number, { name: string; type: string; background?: boolean; receivedAt: number }>;
  chunks: Map<number, Map<number, OutputChunk & { receivedAt: number }>>;
  outputRequests: number;
  duplicateChunks: number;
  ends: Map<number, StepEndRequest>;
  complete?: CompleteRequest;
  requestsAfterLost: number;
  /** steps sent in one report request (start, output and end at once) */
  reports: number;
  reported: Set<number>;
}

/** The server side of src/scheduler/protocol.ts, in memory, with knobs to inject failures. */
class FakeServer {
  readonly queue: TaskSpec[] = [];
  readonly tasks = new Map<string, FakeTask>();
  readonly claims: ClaimRequest[] = [];
  /** the next N output requests answer 503 (a restarting server) */
  failNextOutputs = 0;
  /** the next N output requests are stored but answer 503 (the answer was lost): the agent resends them */
  loseNextOutputAnswers = 0;
  private server!: Server;
  private port = 0;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(this.port, '127.0.0.1', r));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** the server goes away (connections refused) for downMs, then listens again on the same port */
  async restart(downMs: number): Promise<void> {
    await this.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    const body = parseAgentBody(Buffer.concat(parts), req.headers);
    const send = (status: number, json?: unknown) => {
      res.writeHead(status, json ? { 'content-type': 'application/json' } : {});
      res.end(json ? JSON.stringify(json) : undefined);
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { message: 'Invalid token' });
    const url = req.url ?? '';
    if (url === `${AGENT_API_PREFIX}/claim`) {
      this.claims.push(body as unknown as ClaimRequest);
      const at = this.queue.findIndex((t) => (body.resourceClasses as string[]).includes(t.resourceClass));
      const spec = at >= 0 ? this.queue.splice(at, 1)[0] : undefined;
      if (!spec) {
        await new Promise((r) => setTimeout(r, Math.min(Number(body.waitMs), 100)));
        return send(204);
      }
      const task: FakeTask = {
        spec,
        leaseId: `lease-${spec.taskId}`,
        cancel: false,
        lost: false,
        heartbeats: 0,
        starts: new Map(),
        chunks: new Map(),
        outputRequests: 0,
        duplicateChunks: 0,
        ends: new Map(),
        requestsAfterLost: 0,
        reports: 0,
        reported: new Set(),
      };
      this.tasks.set(spec.taskId, task);
      return send(200, { task: spec, leaseId: task.leaseId, leaseMs: 3_000, heartbeatMs: 100 });
    }
    const m =
      /^\/api\/agent\/v1\/tasks\/([^/]+)\/(heartbeat|complete|steps\/(\d+)\/(start|output|end|report))$/.exec(
        url,
      );
    const task = m ? this.tasks.get(decodeURIComponent(m[1] ?? '')) : undefined;
    if (!m || !task) return send(404, { message: 'not found' });
    if (task.lost || body.leaseId !== task.leaseId) {
      task.requestsAfterLost += 1;
      return send(409, { message: 'lease lost' });
    }
    const index = Number(m[3]);
    switch (m[4] ?? m[2] ?? '') {
      case 'heartbeat':
        task.heartbeats += 1;
        return send(200, { cancel: task.cancel });
      case 'start':
        task.starts.set(index, { ...(body as { name: string; type: string }), receivedAt: Date.now() });
        return send(204);
      case 'output': {
        if (this.failNextOutputs > 0) {
          this.failNextOutputs -= 1;
          return send(503, { message: 'restarting' });
        }
        task.outputRequests += 1;
        let step = task.chunks.get(index);
        if (!step) task.chunks.set(index, (step = new Map()));
        for (const c of body.chunks as OutputChunk[]) {
          if (step.has(c.seq)) task.duplicateChunks += 1;
          else step.set(c.seq, { ...c, receivedAt: Date.now() });
        }
        if (this.loseNextOutputAnswers > 0) {
          this.loseNextOutputAnswers -= 1;
          return send(503, { message: 'restarting' });
        }
        return send(204);
      }
      case 'end':
        task.ends.set(index, body as unknown as StepEndRequest);
        return send(204);
      case 'report': {
        task.reports += 1;
        task.reported.add(index);
        task.starts.set(index, { ...(body as { name: string; type: string }), receivedAt: Date.now() });
        let step = task.chunks.get(index);
        if (!step) task.chunks.set(index, (step = new Map()));
        for (const c of body.chunks as OutputChunk[]) step.set(c.seq, { ...c, receivedAt: Date.now() });
        task.ends.set(index, body as unknown as StepEndRequest);
        return send(204);
      }
      case 'complete':
        task.complete = body as unknown as CompleteRequest;
        return send(204);
      default:
        return send(404, { message: 'not found' });
    }
  }

  task(id: string): FakeTask {
    const t = this.tasks.get(id);
    if (!t) throw new Error(`task ${id} was never claimed`);
    return t;
  }

  /** a step's output as the server stored it, in seq order; throws on a gap */
  text(id: string, index: number): string {
    const chunks = [...(this.task(id).chunks.get(index)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
    chunks.forEach((c, i) => expect(c.seq).toBe(i));
    return chunks.map((c) => c.data).join('');
  }
}

let server: FakeServer;
let workRoot: string;
let stopAgent: AbortController;
let agentDone: Promise<void>;

beforeAll(async () => {
  workRoot = mkdtempSync(path.join(tmpdir(), 'torus-agent-client-'));
  server = new FakeServer();
  await server.start();
  stopAgent = new AbortController();
  agentDone = runAgent({
    serverUrl: server.url,
    token: TOKEN,
    resourceClasses: ['machine:medium'],
    agentId: 'agent-under-test',
    workRoot,
    sandbox: 'auto',
    signal: stopAgent.signal,
    logger: createLogger('silent'),
    claimWaitMs: 200,
  });
});

afterAll(async () => {
  stopAgent.abort();
  await agentDone;
  await server.stop();
  rmSync(workRoot, { recursive: true, force: true });
});

afterEach(() => {
  server.failNextOutputs = 0;
  server.loseNextOutputAnswers = 0;
});

describe('runAgent', () => {
  it('claims a task, streams batched output promptly, and completes it', async () => {
    server.failNextOutputs = 1; // the first output request meets a restarting server
    server.loseNextOutputAnswers = 2; // the next two are stored but their answers are lost
    const spec = taskSpec([
      runStep('echo first; sleep 0.6; echo second', { name: 'Slow' }),
      runStep('for i in $(seq 1 3000); do echo "line $i"; done', { name: 'Noisy' }),
      runStep('exit 2', { name: 'Fails' }),
    ]);
    server.queue.push(spec);
    await waitFor(() => server.tasks.get(spec.taskId)?.complete, 15_000);
    const task = server.task(spec.taskId);
    expect(server.claims[0]).toMatchObject({
      agentId: 'agent-under-test',
      resourceClasses: ['machine:medium'],
    });
    expect(task.complete).toMatchObject({ leaseId: task.leaseId, status: 'failed' });
    expect([...task.starts.keys()]).toEqual([0, 1, 2, 3, 4]);
    expect(task.starts.get(2)).toMatchObject({ name: 'Slow', type: 'run' });
    expect(task.ends.get(2)).toMatchObject({ status: 'success', exitCode: 0 });
    expect(task.ends.get(4)).toMatchObject({ status: 'failed', exitCode: 2 });

    // a printed line reaches the server well within 500 ms, long before the step ends
    expect(server.text(spec.taskId, 2)).toBe('first\nsecond\n');
    const slow = [...(task.chunks.get(2)?.values() ?? [])];
    const first = slow.find((c) => c.data.includes('first'));
    const second = slow.find((c) => c.data.includes('second'));
    expect(first && second).toBeTruthy();
    expect(first!.receivedAt - task.starts.get(2)!.receivedAt).toBeLessThan(500);
    expect(second!.receivedAt - first!.receivedAt).toBeGreaterThan(300);
    // resent chunks (same seq) were not stored twice
    expect(task.duplicateChunks).toBeGreaterThan(0);

    // 3000 lines arrive complete and in order, batched into far fewer requests
    const noisy = server.text(spec.taskId, 3);
    expect(noisy.split('\n').length).toBe(3001);
    expect(noisy.startsWith('line 1\nline 2\n')).toBe(true);
    expect(noisy.endsWith('line 3000\n')).toBe(true);
    expect(task.outputRequests).toBeLessThan(60);
    expect(server.text(spec.taskId, 4)).toContain('Exited with code exit status 2');
  });

  it('sends loud output whole and in order, in few requests, multi-byte characters and both streams included', async () => {
    const lines = 40_000; // about 5 MB: several buffers' worth and more than one request
    const text = (n: number) => `line ${n} ünï ✓ ${'x'.repeat(100)}\n`;
    const spec = taskSpec([
      runStep(
        `seq 1 ${lines} | awk '{ print "line " $1 " ünï ✓ ${'x'.repeat(100)}"; if ($1 % 5000 == 0) print "err " $1 > "/dev/stderr" }'`,
        { name: 'Loud' },
      ),
    ]);
    server.queue.push(spec);
    await waitFor(() => server.tasks.get(spec.taskId)?.complete, 30_000);
    const task = server.task(spec.taskId);
    expect(task.complete?.status).toBe('success');
    const chunks = [...(task.chunks.get(2)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
    chunks.forEach((c, i) => expect(c.seq).toBe(i));
    const of = (stream: string) =>
      chunks
        .filter((c) => c.stream === stream)
        .map((c) => c.data)
        .join('');
    expect(of('out')).toBe(Array.from({ length: lines }, (_, i) => text(i + 1)).join(''));
    expect(of('err')).toBe(Array.from({ length: 8 }, (_, i) => `err ${(i + 1) * 5000}\n`).join(''));
    // reads are gathered into chunks of up to 64 KB
    expect(chunks.length).toBeLessThan(200);
    expect(task.outputRequests).toBeLessThan(20);
  });

  it('reports a step that ends within the flush window in one request', async () => {
    // an agent of its own with a 1 s window: on a loaded machine starting bash alone can take
    // longer than the default 100 ms, and the property is about the window, not its length
    const own = new FakeServer();
    await own.start();
    const stop = new AbortController();
    const done = runAgent({
      serverUrl: own.url,
      token: TOKEN,
      resourceClasses: ['machine:medium'],
      agentId: 'agent-with-a-wide-window',
      workRoot,
      sandbox: 'auto',
      signal: stop.signal,
      logger: createLogger('silent'),
      claimWaitMs: 200,
      outputFlushMs: 1_000,
    });
    try {
      const spec = taskSpec([runStep('echo quick', { name: 'Quick' })]);
      own.queue.push(spec);
      await waitFor(() => own.tasks.get(spec.taskId)?.complete, 15_000);
      const task = own.task(spec.taskId);
      expect(task.complete).toMatchObject({ status: 'success' });
      expect(task.reported.has(2)).toBe(true);
      expect(task.starts.get(2)).toMatchObject({ name: 'Quick', type: 'run' });
      expect(task.ends.get(2)).toMatchObject({ status: 'success', exitCode: 0 });
      expect(own.text(spec.taskId, 2)).toBe('quick\n');
    } finally {
      stop.abort();
      await done;
      await own.stop();
    }
  });

  it('stops a task when a heartbeat says the job was canceled', async () => {
    const spec = taskSpec([runStep('echo running; sleep 44.337'), runStep('echo never', { when: 'always' })]);
    server.queue.push(spec);
    await waitFor(() => server.tasks.get(spec.taskId)?.chunks.get(2), 10_000);
    server.task(spec.taskId).cancel = true;
    await waitFor(() => server.tasks.get(spec.taskId)?.complete, 10_000);
    const task = server.task(spec.taskId);
    expect(task.complete?.status).toBe('canceled');
    expect(task.ends.get(2)).toMatchObject({ status: 'canceled', exitCode: null });
    expect(task.starts.has(3)).toBe(false);
    await waitFor(() => processesMatching('sleep 44.337').length === 0, 3_000);
  });

  it('drops a task whose lease is lost (409) and goes back to claiming', async () => {
    const spec = taskSpec([runStep('echo running; sleep 45.337')]);
    server.queue.push(spec);
    await waitFor(() => server.tasks.get(spec.taskId)?.chunks.get(2), 10_000);
    server.task(spec.taskId).lost = true;
    await waitFor(() => processesMatching('sleep 45.337').length === 0, 5_000);
    const next = taskSpec([runStep('echo next task')]);
    server.queue.push(next);
    await waitFor(() => server.tasks.get(next.taskId)?.complete, 10_000);
    expect(server.task(next.taskId).complete?.status).toBe('success');
    expect(server.text(next.taskId, 2)).toBe('next task\n');
    const lost = server.task(spec.taskId);
    expect(lost.complete).toBeUndefined();
    // after the first 409 the agent stops talking about the task
    expect(lost.requestsAfterLost).toBeLessThanOrEqual(2);
  });

  it('keeps output through a server restart and reports everything once it is back', async () => {
    const spec = taskSpec([runStep('for i in $(seq 1 20); do echo "tick $i"; sleep 0.05; done')]);
    server.queue.push(spec);
    await waitFor(() => server.tasks.get(spec.taskId)?.chunks.get(2), 10_000);
    await server.restart(700);
    await waitFor(() => server.tasks.get(spec.taskId)?.complete, 10_000);
    expect(server.task(spec.taskId).complete?.status).toBe('success');
    expect(server.text(spec.taskId, 2)).toBe(
      Array.from({ length: 20 }, (_, i) => `tick ${i + 1}\n`).join(''),
    );
  });

  it('drains: finishes the task in hand, then stops claiming', async () => {
    const drain = new AbortController();
    const spec = taskSpec([runStep('sleep 0.3; echo finished')], { resourceClass: 'machine:drain' });
    server.queue.push(spec);
    const done = runAgent({
      serverUrl: server.url,
      token: TOKEN,
      resourceClasses: ['machine:drain'],
      workRoot,
      sandbox: 'auto',
      signal: new AbortController().signal,
      drain: drain.signal,
      logger: createLogger('silent'),
      claimWaitMs: 200,
    });
    await waitFor(() => server.tasks.get(spec.taskId)?.starts.get(2), 10_000);
    drain.abort();
    await done;
    expect(server.task(spec.taskId).complete?.status).toBe('success');
    expect(server.text(spec.taskId, 2)).toBe('finished\n');
  });

  it('keeps retrying a refused token without crashing and without logging it', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const { default: pino } = await import('pino');
    const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
    const done = runAgent({
      serverUrl: server.url,
      token: 'wrong-secret-token',
      resourceClasses: ['machine:other'],
      sandbox: 'none',
      signal: stop.signal,
      logger,
      claimWaitMs: 100,
    });
    await waitFor(() => lines.filter((l) => l.includes('claim failed')).length >= 2, 5_000);
    stop.abort();
    await done;
    expect(lines.join('')).toContain('refused');
    expect(lines.join('')).not.toContain('wrong-secret-token');
  });
});
