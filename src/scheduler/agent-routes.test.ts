// The agent protocol over HTTP (src/api/agent-routes.ts): auth, validation, the full task round trip,
// and a claim whose client disconnects.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import type { Database } from '../storage/index.js';
import { openTestDatabase, databaseKinds } from '../../test/harness/db.js';
import { agentRoutes } from '../api/agent-routes.js';
import { AGENT_API_PREFIX, createScheduler, type Scheduler } from './index.js';
import { OUTPUT_FRAMES_CONTENT_TYPE, encodeFrames } from './output-format.js';
import { LEASE_HEADER, type OutputChunk } from './protocol.js';
import {
  enqueueJob,
  recordingHooks,
  testResources,
  truncateAll,
  type TestResources,
} from './test-fixtures.js';

for (const kind of databaseKinds()) {
  describe(`agent routes on ${kind}`, () => {
    let db: Database;
    let t: TestResources;
    let scheduler: Scheduler;
    let app: FastifyInstance;
    let hooks: ReturnType<typeof recordingHooks>;
    let token: string;

    beforeAll(async () => {
      db = await openTestDatabase(kind);
    });
    afterAll(async () => {
      await db.close();
    });
    beforeEach(async () => {
      await truncateAll(db);
      hooks = recordingHooks();
      t = testResources(db, { leaseMs: 5_000, heartbeatMs: 1_000 });
      scheduler = createScheduler(t.res, hooks);
      app = Fastify({ logger: false });
      await app.register(agentRoutes(scheduler), { prefix: AGENT_API_PREFIX });
      await app.ready();
      token = (await scheduler.createAgentToken('machine:*', 'test')).token;
    });
    afterEach(async () => {
      await app.close();
      await scheduler.stop();
      t.cleanup();
    });

    const post = (path: string, body: unknown, auth: string | null = token) =>
      app.inject({
        method: 'POST',
        url: `${AGENT_API_PREFIX}${path}`,
        headers: auth === null ? {} : { authorization: `Bearer ${auth}` },
        payload: body as object,
      });

    it('refuses requests without a valid agent token (401)', async () => {
      const none = await post('/claim', { agentId: 'a', resourceClasses: ['machine:*'], waitMs: 0 }, null);
      expect(none.statusCode).toBe(401);
      expect(none.json()).toEqual({ message: expect.stringContaining('Authorization: Bearer') });
      const bad = await post(
        '/claim',
        { agentId: 'a', resourceClasses: ['machine:*'], waitMs: 0 },
        'torus_agent_nope',
      );
      expect(bad.statusCode).toBe(401);
      expect(Object.keys(bad.json())).toEqual(['message']);
    });

    it('says what is wrong with a malformed request (400)', async () => {
      const missing = await post('/claim', { agentId: 'a', waitMs: 0 });
      expect(missing.statusCode).toBe(400);
      expect(missing.json()).toEqual({ message: expect.stringContaining('resourceClasses') });
      const badJson = await app.inject({
        method: 'POST',
        url: `${AGENT_API_PREFIX}/claim`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: '{"agentId": ',
      });
      expect(badJson.statusCode).toBe(400);
      expect(Object.keys(badJson.json())).toEqual(['message']);
      const badTask = await post('/tasks/not-a-uuid/heartbeat', {
        leaseId: '00000000-0000-4000-8000-000000000000',
      });
      expect(badTask.statusCode).toBe(400);
      expect(badTask.json().message).toContain('taskId');
      const forbidden = await post('/claim', { agentId: 'a', resourceClasses: ['docker:large'], waitMs: 0 });
      expect(forbidden.statusCode).toBe(403);
      expect(forbidden.json().message).toContain('docker:large');
    });

    it('runs a task through claim, heartbeat, step start/output/end and complete', async () => {
      const empty = await post('/claim', { agentId: 'a1', resourceClasses: ['machine:*'], waitMs: 0 });
      expect(empty.statusCode).toBe(204);
      const { jobId, taskIds } = await enqueueJob(db, scheduler.enqueue);
      const taskId = taskIds[0]!;
      const claim = await post('/claim', { agentId: 'a1', resourceClasses: ['machine:*'], waitMs: 1_000 });
      expect(claim.statusCode).toBe(200);
      const c = claim.json();
      expect(c).toMatchObject({ task: { taskId, jobId }, leaseMs: 5_000, heartbeatMs: 1_000 });
      const leaseId = c.leaseId as string;
      const hb = await post(`/tasks/${taskId}/heartbeat`, { leaseId });
      expect(hb.statusCode).toBe(200);
      expect(hb.json()).toEqual({ cancel: false });
      const now = new Date().toISOString();
      expect(
        (await post(`/tasks/${taskId}/steps/2/start`, { leaseId, name: 'Run', type: 'run', startedAt: now }))
          .statusCode,
      ).toBe(204);
      const badChunk = await post(`/tasks/${taskId}/steps/2/output`, {
        leaseId,
        chunks: [{ seq: 0, stream: 'stdout', time: now, data: 'x' }],
      });
      expect(badChunk.statusCode).toBe(400);
      expect(badChunk.json().message).toContain('stream');
      const out = await post(`/tasks/${taskId}/steps/2/output`, {
        leaseId,
        chunks: [{ seq: 0, stream: 'out', time: now, data: 'hello\n' }],
      });
      expect(out.statusCode).toBe(204);
      expect(
        (
          await post(`/tasks/${taskId}/steps/2/end`, {
            leaseId,
            status: 'success',
            exitCode: 0,
            stoppedAt: now,
          })
        ).statusCode,
      ).toBe(204);
      expect((await scheduler.readStepOutput(taskId, 2)).chunks.map((x) => x.data)).toEqual(['hello\n']);
      const report = {
        leaseId,
        name: 'Quick',
        type: 'run',
        startedAt: now,
        chunks: [{ seq: 0, stream: 'out', time: now, data: 'fast\n' }],
        status: 'success',
        exitCode: 0,
        stoppedAt: now,
      };
      const badReport = await post(`/tasks/${taskId}/steps/3/report`, { ...report, status: 'running' });
      expect(badReport.statusCode).toBe(400);
      expect(badReport.json().message).toContain('status');
      expect((await post(`/tasks/${taskId}/steps/3/report`, report)).statusCode).toBe(204);
      expect((await post(`/tasks/${taskId}/steps/3/report`, report)).statusCode).toBe(204);
      expect(await scheduler.readStepOutput(taskId, 3)).toMatchObject({
        chunks: [{ seq: 0, data: 'fast\n' }],
        done: true,
      });
      expect((await post(`/tasks/${taskId}/complete`, { leaseId, status: 'success' })).statusCode).toBe(204);
      expect((await post(`/tasks/${taskId}/complete`, { leaseId, status: 'success' })).statusCode).toBe(204);
      expect(hooks.finished).toEqual([{ jobId, outcome: 'success' }]);
      const lost = await post(`/tasks/${taskId}/heartbeat`, { leaseId });
      expect(lost.statusCode).toBe(409);
      expect(lost.json()).toEqual({ message: expect.stringContaining('stop working on it') });
    });

    it('stores output frames as sent, big or small, and refuses bad ones before storing anything', async () => {
      const { taskIds } = await enqueueJob(db, scheduler.enqueue);
      const taskId = taskIds[0]!;
      const c = (await post('/claim', { agentId: 'a1', resourceClasses: ['machine:*'], waitMs: 1_000 })).json();
      const leaseId = c.leaseId as string;
      const time = new Date().toISOString();
      await post(`/tasks/${taskId}/steps/2/start`, { leaseId, name: 'Run', type: 'run', startedAt: time });
      const frames = (
        body: Buffer | Readable,
        headers: Record<string, string> = { [LEASE_HEADER]: leaseId },
      ) =>
        app.inject({
          method: 'POST',
          url: `${AGENT_API_PREFIX}/tasks/${taskId}/steps/2/output`,
          headers: { authorization: `Bearer ${token}`, 'content-type': OUTPUT_FRAMES_CONTENT_TYPE, ...headers },
          payload: body,
        });
      const chunk = (seq: number, data: string): OutputChunk => ({ seq, stream: 'out', time, data });
      // large bodies are read into a buffer the next request reuses: what was stored must not change
      const big = (seq: number, fill: string) => chunk(seq, `${fill.repeat(99)} ünï ✓\n`.repeat(2_000));
      const sent = [chunk(0, 'small\n'), big(1, 'a'), big(2, 'b'), big(3, 'c'), chunk(4, 'tail')];
      expect((await frames(encodeFrames(sent.slice(0, 1)))).statusCode).toBe(204);
      expect((await frames(encodeFrames(sent.slice(1, 3)))).statusCode).toBe(204);
      expect((await frames(encodeFrames(sent.slice(3, 4)))).statusCode).toBe(204);
      // a body without a length (chunked) is read too
      expect((await frames(Readable.from([encodeFrames(sent.slice(4))]))).statusCode).toBe(204);

      const noLease = await frames(encodeFrames([chunk(5, 'x')]), {});
      expect(noLease.statusCode).toBe(400);
      expect(noLease.json().message).toContain(LEASE_HEADER);
      const cut = encodeFrames([big(5, 'd')]);
      const bad = await frames(cut.subarray(0, cut.length - 10));
      expect(bad.statusCode).toBe(400);
      expect(bad.json().message).toContain('must be followed by a newline');
      const tooLarge = await frames(Buffer.alloc(16 * 1024 * 1024 + 1, 0x0a));
      expect(tooLarge.statusCode).toBe(413);
      expect(Object.keys(tooLarge.json())).toEqual(['message']);

      const stored = async () => {
        const out: OutputChunk[] = [];
        for (let page = await scheduler.readStepOutput(taskId, 2); ; ) {
          out.push(...page.chunks);
          const last = page.chunks[page.chunks.length - 1];
          if (!page.more || !last) return out;
          page = await scheduler.readStepOutput(taskId, 2, last.seq);
        }
      };
      expect(await stored()).toEqual(sent);
      // a resent request (its answer was lost) stores nothing twice
      expect((await frames(encodeFrames(sent.slice(1, 3)))).statusCode).toBe(204);
      expect(await stored()).toEqual(sent);

      // once the task is over, its lease stores nothing more, however recently it stored output
      expect((await post(`/tasks/${taskId}/complete`, { leaseId, status: 'success' })).statusCode).toBe(204);
      const late = await frames(encodeFrames([big(5, 'e')]));
      expect(late.statusCode).toBe(409);
      expect((await stored()).length).toBe(sent.length);
    });

    it('answers waiting claims with 204 when the server closes, instead of holding the close', async () => {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      const pending = fetch(`http://127.0.0.1:${port}${AGENT_API_PREFIX}/claim`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ agentId: 'waiting', resourceClasses: ['machine:*'], waitMs: 20_000 }),
      });
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await app.close();
      expect(Date.now() - t0).toBeLessThan(3_000);
      expect((await pending).status).toBe(204);
    });

    it('ends a waiting claim when its client disconnects, leaving later tasks queued', async () => {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      const body = JSON.stringify({ agentId: 'gone', resourceClasses: ['machine:*'], waitMs: 10_000 });
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: `${AGENT_API_PREFIX}/claim`,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      });
      req.on('error', () => undefined); // the socket is destroyed on purpose
      req.end(body);
      await new Promise((r) => setTimeout(r, 300));
      req.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const { taskIds } = await enqueueJob(db, scheduler.enqueue);
      await new Promise((r) => setTimeout(r, 300));
      const row = await db.query<{ status: string }>('SELECT status FROM tasks WHERE id = $1', [taskIds[0]]);
      expect(row.rows[0]!.status).toBe('queued');
    });
  });
}
