// Storage: the Database interface (PGlite or PostgreSQL, one SQL dialect), schema migrations, and
// the ObjectStore interface (filesystem now, S3 later).
import { mkdirSync } from 'node:fs';
import type { Database } from './database.js';
import { PgliteDatabase } from './pglite.js';
import { PostgresDatabase } from './postgres.js';
import { migrate } from './migrate.js';

export type { Database, Queryable, QueryResult, DatabaseKind } from './database.js';
export { CHANNELS } from './database.js';
export { PgliteDatabase } from './pglite.js';
export { PostgresDatabase } from './postgres.js';
export { migrate, loadMigrations, type Migration } from './migrate.js';
export {
  FsObjectStore,
  readObjectText,
  assertValidKey,
  type ObjectStore,
  type ObjectInfo,
  type ObjectBody,
} from './object-store.js';

export interface OpenDatabaseOptions {
  /** postgres://… ; when absent, PGlite in `${dataDir}/pg` */
  databaseUrl?: string;
  dataDir?: string;
}

/** Opens the configured database and brings its schema up to date. */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  let db: Database;
  if (opts.databaseUrl) {
    db = await PostgresDatabase.open(opts.databaseUrl);
  } else {
    const dir = opts.dataDir ? `${opts.dataDir}/pg` : undefined;
    if (dir) mkdirSync(dir, { recursive: true });
    db = await PgliteDatabase.open(dir);
  }
  try {
    await migrate(db);
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}
