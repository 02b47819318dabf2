// Retention on both databases: what expires and what stays per kind, 0 = forever, batches, objects
// that are missing or fail to delete, two sweepers at once, the server's loop and `torus admin expire`.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import { freePort, waitFor } from '../../test/harness/net.js';
import { TORUS_BIN } from '../../test/harness/torus.js';
import {
  FsObjectStore,
  loadMigrations,
  migrate,
  PgliteDatabase,
  PostgresDatabase,
  type Database,
  type ObjectStore,
} from '../storage/index.js';
import { defaultSettings, loadSettings, randomIds, type Clock, type Settings } from '../ops/index.js';
import { startServer } from '../cli/server.js';
import { createBlobs, expireCommand, RetentionLoop, sweepExpiredBlobs, type ExpiryReport } from './index.js';

const DAY = 86_400_000;
const NOW = Date.parse('2026-03-01T12:00:00.000Z');

class FakeClock implements Clock {
  constructor(public ms: number) {}
  now(): Date {
    return new Date(this.ms);
  }
}

interface Job {
  projectId: string;
  jobId: string;
  workspaceId: string;
}

async function insertJob(db: Database): Promise<Job> {
  const [org, projectId, pipeline, workflow, jobId] = Array.from({ length: 5 }, () => randomUUID());
  const tag = org!.slice(0, 8);
  await db.query('INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $3)', [
    org,
    `o-${tag}`,
    `circleci/o-${tag}`,
  ]);
  await db.query(
    `INSERT INTO projects (id, org_id, name, slug, vcs_url) VALUES ($1, $2, 'p', $3, 'file:///none')`,
    [projectId, org, `circleci/o-${tag}/p`],
  );
  await db.query(
    `INSERT INTO pipelines (id, project_id, number, state, trigger_type) VALUES ($1, $2, 1, 'created', 'api')`,
    [pipeline, projectId],
  );
  await db.query(
    `INSERT INTO workflows (id, pipeline_id, project_id, name, status, workspace_id)
     VALUES ($1, $2, $3, 'build', 'success', $1)`,
    [workflow, pipeline, projectId],
  );
  await db.query(
    `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status)
     VALUES ($1, $2, $3, 'test', 'build', 1, 'success')`,
    [jobId, workflow, projectId],
  );
  return { projectId: projectId!, jobId: jobId!, workspaceId: workflow! };
}

const ago = (days: number, from = NOW) => new Date(from - days * DAY);

async function addArtifact(
  db: Database,
  store: ObjectStore,
  job: Job,
  path: string,
  ageDays: number,
  bytes: number,
  opts: { put?: boolean } = {},
): Promise<string> {
  const key = `artifacts/${job.jobId}/0/${path}`;
  if (opts.put !== false) await store.put(key, 'a'.repeat(bytes));
  await db.query(
    `INSERT INTO artifacts (job_id, node_index, path, task_id, object_key, size, created_at)
     VALUES ($1, 0, $2, $3, $4, $5, $6)`,
    [job.jobId, path, randomUUID(), key, bytes, ago(ageDays)],
  );
  return key;
}

/** `count` test cases from seq `from` on, stored `ageDays` ago */
async function addTestResults(db: Database, job: Job, from: number, count: number, ageDays: number) {
  await db.query(
    `INSERT INTO test_results (job_id, node_index, seq, name, classname, result, run_time, created_at)
     SELECT $1, 0, g, 'case ' || g, 'suite', 'success', 0.5, $4 FROM generate_series($2::int, $3::int) g`,
    [job.jobId, from, from + count - 1, ago(ageDays)],
  );
}

async function addCache(
  db: Database,
  store: ObjectStore,
  job: Job,
  cacheKey: string,
  ageDays: number,
  bytes: number,
): Promise<string> {
  const key = `caches/${job.projectId}/${randomUUID()}`;
  await store.put(key, 'c'.repeat(bytes));
  await db.query(
    `INSERT INTO caches (project_id, key, object_key, size, encoding, job_id, created_at)
     VALUES ($1, $2, $3, $4, 'zstd', $5, $6)`,
    [job.projectId, cacheKey, key, bytes, job.jobId, ago(ageDays)],
  );
  return key;
}

