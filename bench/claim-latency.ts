// Claim latency: a task is queued (its enqueue transaction commits) → an idle agent, waiting in a
// long-poll claim over HTTP, receives it. p50 and p99 over 500 tasks on PGlite, through the real
// agent routes, LISTEN/NOTIFY wake-up and SKIP LOCKED claim.
import Fastify from 'fastify';
import { randomUUID } from 'node:crypto';
import { PgliteDatabase, migrate } from '../src/storage/index.js';
import { AGENT_API_PREFIX, createScheduler, type ClaimResponse } from '../src/scheduler/index.js';
import { agentRoutes } from '../src/api/agent-routes.js';
import { insertJob, recordingHooks, taskSpec, testResources } from '../src/scheduler/test-fixtures.js';
import { fmt, percentile } from './lib.js';

const TASKS = Number(process.env.BENCH_CLAIMS ?? 500);
const WARMUP = 20;

export async function benchClaimLatency(): Promise<{ n: number; p50: number; p99: number }> {
  const db = await PgliteDatabase.open();
  await migrate(db);
  const { res, cleanup } = testResources(db, { leaseMs: 60_000, heartbeatMs: 10_000 });
  const scheduler = createScheduler(res, recordingHooks());
  scheduler.start();
  const app = Fastify();
  await app.register(agentRoutes(scheduler), { prefix: AGENT_API_PREFIX });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}${AGENT_API_PREFIX}`;
  const { token } = await scheduler.createAgentToken('machine:*', 'bench');
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const agentId = randomUUID();

  const claim = async (): Promise<ClaimResponse | null> => {
    const r = await fetch(`${base}/claim`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ agentId, resourceClasses: ['machine:medium'], waitMs: 30_000 }),
    });
    return r.status === 200 ? ((await r.json()) as ClaimResponse) : null;
  };

  const samples: number[] = [];
  for (let i = 0; i < TASKS + WARMUP; i++) {
    const jobId = await insertJob(db);
    const pending = claim(); // the agent is idle, waiting
    await new Promise((r) => setTimeout(r, 3)); // let the claim reach its wait
    const t0 = performance.now();
    await db.transaction((tx) =>
      scheduler.enqueue(tx, { jobId, resourceClass: 'machine:medium', specs: [taskSpec(jobId)] }),
    );
    const got = await pending;
    const t1 = performance.now();
    if (!got) throw new Error('claim returned nothing');
    if (i >= WARMUP) samples.push(t1 - t0);
    await fetch(`${base}/tasks/${got.task.taskId}/complete`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ leaseId: got.leaseId, status: 'success' }),
    });
  }
  await app.close();
  await scheduler.stop();
  await db.close();
  cleanup();
  return { n: samples.length, p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchClaimLatency();
  console.log(
    `claim latency over ${r.n} tasks: p50 ${fmt(r.p50)} (target ≤ 20 ms), p99 ${fmt(r.p99)} (target ≤ 100 ms)`,
  );
}
