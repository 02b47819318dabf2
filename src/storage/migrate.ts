// Versioned schema migrations: numbered SQL files applied in order at start, each in its own
// transaction. A database whose schema is newer than this code refuses to start (an older binary
// would misread newer data).
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Database, Queryable } from './database.js';
import { TorusError } from '../ops/errors.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any fixed number: the advisory lock replicas starting together take turns on.
const MIGRATION_LOCK_KEY = 7_340_001;

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .map((f) => ({
      version: Number(f.split('_')[0]),
      name: f.replace(/\.sql$/, ''),
      sql: readFileSync(join(dir, f), 'utf8'),
    }))
    .sort((a, b) => a.version - b.version);
}

export async function migrate(db: Database, migrations = loadMigrations()): Promise<{ applied: string[] }> {
  const applied: string[] = [];
  // Replicas starting together take turns: each step holds a transaction-scoped advisory lock (a
  // session lock taken through a pool could be taken and released on different connections), and
  // re-reads what is applied under it.
  const lock = async (tx: Queryable) => {
    if (db.kind === 'postgres') await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
  };
  const done = await db.transaction(async (tx) => {
    await lock(tx);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
    return new Set(rows.map((r) => r.version));
  });
  const newest = Math.max(0, ...migrations.map((m) => m.version));
  const dbNewest = Math.max(0, ...done);
  if (dbNewest > newest) {
    throw new TorusError(
      'TORUS_E_SCHEMA_NEWER',
      `the database schema is at version ${dbNewest}, newer than this Torus knows (${newest}); ` +
        'run the Torus release that wrote it, or restore a backup taken before the upgrade',
    );
  }
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    const ran = await db.transaction(async (tx) => {
      await lock(tx);
      const again = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
      if (again.rows.length > 0) return false; // another replica applied it meanwhile
      await tx.query(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      return true;
    });
    if (ran) applied.push(m.name);
  }
  return { applied };
}