async function addLayer(
  db: Database,
  store: ObjectStore,
  job: Job,
  ageDays: number,
  bytes: number,
): Promise<string> {
  const id = randomUUID();
  const key = `workspaces/${job.workspaceId}/${id}`;
  await store.put(key, 'w'.repeat(bytes));
  await db.query(
    `INSERT INTO workspace_layers (id, workspace_id, job_id, node_index, object_key, size, encoding, created_at)
     VALUES ($1, $2, $3, 0, $4, $5, 'zstd', $6)`,
    [id, job.workspaceId, job.jobId, key, bytes, ago(ageDays)],
  );
  return key;
}

async function count(db: Database, table: string): Promise<number> {
  const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return r.rows[0]!.n;
}

/** The db, recording how many rows each DELETE of `table` removed. */
function recordingDeletes(db: Database, table: string): { db: Database; batches: number[] } {
  const batches: number[] = [];
  const spy: Database = {
    kind: db.kind,
    async query<R>(sql: string, params?: readonly unknown[]) {
      const r = await db.query<R>(sql, params);
      if (sql.includes(`DELETE FROM ${table} `)) batches.push(r.rows.length);
      return r;
    },
    transaction: (fn) => db.transaction(fn),
    listen: (c, f) => db.listen(c, f),
    notify: (c, p) => db.notify(c, p),
    close: () => db.close(),
  };
  return { db: spy, batches };
}

function logCollector(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: 'info' }, { write: (s: string) => void lines.push(s) }), lines };
}

