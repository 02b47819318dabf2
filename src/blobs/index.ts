// Blobs: what jobs store besides their output — artifacts, test results (and the timings read back
// from them), caches and workspace layers. Bytes stream into the ObjectStore; a row (tables in
// storage/migrations/006_blobs.sql) is written only once its object is complete and while the
// uploading task still holds its lease, so a lost or incomplete upload leaves no row.
import type { Readable } from 'node:stream';
import type { Queryable } from '../storage/index.js';
import { TorusError, type Resources } from '../ops/index.js';

export {
  sweepExpiredBlobs,
  RetentionLoop,
  expireCommand,
  formatExpiryReport,
  RETENTION_BATCH,
  type BlobKind,
  type KindExpiry,
  type ExpiryReport,
  type SweepOptions,
  type ExpireCommandOptions,
} from './retention.js';

/** A test case as the agent parses it from JUnit XML (the shape of CircleCI's /tests items). */
export interface TestCase {
  name: string;
  classname: string;
  file?: string;
  result: 'success' | 'failure' | 'error' | 'skipped';
  message?: string;
  /** seconds */
  runTime: number;
  /** the tool that wrote the report, when the agent knows it */
  source?: string;
}

export type BlobEncoding = 'zstd' | 'gzip' | 'none';
export const BLOB_ENCODINGS: readonly BlobEncoding[] = ['zstd', 'gzip', 'none'];
/** CircleCI's limit on cache keys */
export const MAX_CACHE_KEY = 900;
const MAX_ARTIFACT_PATH = 900;

/** The task an agent request is about, with what blob bookkeeping needs of its job. */
export interface BlobTask {
  taskId: string;
  jobId: string;
  jobName: string;
  nodeIndex: number;
  projectId: string;
  workflowId: string;
  workspaceId: string;
  branch: string | null;
  defaultBranch: string;
}

export interface StoredBlob {
  stream: Readable;
  size: number;
  encoding: BlobEncoding;
}

export interface WorkspaceLayer {
  id: string;
  jobName: string;
  size: number;
  encoding: BlobEncoding;
}

export interface ArtifactRow {
  node_index: number;
  path: string;
  size: number;
}

export interface TestResultRow {
  name: string;
  classname: string;
  file: string | null;
  result: string;
  message: string | null;
  run_time: number;
  source: string;
}

/**
 * The stored form of an artifact destination: '/'-separated, leading '/' and './' and empty
 * segments dropped; '..' segments, NUL and control characters refused (400).
 */
export function artifactPath(raw: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw)) {
    throw new TorusError('TORUS_E_BAD_REQUEST', 'artifact path must not contain control characters');
  }
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `artifact path ${JSON.stringify(raw)} has a '..' segment: paths must stay inside the job's artifacts`,
    );
  }
  const path = parts.join('/');
  if (path === '') throw new TorusError('TORUS_E_BAD_REQUEST', 'artifact path is empty');
  if (path.length > MAX_ARTIFACT_PATH) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `artifact path is ${path.length} characters long; at most ${MAX_ARTIFACT_PATH} allowed`,
    );
  }
  return path;
}

export function artifactObjectKey(jobId: string, nodeIndex: number, path: string): string {
  return `artifacts/${jobId}/${nodeIndex}/${path}`;
}

function leaseLost(taskId: string, why: string): TorusError {
  return new TorusError(
    'TORUS_E_LEASE_LOST',
    `the lease on task ${taskId} is no longer held (${why}); stop working on it`,
  );
}

interface TaskLeaseRow {
  status: string;
  lease_id: string | null;
  lease_expires_at: Date | null;
}

/** Checks `leaseId` is the task's live lease (as the scheduler does); throws 404 / 409. */
async function checkLease(
  q: Queryable,
  taskId: string,
  leaseId: string,
  now: Date,
  lock: '' | 'FOR SHARE' = '',
): Promise<void> {
  const r = await q.query<TaskLeaseRow>(
    `SELECT status, lease_id, lease_expires_at FROM tasks WHERE id = $1 ${lock}`,
    [taskId],
  );
  const row = r.rows[0];
  if (!row) throw new TorusError('TORUS_E_NOT_FOUND', `task ${taskId} not found`);
  if (row.lease_id !== leaseId) {
    throw leaseLost(
      taskId,
      row.status === 'queued'
        ? 'the task was re-queued'
        : row.status === 'running'
          ? 'another agent holds it now'
          : `the task is already ${row.status}`,
    );
  }
  if (row.status !== 'running') throw leaseLost(taskId, `the task is already ${row.status}`);
  if (!row.lease_expires_at || row.lease_expires_at.getTime() <= now.getTime()) {
    throw leaseLost(taskId, 'the lease expired');
  }
}

