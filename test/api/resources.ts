// Resources for API and accounts tests: a real test database, a temporary object store, a settable
// clock and a silent logger.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { FsObjectStore, type DatabaseKind } from '../../src/storage/index.js';
import { defaultSettings, randomIds, type Resources } from '../../src/ops/index.js';
import { openTestDatabase } from '../harness/db.js';

export interface TestResources extends Resources {
  /** moves the test clock; `null` follows the system clock again */
  setNow(d: Date | null): void;
  close(): Promise<void>;
}

export async function openTestResources(kind: DatabaseKind): Promise<TestResources> {
  const db = await openTestDatabase(kind);
  const dir = mkdtempSync(join(tmpdir(), 'torus-api-'));
  let fixed: Date | null = null;
  const settings = { ...defaultSettings(), dataDir: dir, url: 'http://torus.test', localAgents: 0 };
  return {
    db,
    store: new FsObjectStore(join(dir, 'objects')),
    clock: { now: () => fixed ?? new Date() },
    ids: randomIds,
    logger: pino({ level: 'silent' }),
    settings,
    setNow: (d) => (fixed = d),
    async close() {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Empties every table, so one database serves all tests of a file. */
export async function truncateAll(res: Resources): Promise<void> {
  const r = await res.db.query<{ tablename: string }>(
    `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename NOT LIKE 'schema%' AND tablename <> 'settings'`,
  );
  if (r.rows.length === 0) return;
  await res.db.query(`TRUNCATE ${r.rows.map((t) => `"${t.tablename}"`).join(', ')} CASCADE`);
}