describe.each(databaseKinds())('blob retention on %s', (kind) => {
  let db: Database;
  let dir: string;
  let store: FsObjectStore;
  let clock: FakeClock;
  let log: ReturnType<typeof logCollector>;

  beforeAll(async () => {
    db = await openTestDatabase(kind);
  });
  afterAll(async () => {
    await db?.close();
  });
  beforeEach(async () => {
    await db.query(
      'TRUNCATE artifacts, test_results, caches, workspace_layers, tasks, jobs, workflows, pipelines, projects, organizations CASCADE',
    );
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'torus-retention-'));
    store = new FsObjectStore(dir);
    clock = new FakeClock(NOW);
    log = logCollector();
  });

  function res(settings: Partial<Settings> = {}, over: { db?: Database; store?: ObjectStore } = {}) {
    return {
      db: over.db ?? db,
      store: over.store ?? store,
      clock,
      ids: randomIds,
      logger: log.logger,
      settings: { ...defaultSettings(), ...settings },
    };
  }

  it('removes each kind past its retention with its object, and keeps what is within it', async () => {
    const job = await insertJob(db);
    const oldArtifact = await addArtifact(db, store, job, 'logs/old.txt', 31, 100);
    const newArtifact = await addArtifact(db, store, job, 'logs/new.txt', 29, 50);
    await addTestResults(db, job, 0, 3, 31);
    await addTestResults(db, job, 3, 2, 29);
    const oldCache = await addCache(db, store, job, 'v1-deps-old', 16, 200);
    const newCache = await addCache(db, store, job, 'v1-deps-new', 14, 70);
    const oldLayer = await addLayer(db, store, job, 16, 300);
    const newLayer = await addLayer(db, store, job, 14, 30);

    const report = await sweepExpiredBlobs(res());
    expect(report).toEqual<ExpiryReport>({
      dryRun: false,
      at: new Date(NOW),
      complete: true,
      kinds: {
        artifacts: { retentionDays: 30, cutoff: ago(30), rows: 1, bytes: 100, objectErrors: 0 },
        testResults: { retentionDays: 30, cutoff: ago(30), rows: 3, bytes: 0, objectErrors: 0 },
        caches: { retentionDays: 15, cutoff: ago(15), rows: 1, bytes: 200, objectErrors: 0 },
        workspaceLayers: { retentionDays: 15, cutoff: ago(15), rows: 1, bytes: 300, objectErrors: 0 },
      },
    });
    expect((await db.query('SELECT path FROM artifacts')).rows).toEqual([{ path: 'logs/new.txt' }]);
    expect((await db.query('SELECT seq FROM test_results ORDER BY seq')).rows).toEqual([
      { seq: 3 },
      { seq: 4 },
    ]);
    expect((await db.query('SELECT key FROM caches')).rows).toEqual([{ key: 'v1-deps-new' }]);
    expect((await db.query('SELECT object_key FROM workspace_layers')).rows).toEqual([
      { object_key: newLayer },
    ]);
    for (const gone of [oldArtifact, oldCache, oldLayer]) expect(await store.head(gone)).toBeNull();
    for (const kept of [newArtifact, newCache, newLayer]) expect(await store.head(kept)).not.toBeNull();

    // nothing more now; two days on, what was within its retention has passed it
    expect(Object.values((await sweepExpiredBlobs(res())).kinds).map((k) => k.rows)).toEqual([0, 0, 0, 0]);
    clock.ms += 2 * DAY;
    const later = await sweepExpiredBlobs(res());
    expect(Object.values(later.kinds).map((k) => [k.rows, k.bytes])).toEqual([
      [1, 50],
      [2, 0],
      [1, 70],
      [1, 30],
    ]);
    for (const table of ['artifacts', 'test_results', 'caches', 'workspace_layers'])
      expect(await count(db, table)).toBe(0);
    for (const gone of [newArtifact, newCache, newLayer]) expect(await store.head(gone)).toBeNull();
  });

  it('keeps a kind forever when its retention is 0, and honours other retentions', async () => {
    const job = await insertJob(db);
    const artifact = await addArtifact(db, store, job, 'a.txt', 8, 10);
    await addTestResults(db, job, 0, 2, 8);
    const cache = await addCache(db, store, job, 'k', 3650, 10);
    const layer = await addLayer(db, store, job, 3650, 10);

    const report = await sweepExpiredBlobs(
      res({ artifactRetentionDays: 7, cacheRetentionDays: 0, workspaceRetentionDays: 0 }),
    );
    expect(report.kinds.artifacts).toMatchObject({ retentionDays: 7, rows: 1, bytes: 10 });
    expect(report.kinds.testResults).toMatchObject({ retentionDays: 7, rows: 2 });
    expect(report.kinds.caches).toEqual({
      retentionDays: 0,
      cutoff: null,
      rows: 0,
      bytes: 0,
      objectErrors: 0,
    });
    expect(report.kinds.workspaceLayers).toMatchObject({ retentionDays: 0, cutoff: null, rows: 0 });
    expect(await store.head(artifact)).toBeNull();
    expect(await count(db, 'caches')).toBe(1);
    expect(await count(db, 'workspace_layers')).toBe(1);
    expect(await store.head(cache)).not.toBeNull();
    expect(await store.head(layer)).not.toBeNull();
  });

  it('deletes in batches: never more rows per statement than the batch size', async () => {
    const job = await insertJob(db);
    const old: string[] = [];
    for (let i = 0; i < 25; i++) old.push(await addArtifact(db, store, job, `old/${i}.txt`, 40 + i, 4));
    for (let i = 0; i < 3; i++) await addArtifact(db, store, job, `new/${i}.txt`, 1, 4);
    const spy = recordingDeletes(db, 'artifacts');
    const report = await sweepExpiredBlobs(res({}, { db: spy.db }), { batchSize: 7 });
    expect(spy.batches).toEqual([7, 7, 7, 4]);
    expect(report.kinds.artifacts).toMatchObject({ rows: 25, bytes: 100, objectErrors: 0 });
    expect(await count(db, 'artifacts')).toBe(3);
    for (const key of old) expect(await store.head(key)).toBeNull();

    // the default batch, with more test results than one batch holds
    await addTestResults(db, job, 0, 1203, 31);
    await addTestResults(db, job, 1203, 5, 2);
    const spy2 = recordingDeletes(db, 'test_results');
    const r2 = await sweepExpiredBlobs(res({}, { db: spy2.db }));
    expect(spy2.batches).toEqual([500, 500, 203]);
    expect(r2.kinds.testResults.rows).toBe(1203);
    expect(await count(db, 'test_results')).toBe(5);
  });

  it('goes on past a missing object and past one that fails to delete (logged, left as an orphan)', async () => {
    const job = await insertJob(db);
    await addArtifact(db, store, job, 'never-written.txt', 31, 11, { put: false });
    const failing = await addArtifact(db, store, job, 'stuck.txt', 31, 12);
    const fine = await addArtifact(db, store, job, 'fine.txt', 31, 13);
    const cache = await addCache(db, store, job, 'k', 16, 14);
    const flaky: ObjectStore = {
      put: (k, b) => store.put(k, b),
      get: (k) => store.get(k),
      head: (k) => store.head(k),
      list: (p) => store.list(p),
      delete: async (k) => {
        if (k === failing) throw new Error('AccessDenied: simulated');
        await store.delete(k);
      },
    };
    const report = await sweepExpiredBlobs(res({}, { store: flaky }));
    expect(report.kinds.artifacts).toMatchObject({ rows: 3, bytes: 11 + 13, objectErrors: 1 });
    expect(report.kinds.caches).toMatchObject({ rows: 1, bytes: 14, objectErrors: 0 });
    expect(await count(db, 'artifacts')).toBe(0);
    expect(await count(db, 'caches')).toBe(0);
    expect(await store.head(fine)).toBeNull();
    expect(await store.head(cache)).toBeNull();
    expect(await store.head(failing)).not.toBeNull();
    const warning = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.objectKey);
    expect(warning).toMatchObject({ level: 40, objectKey: failing, kind: 'artifacts' });
    expect(warning!.msg).toMatch(/could not delete an expired object/);
  });

  it('counts without removing in a dry run', async () => {
    const job = await insertJob(db);
    const a = await addArtifact(db, store, job, 'a.txt', 31, 100);
    await addTestResults(db, job, 0, 4, 31);
    await addCache(db, store, job, 'k', 16, 20);
    const report = await sweepExpiredBlobs(res(), { dryRun: true });
    expect(report.dryRun).toBe(true);
    expect(Object.values(report.kinds).map((k) => [k.rows, k.bytes])).toEqual([
      [1, 100],
      [4, 0],
      [1, 20],
      [0, 0],
    ]);
    expect(await count(db, 'artifacts')).toBe(1);
    expect(await count(db, 'test_results')).toBe(4);
    expect(await count(db, 'caches')).toBe(1);
    expect(await store.head(a)).not.toBeNull();
  });

  it('splits the work between two sweepers running at once: every row counted once', async () => {
    const job = await insertJob(db);
    const keys: string[] = [];
    for (let i = 0; i < 120; i++) keys.push(`artifacts/${job.jobId}/0/f${i}`);
    await Promise.all(keys.map((k) => store.put(k, 'xyz')));
    await db.query(
      `INSERT INTO artifacts (job_id, node_index, path, task_id, object_key, size, created_at)
       SELECT $1::uuid, 0, 'f' || g, $2::uuid, 'artifacts/' || $1::text || '/0/f' || g, 3, $3
       FROM generate_series(0, 119) g`,
      [job.jobId, randomUUID(), ago(31)],
    );
    await addTestResults(db, job, 0, 600, 31);
    // on PostgreSQL a second connection pool, as a second server replica has; PGlite has one connection
    const other =
      db instanceof PostgresDatabase
        ? await PostgresDatabase.open(db.pool.options.connectionString!)
        : undefined;
    try {
      const [a, b] = await Promise.all([
        sweepExpiredBlobs(res(), { batchSize: 10 }),
        sweepExpiredBlobs(res({}, { db: other ?? db }), { batchSize: 10 }),
      ]);
      expect(a.kinds.artifacts.rows + b.kinds.artifacts.rows).toBe(120);
      expect(a.kinds.artifacts.bytes + b.kinds.artifacts.bytes).toBe(360);
      expect(a.kinds.testResults.rows + b.kinds.testResults.rows).toBe(600);
      expect(a.kinds.artifacts.objectErrors + b.kinds.artifacts.objectErrors).toBe(0);
    } finally {
      await other?.close();
    }
    expect(await count(db, 'artifacts')).toBe(0);
    expect(await count(db, 'test_results')).toBe(0);
    for (const k of keys) expect(await store.head(k)).toBeNull();
  });

  it('expires test results stored through the blobs module by the time they were stored', async () => {
    const job = await insertJob(db);
    const taskId = randomUUID();
    const leaseId = randomUUID();
    await db.query(
      `INSERT INTO tasks (id, job_id, node_index, resource_class, status, lease_id, lease_expires_at, spec)
       VALUES ($1, $2, 0, 'machine:medium', 'running', $3, $4, '{}')`,
      [taskId, job.jobId, leaseId, new Date(NOW + 60_000)],
    );
    const blobs = createBlobs(res());
    const task = await blobs.task(taskId, leaseId);
    await blobs.putTestResults(task, [
      { name: 'a', classname: 'c', result: 'success', runTime: 1 },
      { name: 'b', classname: 'c', result: 'failure', runTime: 2 },
    ]);
    const stored = await db.query<{ created_at: Date }>('SELECT created_at FROM test_results');
    expect(stored.rows.map((r) => r.created_at)).toEqual([new Date(NOW), new Date(NOW)]);
    clock.ms += 30 * DAY;
    expect((await sweepExpiredBlobs(res())).kinds.testResults.rows).toBe(0);
    clock.ms += 1;
    expect((await sweepExpiredBlobs(res())).kinds.testResults.rows).toBe(2);
  });

  it('runs in the server: a sweep at start and one every interval, none after stop', async () => {
    const job = await insertJob(db);
    await addArtifact(db, store, job, 'first.txt', 31, 1);
    const loop = new RetentionLoop(res(), { intervalMs: 40 });
    loop.start();
    try {
      await waitFor(async () => (await count(db, 'artifacts')) === 0, 10_000);
      await addArtifact(db, store, job, 'second.txt', 31, 1);
      await waitFor(async () => (await count(db, 'artifacts')) === 0, 10_000);
    } finally {
      await loop.stop();
    }
    expect(log.lines.some((l) => l.includes('removed what was past its retention'))).toBe(true);
    await addArtifact(db, store, job, 'after-stop.txt', 31, 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(await count(db, 'artifacts')).toBe(1);

    // retention 0 everywhere: the loop does not run at all
    const idle = new RetentionLoop(
      res({ artifactRetentionDays: 0, cacheRetentionDays: 0, workspaceRetentionDays: 0 }),
      { intervalMs: 10 },
    );
    idle.start();
    await new Promise((r) => setTimeout(r, 100));
    await idle.stop();
    expect(await count(db, 'artifacts')).toBe(1);
  });

  it('stops between batches: stop() waits for the batch under way and no other starts', async () => {
    const job = await insertJob(db);
    for (let i = 0; i < 5; i++) await addArtifact(db, store, job, `f${i}`, 31 + i, 1);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let deleting = false;
    const slow: ObjectStore = {
      put: (k, b) => store.put(k, b),
      get: (k) => store.get(k),
      head: (k) => store.head(k),
      list: (p) => store.list(p),
      delete: async (k) => {
        deleting = true;
        await gate;
        await store.delete(k);
      },
    };
    const loop = new RetentionLoop(res({}, { store: slow }), { intervalMs: 10, batchSize: 2 });
    loop.start();
    await waitFor(() => deleting);
    let stopped = false;
    const stopping = loop.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).toBe(false);
    release();
    await stopping;
    // the first batch's rows and objects are gone; the rest waits for the next start
    expect(await count(db, 'artifacts')).toBe(3);
    expect((await db.query('SELECT path FROM artifacts ORDER BY path')).rows).toEqual([
      { path: 'f0' },
      { path: 'f1' },
      { path: 'f2' },
    ]);
    expect(await store.head(`artifacts/${job.jobId}/0/f4`)).toBeNull();
  });

  it('`torus admin expire` prints what it removed per kind', async () => {
    const job = await insertJob(db);
    await addArtifact(db, store, job, 'big.bin', 31, 3 * 1024 * 1024);
    await addArtifact(db, store, job, 'small.txt', 45, 100);
    await addTestResults(db, job, 0, 7, 31);
    await addCache(db, store, job, 'k', 20, 2048);
    const settings = { ...defaultSettings(), workspaceRetentionDays: 0 };
    const lines: string[] = [];
    const dry = await expireCommand({
      settings,
      dryRun: true,
      print: (l) => lines.push(l),
      db,
      store,
      clock,
      logger: log.logger,
    });
    expect(dry.kinds.artifacts.rows).toBe(2);
    expect(lines).toEqual([
      'Dry run: nothing removed. Retention sweep at 2026-03-01T12:00:00.000Z',
      '  artifacts: would remove 2, 3.0 MiB (3145828 bytes); older than 30 days (before 2026-01-30T12:00:00.000Z)',
      '  test results: would remove 7 (database rows); older than 30 days (before 2026-01-30T12:00:00.000Z)',
      '  caches: would remove 1, 2.0 KiB (2048 bytes); older than 15 days (before 2026-02-14T12:00:00.000Z)',
      '  workspace layers: kept forever (retention 0)',
      '  total: would remove 10, 3.0 MiB (3147876 bytes)',
    ]);
    lines.length = 0;
    await expireCommand({ settings, dryRun: false, print: (l) => lines.push(l), db, store, clock });
    expect(lines[0]).toBe('Retention sweep at 2026-03-01T12:00:00.000Z');
    expect(lines[1]).toMatch(/^ {2}artifacts: removed 2, 3\.0 MiB \(3145828 bytes\); older than 30 days/);
    expect(lines[5]).toBe('  total: removed 10, 3.0 MiB (3147876 bytes)');
    expect(await count(db, 'artifacts')).toBe(0);
  });
});

