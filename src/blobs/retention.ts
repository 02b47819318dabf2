// Retention: artifacts, test results, caches and workspace layers expire as on CircleCI Server (its
// object-storage lifecycle: artifacts and test results 30 days, caches 15, workspaces 15), each by
// the time it was stored. A sweep deletes rows oldest first in bounded batches, then their objects;
// the server runs one every settings.retentionSweepMs (RetentionLoop), `torus admin expire` one now.
import pino from 'pino';
import { type Clock, type Logger, type Resources, type Settings } from '../ops/index.js';
import {
  createObjectStore,
  openDatabase,
  refuseWhileEmbeddedServerRuns,
  type Database,
  type ObjectStore,
} from '../storage/index.js';
import { Periodic } from '../ops/periodic.js';

export type BlobKind = 'artifacts' | 'testResults' | 'caches' | 'workspaceLayers';

/** Rows per DELETE: a sweep never holds a long transaction nor loads a table into memory. */
export const RETENTION_BATCH = 500;
/** Object deletions in flight at once (S3 round trips dominate a batch). */
const OBJECT_DELETES_IN_FLIGHT = 8;
const DAY_MS = 86_400_000;

type RetentionSettings = Pick<
  Settings,
  'artifactRetentionDays' | 'cacheRetentionDays' | 'workspaceRetentionDays'
>;

interface KindSpec {
  kind: BlobKind;
  label: string;
  table: string;
  /** primary-key columns: a batch is picked by them */
  key: readonly string[];
  /** whether rows name an object in the store (test results live in the database only) */
  objects: boolean;
  days(s: RetentionSettings): number;
}

const KINDS: readonly KindSpec[] = [
  {
    kind: 'artifacts',
    label: 'artifacts',
    table: 'artifacts',
    key: ['job_id', 'node_index', 'path'],
    objects: true,
    days: (s) => s.artifactRetentionDays,
  },
  {
    // CircleCI keeps test results as long as artifacts
    kind: 'testResults',
    label: 'test results',
    table: 'test_results',
    key: ['job_id', 'node_index', 'seq'],
    objects: false,
    days: (s) => s.artifactRetentionDays,
  },
  {
    // counted from the save: caches are immutable, a restore does not renew one (as on CircleCI)
    kind: 'caches',
    label: 'caches',
    table: 'caches',
    key: ['project_id', 'key'],
    objects: true,
    days: (s) => s.cacheRetentionDays,
  },
  {
    kind: 'workspaceLayers',
    label: 'workspace layers',
    table: 'workspace_layers',
    key: ['id'],
    objects: true,
    days: (s) => s.workspaceRetentionDays,
  },
];

export interface KindExpiry {
  /** 0: kept forever */
  retentionDays: number;
  /** rows stored before this expire; null when kept forever */
  cutoff: Date | null;
  /** rows removed (or, in a dry run, that would be) */
  rows: number;
  /** bytes of the objects deleted (dry run: of the objects that would be); 0 for test results */
  bytes: number;
  /** objects whose deletion failed: their rows are gone, the objects stay as orphans (logged) */
  objectErrors: number;
}

export interface ExpiryReport {
  dryRun: boolean;
  at: Date;
  /** false when the sweep was stopped before it finished */
  complete: boolean;
  kinds: Record<BlobKind, KindExpiry>;
}

export interface SweepOptions {
  dryRun?: boolean;
  batchSize?: number;
  /** stops the sweep between batches (a started batch still deletes its objects) */
  signal?: AbortSignal;
}

type SweepResources = Pick<Resources, 'db' | 'store' | 'clock' | 'logger'> & { settings: RetentionSettings };

/**
 * Removes what is past its retention. Rows go first, each batch in one statement, and their
 * objects after it commits: a crash in between leaves orphan objects, never rows pointing at
 * nothing. Several replicas may sweep at once: a batch locks its rows with SKIP LOCKED and
 * DELETE … RETURNING reports only the rows this statement removed, so the work splits, never
 * doubles.
 */