export interface Blobs {
  /** The task of an agent request, after checking its lease (404 unknown task, 409 lease lost). */
  task(taskId: string, leaseId: string): Promise<BlobTask & { leaseId: string }>;

  putArtifact(task: LeasedTask, rawPath: string, body: Readable): Promise<{ path: string; size: number }>;
  putTestResults(task: LeasedTask, tests: TestCase[]): Promise<{ count: number }>;
  /** Results of the latest finished run of this job name: same branch first, then the default branch. */
  testTimings(task: BlobTask): Promise<{ source: 'branch' | 'default-branch' | 'none'; tests: TestCase[] }>;

  /**
   * For each key in order: the exact key, else the newest key it prefixes; null when none matches.
   * `file`: the archive's file, for an agent on the store's machine (a filesystem store only).
   */
  lookupCache(task: BlobTask, keys: string[], opts?: { file?: boolean }): Promise<FoundCache | null>;
  getCache(task: BlobTask, key: string): Promise<StoredBlob | null>;
  /**
   * Where an agent on the store's machine writes a new cache archive itself (then putCache with
   * `{file}`); null when the store's objects are not files here.
   */
  stageCache(task: LeasedTask): Promise<string | null>;
  /**
   * 'exists' when the key was already saved (caches are immutable; the body is then not stored,
   * a staged file is removed)
   */
  putCache(
    task: LeasedTask,
    key: string,
    encoding: BlobEncoding,
    body: Readable | { file: string },
  ): Promise<'created' | 'exists'>;

  putWorkspaceLayer(
    task: LeasedTask,
    encoding: BlobEncoding,
    body: Readable,
  ): Promise<{ layerId: string; size: number }>;
  /** Layers of this job's upstream jobs (transitively), in graph order, each job's in upload order. */
  workspaceLayers(task: BlobTask): Promise<WorkspaceLayer[]>;
  getWorkspaceLayer(task: BlobTask, layerId: string): Promise<StoredBlob | null>;

  // ---- reads for the API ----
  listArtifacts(jobId: string, page: { offset: number; limit: number }): Promise<ArtifactRow[]>;
  openArtifact(
    jobId: string,
    nodeIndex: number,
    path: string,
  ): Promise<{ stream: Readable; size: number } | null>;
  listTestResults(jobId: string, page: { offset: number; limit: number }): Promise<TestResultRow[]>;
}

export type LeasedTask = BlobTask & { leaseId: string };

export interface FoundCache {
  key: string;
  size: number;
  encoding: BlobEncoding;
  file?: string;
}

interface JobGraphRow {
  id: string;
  name: string;
  requires: Array<{ name: string }> | null;
  position: number;
  copied_from: string | null;
}

/** Upstream jobs of `jobName` (transitively), topologically ordered; ties by position, then name. */
export function upstreamInGraphOrder<
  J extends { name: string; requires: Array<{ name: string }> | null; position: number },
>(jobs: J[], jobName: string): J[] {
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const reqs = (j: J) =>
    (Array.isArray(j.requires) ? j.requires.map((r) => r.name) : []).filter((n) => byName.has(n));
  const upstream = new Set<string>();
  const stack = [...reqs(byName.get(jobName) ?? ({ requires: [] } as unknown as J))];
  while (stack.length) {
    const n = stack.pop()!;
    if (upstream.has(n)) continue;
    upstream.add(n);
    stack.push(...reqs(byName.get(n)!));
  }
  const order = (a: J, b: J) => a.position - b.position || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const pending = jobs.filter((j) => upstream.has(j.name)).sort(order);
  const done = new Set<string>();
  const out: J[] = [];
  while (pending.length) {
    const i = pending.findIndex((j) => reqs(j).every((r) => !upstream.has(r) || done.has(r)));
    // a cycle cannot be compiled; take the rest in position order rather than loop
    const next = pending.splice(i < 0 ? 0 : i, 1)[0]!;
    done.add(next.name);
    out.push(next);
  }
  return out;
}