describe('migration 009 (blob retention)', () => {
  it("dates test results stored before it by their job's end, else start, else creation", async () => {
    const db = await PgliteDatabase.open();
    try {
      const all = loadMigrations();
      await migrate(
        db,
        all.filter((m) => m.version < 9),
      );
      const stopped = await insertJob(db);
      const started = await insertJob(db);
      const created = await insertJob(db);
      await db.query(`UPDATE jobs SET created_at = '2025-12-31T23:00:00Z' WHERE id = $1`, [created.jobId]);
      await db.query(
        `UPDATE jobs SET started_at = '2026-01-01T10:00:00Z', stopped_at = '2026-01-01T10:05:00Z'
        WHERE id = $1`,
        [stopped.jobId],
      );
      await db.query(`UPDATE jobs SET started_at = '2026-01-02T08:00:00Z' WHERE id = $1`, [started.jobId]);
      for (const job of [stopped, started, created]) {
        await db.query(
          `INSERT INTO test_results (job_id, node_index, seq, name, classname, result, run_time)
           VALUES ($1, 0, 0, 'a', 'c', 'success', 1)`,
          [job.jobId],
        );
      }
      await migrate(db, all);
      const { rows } = await db.query<{ job_id: string; created_at: Date }>(
        'SELECT job_id, created_at FROM test_results',
      );
      expect(new Map(rows.map((r) => [r.job_id, r.created_at.toISOString()]))).toEqual(
        new Map([
          [stopped.jobId, '2026-01-01T10:05:00.000Z'],
          [started.jobId, '2026-01-02T08:00:00.000Z'],
          [created.jobId, '2025-12-31T23:00:00.000Z'],
        ]),
      );
      await expect(
        db.query(`UPDATE test_results SET created_at = NULL WHERE job_id = $1`, [stopped.jobId]),
      ).rejects.toThrow(/null value/);
    } finally {
      await db.close();
    }
  });
});