export async function sweepExpiredBlobs(res: SweepResources, opts: SweepOptions = {}): Promise<ExpiryReport> {
  const at = res.clock.now();
  const batchSize = opts.batchSize ?? RETENTION_BATCH;
  const report: ExpiryReport = {
    dryRun: Boolean(opts.dryRun),
    at,
    complete: true,
    kinds: {} as Record<BlobKind, KindExpiry>,
  };
  for (const k of KINDS) {
    const days = k.days(res.settings);
    const cutoff = days > 0 ? new Date(at.getTime() - days * DAY_MS) : null;
    const out: KindExpiry = { retentionDays: days, cutoff, rows: 0, bytes: 0, objectErrors: 0 };
    report.kinds[k.kind] = out;
    if (!cutoff) continue;
    if (opts.dryRun) {
      const r = await res.db.query<{ n: number; bytes: number }>(
        `SELECT count(*)::bigint AS n, ${k.objects ? 'COALESCE(sum(size), 0)::bigint' : '0::bigint'} AS bytes
         FROM ${k.table} WHERE created_at < $1`,
        [cutoff],
      );
      out.rows = Number(r.rows[0]?.n ?? 0);
      out.bytes = Number(r.rows[0]?.bytes ?? 0);
      continue;
    }
    const sql = deleteBatchSql(k);
    for (;;) {
      if (opts.signal?.aborted) {
        report.complete = false;
        return report;
      }
      const r = await res.db.query<{ object_key: string | null; size: number }>(sql, [cutoff, batchSize]);
      out.rows += r.rows.length;
      if (k.objects) {
        const done = await deleteObjects(res, k, r.rows);
        out.bytes += done.bytes;
        out.objectErrors += done.errors;
      }
      // fewer than a batch: the rest is gone, or locked by another replica's batch (its to finish)
      if (r.rows.length < batchSize) break;
    }
  }
  return report;
}

function deleteBatchSql(k: KindSpec): string {
  const cols = k.key.join(', ');
  const match = k.key.map((c) => `t.${c} = d.${c}`).join(' AND ');
  const returning = k.objects ? 't.object_key, t.size' : 'NULL::text AS object_key, 0::bigint AS size';
  return `WITH d AS (
      SELECT ${cols} FROM ${k.table} WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    DELETE FROM ${k.table} t USING d WHERE ${match} RETURNING ${returning}`;
}

