// Test databases: a fresh migrated PGlite per call (cloned from a cached dump, ~1 s instead of ~6 s)
// and a fresh database on the harness's PostgreSQL 15.
import { randomBytes } from 'node:crypto';
import type { Database, DatabaseKind } from '../../src/storage/index.js';
import { PgliteDatabase, PostgresDatabase, migrate } from '../../src/storage/index.js';
import { parts, REQUIRE_ALL } from './parts.js';

let dump: Promise<Blob> | undefined;

async function migratedDump(): Promise<Blob> {
  dump ??= (async () => {
    const db = await PgliteDatabase.open();
    await migrate(db);
    const blob = await db.dump();
    await db.close();
    return blob;
  })();
  return dump;
}

/** The database kinds to run a suite on: PGlite always, PostgreSQL when the harness started it. */
export function databaseKinds(): DatabaseKind[] {
  if (parts.postgres()) return ['pglite', 'postgres'];
  if (REQUIRE_ALL)
    throw new Error('PostgreSQL 15 is required (TORUS_TEST_REQUIRE_ALL=1) but was not started');
  console.warn('SKIP PostgreSQL variants of database suites: postgresql-15 is not installed here');
  return ['pglite'];
}

export async function openTestDatabase(kind: DatabaseKind = 'pglite'): Promise<Database> {
  if (kind === 'pglite') {
    const db = await PgliteDatabase.open(undefined, await migratedDump());
    await migrate(db); // no-op on the dump; applies anything newer
    return db;
  }
  const base = process.env.TORUS_TEST_DATABASE_URL;
  if (!base) throw new Error('no PostgreSQL: TORUS_TEST_DATABASE_URL is unset');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = await PostgresDatabase.open(base, 1);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.close();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const db = await PostgresDatabase.open(url.toString());
  await migrate(db);
  return db;
}