describe('retention settings', () => {
  // an empty settings file: no torus.yaml of the working directory interferes
  let clean: { TORUS_CONFIG: string };
  let emptyDir: string;
  beforeAll(() => {
    emptyDir = mkdtempSync(join(tmpdir(), 'torus-settings-'));
    clean = { TORUS_CONFIG: join(emptyDir, 'torus.yaml') };
    writeFileSync(clean.TORUS_CONFIG, '');
  });
  afterAll(() => rmSync(emptyDir, { recursive: true, force: true }));

  it('default to CircleCI Server’s 30 / 15 / 15 days and an hourly sweep', () => {
    const s = defaultSettings();
    expect([s.artifactRetentionDays, s.cacheRetentionDays, s.workspaceRetentionDays]).toEqual([30, 15, 15]);
    expect(s.retentionSweepMs).toBe(3_600_000);
  });

  it('are read from the environment and torus.yaml, the environment winning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'torus-settings-'));
    try {
      const file = join(dir, 'torus.yaml');
      writeFileSync(
        file,
        'artifact_retention_days: 90\ncache_retention_days: 0\nworkspace_retention_days: 3\nretention_sweep_ms: 60000\n',
      );
      const s = loadSettings({ TORUS_CONFIG: file, TORUS_WORKSPACE_RETENTION_DAYS: '7' });
      expect([s.artifactRetentionDays, s.cacheRetentionDays, s.workspaceRetentionDays]).toEqual([90, 0, 7]);
      expect(s.retentionSweepMs).toBe(60_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuse what is not a whole number of days or a sensible interval, saying what is allowed', () => {
    expect(() => loadSettings({ ...clean, TORUS_ARTIFACT_RETENTION_DAYS: '-1' })).toThrow(
      'TORUS_ARTIFACT_RETENTION_DAYS must be an integer ≥ 0, got "-1"',
    );
    expect(() => loadSettings({ ...clean, TORUS_CACHE_RETENTION_DAYS: '1.5' })).toThrow(
      'TORUS_CACHE_RETENTION_DAYS must be an integer ≥ 0, got "1.5"',
    );
    expect(() => loadSettings({ ...clean, TORUS_WORKSPACE_RETENTION_DAYS: '99999' })).toThrow(
      'TORUS_WORKSPACE_RETENTION_DAYS must be at most 36500 days, got 99999; use 0 to keep forever',
    );
    expect(() => loadSettings({ ...clean, TORUS_RETENTION_SWEEP_MS: '10' })).toThrow(
      'TORUS_RETENTION_SWEEP_MS must be an integer ≥ 1000, got "10"',
    );
  });
});

describe('`torus admin expire` on the embedded database', () => {
  it('refuses while a server answers at the configured URL (the data directory is one process’s)', async () => {
    const server = createServer((req, reply) => {
      reply.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'application/json' });
      reply.end('{"status":"ok"}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    const dataDir = mkdtempSync(join(tmpdir(), 'torus-expire-'));
    try {
      const settings = { ...defaultSettings(), dataDir, url: `http://127.0.0.1:${port}` };
      await expect(expireCommand({ settings, dryRun: true, print: () => {} })).rejects.toThrow(
        `a Torus server is running at http://127.0.0.1:${port}`,
      );
      expect(existsSync(join(dataDir, 'pg'))).toBe(false);
    } finally {
      server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  /** A data directory as a stopped embedded server leaves it, with one expired artifact (`key`) and a fresh one. */
  async function dataDirWithExpiredArtifact(dataDir: string): Promise<{ store: FsObjectStore; key: string }> {
    const mem = await openTestDatabase('pglite');
    const store = new FsObjectStore(join(dataDir, 'objects'));
    const job = await insertJob(mem);
    const now = Date.now();
    const key = `artifacts/${job.jobId}/0/report.html`;
    await store.put(key, 'x'.repeat(100));
    await mem.query(
      `INSERT INTO artifacts (job_id, node_index, path, task_id, object_key, size, created_at)
       VALUES ($1, 0, 'report.html', $2, $3, 100, $4), ($1, 0, 'fresh.txt', $2, $5, 5, $6)`,
      [
        job.jobId,
        randomUUID(),
        key,
        new Date(now - 31 * DAY),
        `artifacts/${job.jobId}/0/fresh.txt`,
        new Date(now),
      ],
    );
    const dump = await (mem as PgliteDatabase).dump();
    await mem.close();
    mkdirSync(join(dataDir, 'pg'), { recursive: true });
    await (await PgliteDatabase.open(join(dataDir, 'pg'), dump)).close();
    return { store, key };
  }

  it('is swept by the server from its start, the loop stopped before the database closes', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'torus-expire-'));
    try {
      const { store, key } = await dataDirWithExpiredArtifact(dataDir);
      const server = await startServer({
        ...defaultSettings(),
        dataDir,
        port: 0,
        url: 'http://127.0.0.1:0',
        localAgents: 0,
        logLevel: 'silent',
      });
      try {
        await waitFor(async () => (await store.head(key)) === null, 20_000);
        const left = await server.res.db.query<{ path: string }>('SELECT path FROM artifacts');
        expect(left.rows).toEqual([{ path: 'fresh.txt' }]);
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('runs from the command line: --dry-run counts, then a sweep removes', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'torus-expire-'));
    try {
      const { store, key } = await dataDirWithExpiredArtifact(dataDir);

      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        TORUS_DATA_DIR: dataDir,
        TORUS_PORT: String(await freePort()),
        TORUS_LOG_LEVEL: 'warn',
      };
      const dry = await runTorus(['admin', 'expire', '--dry-run'], dataDir, env);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toMatch(/^Dry run: nothing removed\. Retention sweep at /);
      expect(dry.stdout).toContain('  artifacts: would remove 1, 100 bytes; older than 30 days');
      expect(await store.head(key)).not.toBeNull();

      const run = await runTorus(['admin', 'expire'], dataDir, env);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('  artifacts: removed 1, 100 bytes; older than 30 days');
      expect(run.stdout).toContain('  total: removed 1, 100 bytes');
      expect(await store.head(key)).toBeNull();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});

function runTorus(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [TORUS_BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
