// Many agents claiming at once on PostgreSQL (PGlite has one connection, so nothing to race there):
// every task is handed out exactly once, and each job reports "started" exactly once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresDatabase, type Database } from '../storage/index.js';
import { openTestDatabase } from '../../test/harness/db.js';
import { requirePart } from '../../test/harness/parts.js';
import { createScheduler, type Scheduler } from './index.js';
import { enqueueJob, recordingHooks, testResources, type TestResources } from './test-fixtures.js';

const CLAIMERS = 8;
const JOBS = 25;
const PARALLELISM = 8; // 200 tasks

describe.runIf(requirePart('postgres', 'concurrent claims on PostgreSQL'))(
  'concurrent claims on PostgreSQL',
  () => {
    let db: PostgresDatabase;
    const others: Database[] = [];
    const resources: TestResources[] = [];

    beforeAll(async () => {
      db = (await openTestDatabase('postgres')) as PostgresDatabase;
    });
    afterAll(async () => {
      for (const o of others) await o.close();
      for (const r of resources) r.cleanup();
      await db.close();
    });

    it(`gives each of ${JOBS * PARALLELISM} tasks to exactly one of ${CLAIMERS} claimers, and finishes each job once`, async () => {
      const hooks = recordingHooks();
      const url = db.pool.options.connectionString!;
      const schedulers: Scheduler[] = [];
      for (let i = 0; i < CLAIMERS; i++) {
        const own = await PostgresDatabase.open(url, 2);
        others.push(own);
        const r = testResources(own, { leaseMs: 60_000 });
        resources.push(r);
        schedulers.push(createScheduler(r.res, hooks));
      }
      const enqueuer = testResources(db);
      resources.push(enqueuer);
      const producer = createScheduler(enqueuer.res, hooks);
      const jobIds: string[] = [];
      // claimers start waiting first, then work arrives: they race for every task
      const claimed: { taskId: string; leaseId: string }[][] = schedulers.map(() => []);
      const runs = schedulers.map(async (s, i) => {
        for (;;) {
          const c = await s.claim(
            { tokenId: 't', resourceClass: '*' },
            { agentId: `agent-${i}`, resourceClasses: ['machine:*'], waitMs: 1_000 },
            new AbortController().signal,
          );
          if (!c) return;
          claimed[i]!.push({ taskId: c.task.taskId, leaseId: c.leaseId });
        }
      });
      for (let j = 0; j < JOBS; j++) {
        jobIds.push((await enqueueJob(db, producer.enqueue, { parallelism: PARALLELISM })).jobId);
      }
      await Promise.all(runs);

      const all = claimed.flat().map((c) => c.taskId);
      expect(all).toHaveLength(JOBS * PARALLELISM);
      expect(new Set(all).size).toBe(JOBS * PARALLELISM);
      // the work was shared, not taken by one claimer
      expect(claimed.filter((c) => c.length > 0).length).toBeGreaterThan(1);
      const rows = await db.query<{ status: string; n: number }>(
        'SELECT status, count(*)::int AS n FROM tasks GROUP BY status',
      );
      expect(rows.rows).toEqual([{ status: 'running', n: JOBS * PARALLELISM }]);
      expect([...hooks.started].sort()).toEqual([...jobIds].sort());

      // every claimer completes its tasks at once: each job finishes exactly once
      await Promise.all(
        schedulers.map((s, i) =>
          Promise.all(
            claimed[i]!.map((c) => s.complete(c.taskId, { leaseId: c.leaseId, status: 'success' })),
          ),
        ),
      );
      for (const s of schedulers) await s.stop();
      await producer.stop();
      expect(hooks.finished).toHaveLength(JOBS);
      expect(new Set(hooks.finished.map((f) => f.jobId)).size).toBe(JOBS);
      expect(hooks.finished.every((f) => f.outcome === 'success')).toBe(true);
    });
  },
);
