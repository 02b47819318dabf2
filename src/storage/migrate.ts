// Versioned schema migrations: numbered SQL files applied in order at start, each in its own
// transaction. A database whose schema is newer than this code refuses to start (an older binary
// would misread newer data).
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Database } from './database.js';
import { TorusError } from '../ops/errors.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any fixed number: replicas starting together take turns migrating.
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
  if (db.kind === 'postgres') await db.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
  try {
    await db.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => r.version));
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
      await db.transaction(async (tx) => {
        await tx.query(m.sql);
        await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      });
      applied.push(m.name);
    }
  } finally {
    if (db.kind === 'postgres') await db.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
  }
  return { applied };
}