/** Deletes the objects of removed rows; a missing object is fine, a failing one is logged and skipped. */
async function deleteObjects(
  res: Pick<SweepResources, 'store' | 'logger'>,
  k: KindSpec,
  rows: Array<{ object_key: string | null; size: number }>,
): Promise<{ bytes: number; errors: number }> {
  let next = 0;
  let bytes = 0;
  let errors = 0;
  const worker = async () => {
    while (next < rows.length) {
      const row = rows[next++]!;
      if (row.object_key === null) continue;
      try {
        // both stores treat deleting an absent object as done
        await res.store.delete(row.object_key);
        bytes += Number(row.size);
      } catch (err) {
        errors++;
        res.logger.warn(
          { err, objectKey: row.object_key, kind: k.kind },
          'could not delete an expired object; its row is gone, the object stays (an orphan)',
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(OBJECT_DELETES_IN_FLIGHT, rows.length) }, worker));
  return { bytes, errors };
}

/** The server's periodic sweep: one at start, then one every interval after the last ended. */
export class RetentionLoop {
  private readonly loop: Periodic;

  constructor(
    private readonly res: Resources,
    private readonly opts: { intervalMs?: number; batchSize?: number } = {},
  ) {
    this.loop = new Periodic(
      (signal) => this.sweep(signal),
      () => this.opts.intervalMs ?? this.res.settings.retentionSweepMs,
    );
  }

  start(): void {
    if (this.loop.started) return;
    if (KINDS.every((k) => k.days(this.res.settings) === 0)) {
      this.res.logger.info(
        'retention is 0 days for every kind: artifacts, caches and workspaces are kept forever',
      );
      return;
    }
    this.loop.start();
  }

  /** Stops the loop; a sweep under way ends after its current batch (before the database closes). */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async sweep(signal: AbortSignal): Promise<void> {
    try {
      const report = await sweepExpiredBlobs(this.res, { batchSize: this.opts.batchSize, signal });
      const removed = Object.values(report.kinds).some((k) => k.rows > 0);
      if (removed) this.res.logger.info({ expired: report.kinds }, 'removed what was past its retention');
    } catch (err) {
      this.res.logger.error({ err }, 'retention sweep failed; retrying at the next one');
    }
  }
}

export interface ExpireCommandOptions {
  settings: Settings;
  dryRun: boolean;
  print(line: string): void;
  /** given by tests; otherwise opened from the settings and closed at the end */
  db?: Database;
  store?: ObjectStore;
  clock?: Clock;
  logger?: Logger;
}

/** `torus admin expire [--dry-run]`: one sweep now, against the configured database and object store. */
export async function expireCommand(opts: ExpireCommandOptions): Promise<ExpiryReport> {
  const { settings } = opts;
  if (!opts.db && !settings.databaseUrl)
    await refuseWhileEmbeddedServerRuns(
      settings,
      `stop it first, or let it sweep: it does at start and every ${settings.retentionSweepMs} ms (retention_sweep_ms)`,
    );
  const store = opts.store ?? createObjectStore(settings);
  // the log (failed object deletions) goes to stderr: stdout is the report
  const logger =
    opts.logger ?? pino({ level: settings.logLevel, base: { service: 'torus' } }, pino.destination(2));
  const db =
    opts.db ?? (await openDatabase({ databaseUrl: settings.databaseUrl, dataDir: settings.dataDir }));
  try {
    const report = await sweepExpiredBlobs(
      { db, store, clock: opts.clock ?? { now: () => new Date() }, logger, settings },
      { dryRun: opts.dryRun },
    );
    for (const line of formatExpiryReport(report)) opts.print(line);
    return report;
  } finally {
    if (!opts.db) await db.close();
  }
}

export function formatExpiryReport(report: ExpiryReport): string[] {
  const verb = report.dryRun ? 'would remove' : 'removed';
  const lines = [
    `${report.dryRun ? 'Dry run: nothing removed. ' : ''}Retention sweep at ${report.at.toISOString()}`,
  ];
  let rows = 0;
  let bytes = 0;
  let errors = 0;
  for (const k of KINDS) {
    const e = report.kinds[k.kind];
    if (!e) continue;
    if (e.retentionDays === 0) {
      lines.push(`  ${k.label}: kept forever (retention 0)`);
      continue;
    }
    rows += e.rows;
    bytes += e.bytes;
    errors += e.objectErrors;
    const size = k.objects ? `, ${formatBytes(e.bytes)}` : ' (database rows)';
    const failed =
      e.objectErrors > 0 ? `; ${e.objectErrors} object(s) could not be deleted and stay (see the log)` : '';
    lines.push(
      `  ${k.label}: ${verb} ${e.rows}${size}; older than ${e.retentionDays} days (before ${e.cutoff!.toISOString()})${failed}`,
    );
  }
  lines.push(
    `  total: ${verb} ${rows}, ${formatBytes(bytes)}${errors > 0 ? `; ${errors} object error(s)` : ''}`,
  );
  if (!report.complete) lines.push('  stopped before the end: the next sweep removes the rest');
  return lines;
}

function formatBytes(n: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  if (n < 1024) return `${n} bytes`;
  let v = n;
  let unit = 'bytes';
  for (const u of units) {
    if (v < 1024) break;
    v /= 1024;
    unit = u;
  }
  return `${v.toFixed(1)} ${unit} (${n} bytes)`;
}
