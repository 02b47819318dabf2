// The scheduler on both databases: queue, claims, waking, leases, output, job outcome, cancel, diagnostics.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AGENT_TOKEN_CACHE_MS } from './tokens.js';
import type { Database } from '../storage/index.js';
import { openTestDatabase, databaseKinds } from '../../test/harness/db.js';
import { waitFor } from '../../test/harness/net.js';
import { readObjectText } from '../storage/index.js';
import type { Settings } from '../ops/index.js';
import type { OutputLimits } from './context.js';
import {
  createScheduler,
  aggregateOutcome,
  isFinal,
  type Scheduler,
  type AuthenticatedAgent,
  type ClaimRequest,
} from './index.js';
import {
  enqueueJob,
  recordingHooks,
  testResources,
  truncateAll,
  type TestResources,
} from './test-fixtures.js';

const machineAgent: AuthenticatedAgent = { tokenId: 't1', resourceClass: 'machine:*' };
const never = new AbortController().signal;

function claimReq(resourceClasses: string[], waitMs = 0, agentId = 'agent-1'): ClaimRequest {
  return { agentId, resourceClasses, waitMs, hostname: 'h', version: 'test' };
}

for (const kind of databaseKinds()) {
  describe(`scheduler on ${kind}`, () => {
    let db: Database;
    let t: TestResources | undefined;
    let scheduler: Scheduler | undefined;
    let hooks: ReturnType<typeof recordingHooks>;

    beforeAll(async () => {
      db = await openTestDatabase(kind);
    });
    afterAll(async () => {
      await db.close();
    });
    beforeEach(async () => {
      await truncateAll(db);
      hooks = recordingHooks();
    });
    afterEach(async () => {
      await scheduler?.stop();
      scheduler = undefined;
      t?.cleanup();
      t = undefined;
    });

    function make(settings: Partial<Settings> = {}, output?: Partial<OutputLimits>): Scheduler {
      t = testResources(db, settings);
      scheduler = createScheduler(t.res, hooks, { output });
      return scheduler;
    }

    it('hands a queued task to a claiming agent, with its spec and lease', async () => {
      const s = make({ leaseMs: 3_000, heartbeatMs: 700 });
      const { jobId, taskIds } = await enqueueJob(db, s.enqueue, { resourceClass: 'machine:medium' });
      const claimed = await s.claim(machineAgent, claimReq(['machine:*']), never);
      expect(claimed).not.toBeNull();
      expect(claimed!.task.taskId).toBe(taskIds[0]);
      expect(claimed!.task.jobId).toBe(jobId);
      expect(claimed!.task.steps[0]).toMatchObject({ type: 'run', command: 'echo hi' });
      expect(claimed!.leaseMs).toBe(3_000);
      expect(claimed!.heartbeatMs).toBe(700);
      const row = await db.query<{
        status: string;
        agent_id: string;
        lease_id: string;
        started_at: Date | null;
      }>('SELECT status, agent_id, lease_id, started_at FROM tasks WHERE id = $1', [taskIds[0]]);
      expect(row.rows[0]).toMatchObject({
        status: 'running',
        agent_id: 'agent-1',
        lease_id: claimed!.leaseId,
      });
      expect(row.rows[0]!.started_at).toBeInstanceOf(Date);
      expect(hooks.started).toEqual([jobId]);
      // nothing left: an immediate claim comes back empty
      expect(await s.claim(machineAgent, claimReq(['machine:*']), never)).toBeNull();
    });

    it('claims the oldest task first and calls onTaskStarted once per job', async () => {
      const s = make();
      const a = await enqueueJob(db, s.enqueue, { parallelism: 2 });
      const b = await enqueueJob(db, s.enqueue);
      const got = [];
      for (let i = 0; i < 3; i++)
        got.push((await s.claim(machineAgent, claimReq(['machine:medium']), never))!.task);
      expect(got.map((x) => x.taskId)).toEqual([...a.taskIds, ...b.taskIds]);
      expect(got.map((x) => x.nodeIndex)).toEqual([0, 1, 0]);
      expect(hooks.started).toEqual([a.jobId, b.jobId]);
    });

    it('claims only from the resource classes the token allows', async () => {
      const s = make();
      const docker = await enqueueJob(db, s.enqueue, { resourceClass: 'docker:large' });
      const runner = await enqueueJob(db, s.enqueue, { resourceClass: 'myns/runner' });
      await expect(s.claim(machineAgent, claimReq(['docker:large']), never)).rejects.toMatchObject({
        status: 403,
      });
      await expect(
        s.claim(machineAgent, claimReq(['machine:*', 'myns/runner']), never),
      ).rejects.toMatchObject({ status: 403 });
      // allowed classes, but nothing queued under them
      expect(await s.claim(machineAgent, claimReq(['machine:*']), never)).toBeNull();
      const runnerAgent: AuthenticatedAgent = { tokenId: 't2', resourceClass: 'myns/runner' };
      await expect(s.claim(runnerAgent, claimReq(['myns/*']), never)).rejects.toMatchObject({ status: 403 });
      expect((await s.claim(runnerAgent, claimReq(['myns/runner']), never))!.task.taskId).toBe(
        runner.taskIds[0],
      );
      const status = await db.query<{ status: string }>('SELECT status FROM tasks WHERE id = $1', [
        docker.taskIds[0],
      ]);
      expect(status.rows[0]!.status).toBe('queued');
    });

    it('wakes a waiting claim as soon as a matching task is queued', async () => {
      const s = make();
      const started = Date.now();
      const pending = s.claim(machineAgent, claimReq(['machine:*'], 5_000), never);
      let resolvedAt = 0;
      void pending.then(() => (resolvedAt = Date.now()));
      await new Promise((r) => setTimeout(r, 300));
      // a task of another class does not satisfy it
      await enqueueJob(db, s.enqueue, { resourceClass: 'docker:large' });
      await new Promise((r) => setTimeout(r, 100));
      expect(resolvedAt).toBe(0);
      const enqueuedAt = Date.now();
      const { taskIds } = await enqueueJob(db, s.enqueue, { resourceClass: 'machine:large' });
      const claimed = await pending;
      expect(claimed!.task.taskId).toBe(taskIds[0]);
      expect(resolvedAt - enqueuedAt).toBeLessThan(1_500); // woken, not polled: the claim waits 5 s otherwise
      expect(resolvedAt - started).toBeLessThan(3_000);
    });

    it('returns null when the wait ends or the client goes away, without taking a task', async () => {
      const s = make();
      const t0 = Date.now();
      expect(await s.claim(machineAgent, claimReq(['machine:*'], 150), never)).toBeNull();
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      const ac = new AbortController();
      const pending = s.claim(machineAgent, claimReq(['machine:*'], 5_000), ac.signal);
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      expect(await pending).toBeNull();
      const { taskIds } = await enqueueJob(db, s.enqueue);
      await new Promise((r) => setTimeout(r, 100));
      const row = await db.query<{ status: string }>('SELECT status FROM tasks WHERE id = $1', [taskIds[0]]);
      expect(row.rows[0]!.status).toBe('queued');
    });

    it('re-queues a task whose agent stops heartbeating, twice, then fails it as infrastructure_fail', async () => {
      const s = make({ leaseMs: 200, maxLeaseRequeues: 2 });
      s.start();
      const { jobId, taskIds } = await enqueueJob(db, s.enqueue);
      const taskId = taskIds[0]!;
      const first = (await s.claim(machineAgent, claimReq(['machine:*'], 0, 'dies-1'), never))!;
      // what the first attempt stored: an artifact, a test result, a workspace layer
      const store = t!.res.store;
      await store.put('artifacts/lost/a.txt', 'a');
      await store.put('workspaces/lost/layer', 'l');
      const now = new Date();
      await db.query(
        `INSERT INTO artifacts (job_id, node_index, path, task_id, object_key, size, created_at)
         VALUES ($1, 0, 'a.txt', $2, 'artifacts/lost/a.txt', 1, $3)`,
        [jobId, taskId, now],
      );
      await db.query(
        `INSERT INTO test_results (job_id, node_index, seq, name, classname, result, run_time)
         VALUES ($1, 0, 0, 't', 'c', 'failure', 1)`,
        [jobId],
      );
      await db.query(
        `INSERT INTO workspace_layers (id, workspace_id, job_id, node_index, object_key, size, encoding, created_at)
         VALUES (gen_random_uuid(), gen_random_uuid(), $1, 0, 'workspaces/lost/layer', 1, 'none', $2)`,
        [jobId, now],
      );
      await s.stepStart(taskId, 0, {
        leaseId: first.leaseId,
        name: 'Spin up environment',
        type: 'spin',
        startedAt: new Date().toISOString(),
      });
      await s.stepOutput(taskId, 0, {
        leaseId: first.leaseId,
        chunks: [{ seq: 0, stream: 'out', time: new Date().toISOString(), data: 'partial\n' }],
      });
      // the expiry loop re-queues it; a waiting claim gets it back (the same task, attempt 1)
      const second = (await s.claim(machineAgent, claimReq(['machine:*'], 3_000, 'dies-2'), never))!;
      expect(second.task.taskId).toBe(taskId);
      expect(second.leaseId).not.toBe(first.leaseId);
      const steps = await db.query('SELECT 1 FROM steps WHERE task_id = $1', [taskId]);
      const chunks = await db.query('SELECT 1 FROM output_segments WHERE task_id = $1', [taskId]);
      expect(steps.rowCount + chunks.rowCount).toBe(0);
      for (const table of ['artifacts', 'test_results', 'workspace_layers'])
        expect((await db.query(`SELECT 1 FROM ${table} WHERE job_id = $1`, [jobId])).rowCount, table).toBe(0);
      // the objects go after the requeue commits, one by one: the claim may come back first
      await waitFor(async () => (await store.head('artifacts/lost/a.txt')) === null, 2_000);
      await waitFor(async () => (await store.head('workspaces/lost/layer')) === null, 2_000);
      const third = (await s.claim(machineAgent, claimReq(['machine:*'], 3_000, 'dies-3'), never))!;
      expect(third.task.taskId).toBe(taskId);
      await waitFor(
        async () =>
          (await db.query<{ status: string }>('SELECT status FROM tasks WHERE id = $1', [taskId])).rows[0]
            ?.status === 'infrastructure_fail',
        3_000,
      );
      const row = await db.query<{ attempt: number; message: string }>(
        'SELECT attempt, message FROM tasks WHERE id = $1',
        [taskId],
      );
      expect(row.rows[0]!.attempt).toBe(2);
      expect(row.rows[0]!.message).toMatch(/stopped responding 3 times/);
      await waitFor(() => hooks.finished.length > 0, 2_000);
      expect(hooks.finished).toEqual([{ jobId, outcome: 'infrastructure_fail' }]);
      expect(hooks.started).toEqual([jobId]);
      const job = await db.query<{ messages: { type: string; message: string }[] }>(
        'SELECT messages FROM jobs WHERE id = $1',
        [jobId],
      );
      const texts = job.rows[0]!.messages.map((m) => m.message);
      expect(texts).toEqual([
        're-queued: its agent stopped responding (attempt 2)',
        're-queued: its agent stopped responding (attempt 3)',
        expect.stringMatching(/stopped responding 3 times; giving up/),
      ]);
      // the last lease is gone: its agent hears 409 at its next call
      await expect(s.heartbeat(taskId, third.leaseId)).rejects.toMatchObject({
        code: 'TORUS_E_LEASE_LOST',
        status: 409,
      });
      await expect(s.complete(taskId, { leaseId: third.leaseId, status: 'success' })).rejects.toMatchObject({
        status: 409,
        message: expect.stringMatching(/already infrastructure_fail/),
      });
    });

    it('keeps a task while its agent heartbeats, and reports a cancel through the heartbeat', async () => {
      const s = make({ leaseMs: 250 });
      s.start();
      const { jobId, taskIds } = await enqueueJob(db, s.enqueue);
      const c = (await s.claim(machineAgent, claimReq(['machine:*']), never))!;
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 90));
        expect(await s.heartbeat(taskIds[0]!, c.leaseId)).toEqual({ cancel: false });
      }
      const row = await db.query<{ status: string; lease_id: string; attempt: number }>(
        'SELECT status, lease_id, attempt FROM tasks WHERE id = $1',
        [taskIds[0]],
      );
      expect(row.rows[0]).toEqual({ status: 'running', lease_id: c.leaseId, attempt: 0 });
      await db.transaction((tx) => s.cancelJob(tx, jobId));
      expect(await s.heartbeat(taskIds[0]!, c.leaseId)).toEqual({ cancel: true });
    });

    it('ends a canceled task as canceled, not re-queued, when its agent stops responding', async () => {
      const s = make({ leaseMs: 150 });
      s.start();
      const { jobId, taskIds } = await enqueueJob(db, s.enqueue);
      await s.claim(machineAgent, claimReq(['machine:*']), never);
      expect(await db.transaction((tx) => s.cancelJob(tx, jobId))).toEqual({
        canceledTasks: 0,
        runningTasks: 1,
      });
      await waitFor(() => hooks.finished.length > 0, 3_000);
      expect(hooks.finished).toEqual([{ jobId, outcome: 'canceled' }]);
      const row = await db.query<{ status: string; attempt: number }>(
        'SELECT status, attempt FROM tasks WHERE id = $1',
        [taskIds[0]],
      );
      expect(row.rows[0]).toEqual({ status: 'canceled', attempt: 0 });
    });

    it('refuses every lease-bearing call with 409 once the lease is lost', async () => {
      const s = make({ leaseMs: 150 });
      const { taskIds } = await enqueueJob(db, s.enqueue);
      const taskId = taskIds[0]!;
      const c = (await s.claim(machineAgent, claimReq(['machine:*']), never))!;
      const wrong = '00000000-0000-4000-8000-000000000000';
      await expect(s.heartbeat(taskId, wrong)).rejects.toMatchObject({ status: 409 });
      await new Promise((r) => setTimeout(r, 200));
      // expired (not yet swept) counts as lost
      await expect(s.heartbeat(taskId, c.leaseId)).rejects.toMatchObject({ status: 409 });
      expect(await s.expireLeasesNow()).toBe(1);
      const now = new Date().toISOString();
      await expect(s.heartbeat(taskId, c.leaseId)).rejects.toMatchObject({
        status: 409,
        message: expect.stringMatching(/re-queued/),
      });
      await expect(
        s.stepStart(taskId, 0, { leaseId: c.leaseId, name: 'x', type: 'run', startedAt: now }),
      ).rejects.toMatchObject({ status: 409 });
      await expect(s.stepOutput(taskId, 0, { leaseId: c.leaseId, chunks: [] })).rejects.toMatchObject({
        status: 409,
      });
      await expect(
        s.stepEnd(taskId, 0, { leaseId: c.leaseId, status: 'success', exitCode: 0, stoppedAt: now }),
      ).rejects.toMatchObject({ status: 409 });
      await expect(
        s.stepReport(taskId, 0, {
          leaseId: c.leaseId,
          name: 'x',
          type: 'run',
          startedAt: now,
          chunks: [{ seq: 0, stream: 'out', time: now, data: 'x\n' }],
          status: 'success',
          exitCode: 0,
          stoppedAt: now,
        }),
      ).rejects.toMatchObject({ status: 409 });
      expect((await db.query('SELECT 1 FROM steps WHERE task_id = $1', [taskId])).rowCount).toBe(0);
      await expect(s.complete(taskId, { leaseId: c.leaseId, status: 'success' })).rejects.toMatchObject({
        status: 409,
      });
      await expect(s.heartbeat('00000000-0000-4000-8000-00000000000f', c.leaseId)).rejects.toMatchObject({
        status: 404,
      });
    });

    it('stores output chunks once per seq and moves them to the object store when the step ends', async () => {
      const s = make({ leaseMs: 5_000 });
      const { taskIds } = await enqueueJob(db, s.enqueue);
      const taskId = taskIds[0]!;
      const { leaseId } = (await s.claim(machineAgent, claimReq(['machine:*']), never))!;
      const changes: number[] = [];
      const unfollow = await s.followStep(taskId, 2, () => changes.push(Date.now()));
      const at = (ms: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, ms)).toISOString();
      await s.stepStart(taskId, 2, { leaseId, name: 'Run tests', type: 'run', startedAt: at(0) });
      await s.stepOutput(taskId, 2, {
        leaseId,
        chunks: [
          { seq: 0, stream: 'out', time: at(1), data: 'line 1\n' },
          { seq: 1, stream: 'err', time: at(2), data: 'warn\n' },
        ],
      });
      // a retried request (same seqs) plus one new chunk
      await s.stepOutput(taskId, 2, {
        leaseId,
        chunks: [
          { seq: 1, stream: 'err', time: at(2), data: 'warn\n' },
          { seq: 2, stream: 'out', time: at(3), data: 'line 2\0\n' },
        ],
      });
      const live = await s.readStepOutput(taskId, 2);
      expect(live.done).toBe(false);
      expect(live.chunks.map((c) => c.data)).toEqual(['line 1\n', 'warn\n', 'line 2\0\n']);
      expect((await s.readStepOutput(taskId, 2, 0)).chunks.map((c) => c.seq)).toEqual([1, 2]);
      await s.stepEnd(taskId, 2, { leaseId, status: 'failed', exitCode: 3, stoppedAt: at(4) });
      // ending twice is harmless
      await s.stepEnd(taskId, 2, { leaseId, status: 'failed', exitCode: 3, stoppedAt: at(4) });
      const left = await db.query('SELECT 1 FROM output_segments WHERE task_id = $1', [taskId]);
      expect(left.rowCount).toBe(0);
      const step = await db.query<{
        status: string;
        exit_code: number;
        output_key: string;
        output_bytes: number;
      }>(
        'SELECT status, exit_code, output_key, output_bytes FROM steps WHERE task_id = $1 AND step_index = 2',
        [taskId],
      );
      expect(step.rows[0]).toMatchObject({
        status: 'failed',
        exit_code: 3,
      });
      expect(step.rows[0]!.output_key).toMatch(new RegExp(`^output/${taskId}/2/[0-9a-f-]{36}\\.jsonl$`));
      const text = await readObjectText(t!.res.store, step.rows[0]!.output_key);
      expect(
        text!
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l)),
      ).toEqual([
        { seq: 0, stream: 'out', time: at(1), data: 'line 1\n' },
        { seq: 1, stream: 'err', time: at(2), data: 'warn\n' },
        { seq: 2, stream: 'out', time: at(3), data: 'line 2\0\n' },
      ]);
      expect(step.rows[0]!.output_bytes).toBe(Buffer.byteLength(text!));
      const finished = await s.readStepOutput(taskId, 2);
      expect(finished.done).toBe(true);
      expect(finished.chunks.map((c) => c.data).join('')).toBe('line 1\nwarn\nline 2\0\n');
      expect((await s.readStepOutput(taskId, 2, 1)).chunks.map((c) => c.seq)).toEqual([2]);
      // late duplicate output after the end is ignored
      await s.stepOutput(taskId, 2, {
        leaseId,
        chunks: [{ seq: 2, stream: 'out', time: at(3), data: 'line 2\n' }],
      });
      expect((await s.readStepOutput(taskId, 2)).chunks).toHaveLength(3);
      await waitFor(() => changes.length >= 4, 2_000);
      await unfollow();
      // output for a step never started is refused
      await expect(s.stepOutput(taskId, 7, { leaseId, chunks: [] })).rejects.toMatchObject({ status: 400 });
    });

    it('keeps large output as segment objects, reads it back a page at a time, and compacts small output', async () => {
      const s = make(
        { leaseMs: 5_000 },
        { inlineSegmentMaxBytes: 200, compactMaxBytes: 2_000, readMaxBytes: 500 },
      );
      const { taskIds } = await enqueueJob(db, s.enqueue);
      const taskId = taskIds[0]!;
      const { leaseId } = (await s.claim(machineAgent, claimReq(['machine:*']), never))!;
      const time = new Date().toISOString();
      const store = t!.res.store;
      const listKeys = async (prefix: string) => {
        const keys: string[] = [];
        for await (const o of store.list(prefix)) keys.push(o.key);
        return keys;
      };
      const readAll = async (index: number) => {
        let after = -1;
        let text = '';
        let pages = 0;
        for (;;) {
          const page = await s.readStepOutput(taskId, index, after);
          pages++;
          text += page.chunks.map((c) => c.data).join('');
          after = page.chunks[page.chunks.length - 1]?.seq ?? after;
          if (!page.more) return { text, pages, done: page.done };
        }
      };

      // step 2: 12 requests, big ones (objects) and small ones (inline), 3 KB in all
      await s.stepStart(taskId, 2, { leaseId, name: 'loud', type: 'run', startedAt: time });
      let seq = 0;
      let expected = '';
      for (let r = 0; r < 12; r++) {
        const line = (r % 3 === 0 ? 'small ' : 'x'.repeat(250)) + `${r}\n`;
        expected += line;
        await s.stepOutput(taskId, 2, { leaseId, chunks: [{ seq: seq++, stream: 'out', time, data: line }] });
      }
      const inline = await db.query('SELECT 1 FROM output_segments WHERE task_id = $1 AND data IS NOT NULL', [
        taskId,
      ]);
      expect(inline.rowCount).toBe(4);
      expect((await listKeys(`output/${taskId}/2/`)).length).toBe(8);
      const live = await readAll(2);
      expect(live).toMatchObject({ text: expected, done: false });
      expect(live.pages).toBeGreaterThan(2);

      await s.stepEnd(taskId, 2, { leaseId, status: 'success', exitCode: 0, stoppedAt: time });
      const step = await db.query<{ output_key: string | null; output_bytes: string }>(
        'SELECT output_key, output_bytes FROM steps WHERE task_id = $1 AND step_index = 2',
        [taskId],
      );
      expect(step.rows[0]!.output_key).toBeNull();
      const segments = await db.query<{ data: string | null; object_key: string }>(
        'SELECT data, object_key FROM output_segments WHERE task_id = $1 AND step_index = 2 ORDER BY first_seq',
        [taskId],
      );
      // the inline segments were written out (each alone: objects sit between them)
      expect(segments.rows.every((r) => r.data === null)).toBe(true);
      expect(segments.rows.length).toBe(12);
      expect((await listKeys(`output/${taskId}/2/`)).sort()).toEqual(
        segments.rows.map((r) => r.object_key).sort(),
      );
      const finished = await readAll(2);
      expect(finished).toMatchObject({ text: expected, done: true });

      // step 3: a few small requests become one object, and the segments go
      await s.stepStart(taskId, 3, { leaseId, name: 'quiet', type: 'run', startedAt: time });
      for (let r = 0; r < 3; r++)
        await s.stepOutput(taskId, 3, {
          leaseId,
          chunks: [{ seq: r, stream: 'err', time, data: `q${r}\n` }],
        });
      await s.stepOutput(taskId, 3, {
        leaseId,
        chunks: [{ seq: 3, stream: 'out', time, data: 'y'.repeat(300) + '\n' }],
      });
      await s.stepEnd(taskId, 3, { leaseId, status: 'success', exitCode: 0, stoppedAt: time });
      const quiet = await db.query<{ output_key: string }>(
        'SELECT output_key FROM steps WHERE task_id = $1 AND step_index = 3',
        [taskId],
      );
      expect(await listKeys(`output/${taskId}/3/`)).toEqual([quiet.rows[0]!.output_key]);
      expect(
        (await db.query('SELECT 1 FROM output_segments WHERE task_id = $1 AND step_index = 3', [taskId]))
          .rowCount,
      ).toBe(0);
      expect(await readAll(3)).toMatchObject({ text: 'q0\nq1\nq2\n' + 'y'.repeat(300) + '\n', done: true });
    });

    it('stores a step reported in one request, readable by followers, and ignores a retried report', async () => {
      const s = make({ leaseMs: 5_000 });
      const { taskIds } = await enqueueJob(db, s.enqueue);
      const taskId = taskIds[0]!;
      const { leaseId } = (await s.claim(machineAgent, claimReq(['machine:*']), never))!;
      const changes: number[] = [];
      const unfollow = await s.followStep(taskId, 1, () => changes.push(Date.now()));
      const at = (ms: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, ms)).toISOString();
      const report = {
        leaseId,
        name: 'Preparing environment variables',
        type: 'env',
        startedAt: at(0),
        chunks: [
          { seq: 0, stream: 'out' as const, time: at(1), data: 'a\n' },
          { seq: 1, stream: 'err' as const, time: at(2), data: 'b\0\n' },
        ],
        status: 'failed' as const,
        exitCode: 4,
        stoppedAt: at(3),
      };
      await s.stepReport(taskId, 1, report);
      await s.stepReport(taskId, 1, { ...report, status: 'success', exitCode: 0 }); // retried: no-op
      const step = await db.query<{
        status: string;
        exit_code: number;
        output_key: string;
        output_bytes: number;
      }>(
        'SELECT status, exit_code, output_key, output_bytes FROM steps WHERE task_id = $1 AND step_index = 1',
        [taskId],
      );
      expect(step.rows[0]).toMatchObject({
        status: 'failed',
        exit_code: 4,
      });
      const text = await readObjectText(t!.res.store, step.rows[0]!.output_key);
      // the retried report wrote its object again and removed it: only the step's own is left
      const objects: string[] = [];
      for await (const o of t!.res.store.list(`output/${taskId}/1/`)) objects.push(o.key);
      expect(objects).toEqual([step.rows[0]!.output_key]);
      expect(step.rows[0]!.output_bytes).toBe(Buffer.byteLength(text!));
      expect((await db.query('SELECT 1 FROM output_segments WHERE task_id = $1', [taskId])).rowCount).toBe(0);
      const out = await s.readStepOutput(taskId, 1);
      expect(out.done).toBe(true);
      expect(out.chunks).toEqual([
        { seq: 0, stream: 'out', time: at(1), data: 'a\n' },
        { seq: 1, stream: 'err', time: at(2), data: 'b\0\n' },
      ]);
      expect((await s.readStepOutput(taskId, 1, 0)).chunks.map((c) => c.seq)).toEqual([1]);
      await waitFor(() => changes.length >= 1, 2_000);
      await unfollow();
      // a step with no output is stored without an object
      await s.stepReport(taskId, 0, { ...report, chunks: [], status: 'success', exitCode: 0 });
      expect(await s.readStepOutput(taskId, 0)).toEqual({ chunks: [], done: true, more: false });
    });

    it('calls onJobFinished once, with the aggregate outcome, when the last of 3 tasks completes', async () => {
      const s = make();
      const { jobId, taskIds } = await enqueueJob(db, s.enqueue, { parallelism: 3 });
      const leases = new Map<string, string>();
      for (let i = 0; i < 3; i++) {
        const c = (await s.claim(machineAgent, claimReq(['machine:*'], 0, `a${i}`), never))!;
        leases.set(c.task.taskId, c.leaseId);
      }
      const [t0, t1, t2] = taskIds as [string, string, string];
      await s.complete(t0, { leaseId: leases.get(t0)!, status: 'success' });
      await s.complete(t1, {
        leaseId: leases.get(t1)!,
        status: 'timedout',
        message: 'Too long with no output (exceeded 10m0s)',
      });
      expect(hooks.finished).toEqual([]);
      // two concurrent completions of the last task (a retry racing the original)
      await Promise.all([
        s.complete(t2, { leaseId: leases.get(t2)!, status: 'failed' }),
        s.complete(t2, { leaseId: leases.get(t2)!, status: 'failed' }),
      ]);
      await s.complete(t2, { leaseId: leases.get(t2)!, status: 'failed' });
      expect(hooks.finished).toEqual([{ jobId, outcome: 'timedout' }]);
      const job = await db.query<{ messages: { message: string }[] }>(
        'SELECT messages FROM jobs WHERE id = $1',
        [jobId],
      );
      expect(job.rows[0]!.messages.map((m) => m.message)).toEqual([
        'Too long with no output (exceeded 10m0s)',
      ]);
    });

    it('cancels a job: queued tasks at once, running ones through their agent', async () => {
      const s = make();
      const { jobId, taskIds } = await enqueueJob(db, s.enqueue, { parallelism: 2 });
      const c = (await s.claim(machineAgent, claimReq(['machine:*']), never))!;
      const result = await db.transaction((tx) => s.cancelJob(tx, jobId));
      expect(result).toEqual({ canceledTasks: 1, runningTasks: 1 });
      const rows = await db.query<{ id: string; status: string; cancel_requested: boolean }>(
        'SELECT id, status, cancel_requested FROM tasks WHERE job_id = $1 ORDER BY node_index',
        [jobId],
      );
      expect(rows.rows).toEqual([
        { id: taskIds[0], status: 'running', cancel_requested: true },
        { id: taskIds[1], status: 'canceled', cancel_requested: false },
      ]);
      expect(await s.claim(machineAgent, claimReq(['machine:*']), never)).toBeNull();
      expect((await s.heartbeat(c.task.taskId, c.leaseId)).cancel).toBe(true);
      await s.stepStart(c.task.taskId, 2, {
        leaseId: c.leaseId,
        name: 'sleep',
        type: 'run',
        startedAt: new Date().toISOString(),
      });
      await s.complete(c.task.taskId, { leaseId: c.leaseId, status: 'canceled' });
      expect(hooks.finished).toEqual([{ jobId, outcome: 'canceled' }]);
      // a step left running by the agent is closed with the task
      const step = await db.query<{ status: string }>('SELECT status FROM steps WHERE task_id = $1', [
        c.task.taskId,
      ]);
      expect(step.rows[0]!.status).toBe('canceled');

      // a job with nothing running: all canceled at once; the caller finalizes it (no hook)
      const other = await enqueueJob(db, s.enqueue);
      expect(await db.transaction((tx) => s.cancelJob(tx, other.jobId))).toEqual({
        canceledTasks: 1,
        runningTasks: 0,
      });
      expect(hooks.finished).toHaveLength(1);
    });

    it('explains why a queued job waits when no agent serves its resource class', async () => {
      const s = make();
      const docker = await enqueueJob(db, s.enqueue, { resourceClass: 'docker:medium' });
      const runner = await enqueueJob(db, s.enqueue, { resourceClass: 'myns/runner' });
      const machine = await enqueueJob(db, s.enqueue, { resourceClass: 'machine:large' });
      const [d] = await s.explainQueued(docker.jobId);
      expect(d).toMatchObject({ type: 'warning' });
      expect(d!.message).toMatch(
        /^No agent is serving resource class "docker:medium": the Docker executor is not available in this Torus release/,
      );
      const [r] = await s.explainQueued(runner.jobId);
      expect(r!.message).toContain(
        'torus agent --server http://127.0.0.1:8080 --token <token for myns/runner>',
      );
      expect(await s.explainQueued(machine.jobId)).toHaveLength(1);
      // an agent serving machine:* asks for work (and finds none of its own class queued … it takes machine:large)
      await s.claim(machineAgent, claimReq(['machine:medium']), never);
      expect(await s.explainQueued(machine.jobId)).toHaveLength(1);
      await s.claim(machineAgent, claimReq(['machine:*'], 0, 'agent-2'), never);
      expect(await s.explainQueued(machine.jobId)).toEqual([]); // running now: nothing to explain
      const machine2 = await enqueueJob(db, s.enqueue, { resourceClass: 'machine:large' });
      expect(await s.explainQueued(machine2.jobId)).toEqual([]); // queued, but agent-2 serves it
      // agents not seen for a minute do not count
      await db.query("UPDATE agents SET last_seen_at = now() - interval '2 minutes'");
      expect(await s.explainQueued(machine2.jobId)).toHaveLength(1);
    });

    it('authenticates agents by token, bound to a class or pattern', async () => {
      const s = make();
      const { id, token } = await s.createAgentToken('machine:*', 'local agents');
      expect(token).toMatch(/^torus_agent_[0-9a-f]{64}$/);
      expect(await s.authenticateAgent(token)).toEqual({ tokenId: id, resourceClass: 'machine:*' });
      expect(await s.authenticateAgent(token + 'x')).toBeNull();
      const stored = await db.query<{ token_hash: string }>(
        'SELECT token_hash FROM agent_tokens WHERE id = $1',
        [id],
      );
      expect(stored.rows[0]!.token_hash).not.toContain(token.slice(12));
      await db.query('UPDATE agent_tokens SET revoked_at = now() WHERE id = $1', [id]);
      // a token found valid is believed for AGENT_TOKEN_CACHE_MS, then asked about again
      expect(await s.authenticateAgent(token)).not.toBeNull();
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.now() + AGENT_TOKEN_CACHE_MS + 1);
        expect(await s.authenticateAgent(token)).toBeNull();
      } finally {
        vi.useRealTimers();
      }
      await expect(s.createAgentToken('ma*chine', 'x')).rejects.toMatchObject({ status: 400 });
    });
  });
}

describe('task states', () => {
  it('aggregates a job outcome from its tasks', () => {
    expect(aggregateOutcome(['success', 'success'])).toBe('success');
    expect(aggregateOutcome(['success', 'failed'])).toBe('failed');
    expect(aggregateOutcome(['failed', 'timedout'])).toBe('timedout');
    expect(aggregateOutcome(['timedout', 'infrastructure_fail', 'failed'])).toBe('infrastructure_fail');
    expect(aggregateOutcome(['infrastructure_fail', 'canceled'])).toBe('canceled');
    expect(isFinal('running')).toBe(false);
    expect(isFinal('queued')).toBe(false);
    expect(isFinal('canceled')).toBe(true);
  });
});
