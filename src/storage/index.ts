// Storage: the Database interface (PGlite or PostgreSQL, one SQL dialect), schema migrations, and
// the ObjectStore interface (filesystem or S3, chosen by createObjectStore).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Settings } from '../ops/settings.js';
import { TorusError } from '../ops/errors.js';
import { FsObjectStore, type ObjectStore } from './object-store.js';
import { S3ObjectStore } from './s3.js';
import type { Database } from './database.js';
import { PgliteDatabase } from './pglite.js';
import { PostgresDatabase } from './postgres.js';
import { migrate } from './migrate.js';

export type { Database, Queryable, QueryResult, DatabaseKind } from './database.js';
export { CHANNELS } from './database.js';
export { PgliteDatabase } from './pglite.js';
export { PostgresDatabase } from './postgres.js';
export { migrate, loadMigrations, type Migration } from './migrate.js';
export { refuseWhileEmbeddedServerRuns } from './embedded-lock.js';
export {
  FsObjectStore,
  readObjectText,
  assertValidKey,
  type ObjectStore,
  type ObjectInfo,
  type ObjectBody,
} from './object-store.js';
export { S3ObjectStore, type S3ObjectStoreOptions } from './s3.js';

/** The object store the settings ask for: `<dataDir>/objects` on disk (default), or an S3 bucket. */
export function createObjectStore(
  settings: Pick<
    Settings,
    | 'dataDir'
    | 'objectStore'
    | 's3Endpoint'
    | 's3Bucket'
    | 's3Region'
    | 's3ForcePathStyle'
    | 's3Prefix'
    | 's3AccessKeyId'
    | 's3SecretAccessKey'
  >,
): ObjectStore {
  if ((settings.objectStore ?? 'fs') === 'fs') return new FsObjectStore(join(settings.dataDir, 'objects'));
  if (!settings.s3Bucket) {
    throw new TorusError('TORUS_E_SETTINGS', 'TORUS_OBJECT_STORE=s3 needs TORUS_S3_BUCKET (s3_bucket)');
  }
  if (Boolean(settings.s3AccessKeyId) !== Boolean(settings.s3SecretAccessKey)) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      'give both TORUS_S3_ACCESS_KEY_ID and TORUS_S3_SECRET_ACCESS_KEY, or neither (the AWS SDK default chain)',
    );
  }
  return new S3ObjectStore({
    bucket: settings.s3Bucket,
    prefix: settings.s3Prefix,
    endpoint: settings.s3Endpoint,
    region: settings.s3Region,
    forcePathStyle: settings.s3ForcePathStyle ?? false,
    credentials:
      settings.s3AccessKeyId && settings.s3SecretAccessKey
        ? { accessKeyId: settings.s3AccessKeyId, secretAccessKey: settings.s3SecretAccessKey }
        : undefined,
  });
}

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