function encodingOf(v: string): BlobEncoding {
  return (BLOB_ENCODINGS as readonly string[]).includes(v) ? (v as BlobEncoding) : 'none';
}

export function createBlobs(res: Resources): Blobs {
  const { db, store, clock, ids } = res;

  /** Writes the row in a transaction that re-checks the lease; on any failure the object goes. */
  async function commit<T>(
    task: LeasedTask,
    objectKey: string,
    write: (tx: Queryable) => Promise<T>,
    /** rows that point at the object (a replaced artifact), removed with it so no row points at nothing */
    dropRows?: string,
  ): Promise<T> {
    try {
      return await db.transaction(async (tx) => {
        await checkLease(tx, task.taskId, task.leaseId, clock.now(), 'FOR SHARE');
        return write(tx);
      });
    } catch (err) {
      try {
        if (dropRows) await db.query(dropRows, [objectKey]);
        await store.delete(objectKey);
      } catch (e) {
        res.logger.warn({ err: e, objectKey }, 'could not delete the object of a refused upload');
      }
      throw err;
    }
  }

  const openStored = async (
    objectKey: string,
    size: number,
    encoding: string,
  ): Promise<StoredBlob | null> => {
    const stream = await store.get(objectKey);
    return stream ? { stream, size: Number(size), encoding: encodingOf(encoding) } : null;
  };

  return {
    async task(taskId, leaseId) {
      await checkLease(db, taskId, leaseId, clock.now());
      const r = await db.query<{
        job_id: string;
        job_name: string;
        node_index: number;
        project_id: string;
        workflow_id: string;
        workspace_id: string;
        branch: string | null;
        default_branch: string;
      }>(
        `SELECT t.job_id, j.name AS job_name, t.node_index, j.project_id, j.workflow_id, w.workspace_id, p.branch,
           pr.default_branch
         FROM tasks t JOIN jobs j ON j.id = t.job_id JOIN workflows w ON w.id = j.workflow_id
         JOIN pipelines p ON p.id = w.pipeline_id JOIN projects pr ON pr.id = j.project_id WHERE t.id = $1`,
        [taskId],
      );
      const t = r.rows[0];
      if (!t) throw new TorusError('TORUS_E_NOT_FOUND', `task ${taskId} not found`);
      return {
        taskId,
        leaseId,
        jobId: t.job_id,
        jobName: t.job_name,
        nodeIndex: t.node_index,
        projectId: t.project_id,
        workflowId: t.workflow_id,
        workspaceId: t.workspace_id,
        branch: t.branch,
        defaultBranch: t.default_branch,
      };
    },

    async putArtifact(task, rawPath, body) {
      const path = artifactPath(rawPath);
      const objectKey = artifactObjectKey(task.jobId, task.nodeIndex, path);
      // put replaces atomically: a reader sees the old or the new file, never a part
      const { size } = await store.put(objectKey, body);
      await commit(
        task,
        objectKey,
        (tx) =>
          tx.query(
            `INSERT INTO artifacts (job_id, node_index, path, task_id, object_key, size, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (job_id, node_index, path) DO UPDATE SET task_id = EXCLUDED.task_id,
             object_key = EXCLUDED.object_key, size = EXCLUDED.size, created_at = EXCLUDED.created_at`,
            [task.jobId, task.nodeIndex, path, task.taskId, objectKey, size, clock.now()],
          ),
        'DELETE FROM artifacts WHERE object_key = $1',
      );
      return { path, size };
    },

    async putTestResults(task, tests) {
      await db.transaction(async (tx) => {
        const now = clock.now();
        await checkLease(tx, task.taskId, task.leaseId, now, 'FOR SHARE');
        // one store_test_results step after another: each batch follows the last
        const r = await tx.query<{ next: number }>(
          'SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM test_results WHERE job_id = $1 AND node_index = $2',
          [task.jobId, task.nodeIndex],
        );
        let seq = Number(r.rows[0]?.next ?? 0);
        const BATCH = 500;
        for (let i = 0; i < tests.length; i += BATCH) {
          const batch = tests.slice(i, i + BATCH);
          const params: unknown[] = [task.jobId, task.nodeIndex, now];
          const values = batch.map((t) => {
            params.push(
              seq++,
              t.name,
              t.classname,
              t.file ?? null,
              t.result,
              t.message ?? null,
              t.runTime,
              t.source ?? 'unknown',
            );
            const b = params.length - 8;
            return `($1, $2, ${Array.from({ length: 8 }, (_, k) => `$${b + k + 1}`).join(', ')}, $3)`;
          });
          await tx.query(
            `INSERT INTO test_results (job_id, node_index, seq, name, classname, file, result, message, run_time, source,
               created_at)
             VALUES ${values.join(', ')}`,
            params,
          );
        }
      });
      return { count: tests.length };
    },

    async testTimings(task) {
      const latest = async (branch: string) => {
        const r = await db.query<{ id: string }>(
          `SELECT j.id FROM jobs j JOIN workflows w ON w.id = j.workflow_id JOIN pipelines p ON p.id = w.pipeline_id
           WHERE j.project_id = $1 AND j.name = $2 AND j.id <> $3 AND p.branch = $4
             AND j.status IN ('success', 'failed')
             AND EXISTS (SELECT 1 FROM test_results r WHERE r.job_id = j.id)
           ORDER BY j.stopped_at DESC NULLS LAST, j.created_at DESC LIMIT 1`,
          [task.projectId, task.jobName, task.jobId, branch],
        );
        return r.rows[0]?.id ?? null;
      };
      let source: 'branch' | 'default-branch' | 'none' = 'none';
      let jobId: string | null = null;
      if (task.branch !== null) {
        jobId = await latest(task.branch);
        if (jobId) source = 'branch';
      }
      if (!jobId && task.branch !== task.defaultBranch) {
        jobId = await latest(task.defaultBranch);
        if (jobId) source = 'default-branch';
      }
      if (!jobId) return { source: 'none', tests: [] };
      const r = await db.query<TestResultRow>(
        `SELECT name, classname, file, result, message, run_time, source FROM test_results
         WHERE job_id = $1 ORDER BY node_index, seq`,
        [jobId],
      );
      return {
        source,
        tests: r.rows.map((t) => ({
          name: t.name,
          classname: t.classname,
          ...(t.file !== null ? { file: t.file } : {}),
          result: t.result as TestCase['result'],
          ...(t.message !== null ? { message: t.message } : {}),
          runTime: Number(t.run_time),
        })),
      };
    },

    async lookupCache(task, keys, opts) {
      for (const key of keys) {
        if (key === '') continue;
        const r = await db.query<{ key: string; size: string; encoding: string; object_key: string }>(
          `SELECT key, size, encoding, object_key FROM caches WHERE project_id = $1 AND left(key, length($2)) = $2
           ORDER BY (key = $2) DESC, created_at DESC, key DESC LIMIT 1`,
          [task.projectId, key],
        );
        const row = r.rows[0];
        if (row) {
          return {
            key: row.key,
            size: Number(row.size),
            encoding: encodingOf(row.encoding),
            ...(opts?.file && store.local ? { file: store.local.file(row.object_key) } : {}),
          };
        }
      }
      return null;
    },

    async stageCache() {
      return store.local ? store.local.stage() : null;
    },

    async getCache(task, key) {
      const r = await db.query<{ object_key: string; size: string; encoding: string }>(
        'SELECT object_key, size, encoding FROM caches WHERE project_id = $1 AND key = $2',
        [task.projectId, key],
      );
      const row = r.rows[0];
      return row ? openStored(row.object_key, Number(row.size), row.encoding) : null;
    },

    async putCache(task, key, encoding, body) {
      const exists = async (q: Queryable) =>
        (await q.query('SELECT 1 FROM caches WHERE project_id = $1 AND key = $2', [task.projectId, key])).rows
          .length > 0;
      const staged = 'file' in body ? body.file : null;
      if (staged && !store.local) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          'this server keeps no objects as files: send the archive',
        );
      }
      if (await exists(db)) {
        if (staged) {
          await store.local!.discard(staged).catch((err: Error) => {
            throw new TorusError('TORUS_E_BAD_REQUEST', `cannot remove the staged archive: ${err.message}`);
          });
        }
        return 'exists';
      }
      // A fresh object per upload: two jobs saving one key at once cannot overwrite each other.
      const objectKey = `caches/${task.projectId}/${ids.uuid()}`;
      let size: number;
      try {
        ({ size } = staged
          ? await store.local!.adopt(objectKey, staged)
          : await store.put(objectKey, body as Readable));
      } catch (err) {
        if (!staged) throw err;
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `cannot store the staged archive: ${(err as Error).message}`,
        );
      }
      const inserted = await commit(task, objectKey, async (tx) => {
        const r = await tx.query(
          `INSERT INTO caches (project_id, key, object_key, size, encoding, job_id, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, key) DO NOTHING RETURNING 1`,
          [task.projectId, key, objectKey, size, encoding, task.jobId, clock.now()],
        );
        return r.rows.length > 0;
      });
      if (!inserted) {
        await store.delete(objectKey);
        return 'exists';
      }
      return 'created';
    },

    async putWorkspaceLayer(task, encoding, body) {
      const layerId = ids.uuid();
      const objectKey = `workspaces/${task.workspaceId}/${layerId}`;
      const { size } = await store.put(objectKey, body);
      await commit(task, objectKey, (tx) =>
        tx.query(
          `INSERT INTO workspace_layers (id, workspace_id, job_id, node_index, object_key, size, encoding, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [layerId, task.workspaceId, task.jobId, task.nodeIndex, objectKey, size, encoding, clock.now()],
        ),
      );
      return { layerId, size };
    },

    async workspaceLayers(task) {
      const jobs = await db.query<JobGraphRow>(
        'SELECT id, name, requires, position, copied_from FROM jobs WHERE workflow_id = $1',
        [task.workflowId],
      );
      const upstream = upstreamInGraphOrder(jobs.rows, task.jobName);
      if (upstream.length === 0) return [];
      // a job carried over by "rerun from failed" did not run again: its layers are its original's
      const owner = upstream.map((j) => j.copied_from ?? j.id);
      const r = await db.query<{ id: string; job_id: string; size: string; encoding: string }>(
        `SELECT id, job_id, size, encoding FROM workspace_layers
         WHERE workspace_id = $1 AND job_id = ANY($2::uuid[]) ORDER BY created_at, node_index, id`,
        [task.workspaceId, owner],
      );
      const out: WorkspaceLayer[] = [];
      upstream.forEach((j, i) => {
        for (const l of r.rows) {
          if (l.job_id === owner[i]) {
            out.push({ id: l.id, jobName: j.name, size: Number(l.size), encoding: encodingOf(l.encoding) });
          }
        }
      });
      return out;
    },

    async getWorkspaceLayer(task, layerId) {
      const r = await db.query<{ object_key: string; size: string; encoding: string }>(
        'SELECT object_key, size, encoding FROM workspace_layers WHERE id = $1 AND workspace_id = $2',
        [layerId, task.workspaceId],
      );
      const row = r.rows[0];
      return row ? openStored(row.object_key, Number(row.size), row.encoding) : null;
    },

    async listArtifacts(jobId, page) {
      const r = await db.query<ArtifactRow & { size: string | number }>(
        `SELECT node_index, path, size FROM artifacts WHERE job_id = $1 ORDER BY node_index, path
         LIMIT $2 OFFSET $3`,
        [jobId, page.limit + 1, page.offset],
      );
      return r.rows.map((a) => ({ node_index: a.node_index, path: a.path, size: Number(a.size) }));
    },

    async openArtifact(jobId, nodeIndex, path) {
      const r = await db.query<{ object_key: string; size: string }>(
        'SELECT object_key, size FROM artifacts WHERE job_id = $1 AND node_index = $2 AND path = $3',
        [jobId, nodeIndex, path],
      );
      const row = r.rows[0];
      if (!row) return null;
      const stream = await store.get(row.object_key);
      return stream ? { stream, size: Number(row.size) } : null;
    },

    async listTestResults(jobId, page) {
      const r = await db.query<TestResultRow>(
        `SELECT name, classname, file, result, message, run_time, source FROM test_results WHERE job_id = $1
         ORDER BY node_index, seq LIMIT $2 OFFSET $3`,
        [jobId, page.limit + 1, page.offset],
      );
      return r.rows.map((t) => ({ ...t, run_time: Number(t.run_time) }));
    },
  };
}
