// Conformance suite for the Database interface: every implementation runs the same cases.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import { loadMigrations, migrate, PostgresDatabase, type Database } from './index.js';

for (const kind of databaseKinds()) {
  describe(`Database conformance: ${kind}`, () => {
    let db: Database;
    beforeAll(async () => {
      db = await openTestDatabase(kind);
    });
    afterAll(async () => {
      await db.close();
    });

    it('has applied every migration', async () => {
      const { rows } = await db.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      );
      expect(rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version));
    });

    it('parses jsonb, timestamps and int8 the same way', async () => {
      const { rows } = await db.query<{ j: unknown; t: Date; n: number }>(
        `SELECT '{"a":[1,"x"]}'::jsonb AS j, '2026-01-02T03:04:05Z'::timestamptz AS t, 9007199254740991::int8 AS n`,
      );
      expect(rows[0]).toEqual({
        j: { a: [1, 'x'] },
        t: new Date('2026-01-02T03:04:05Z'),
        n: 9007199254740991,
      });
    });

    it('rolls back a transaction that throws', async () => {
      await db.query(`INSERT INTO settings (key, value) VALUES ('keep', '1')`);
      await expect(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO settings (key, value) VALUES ('gone', '1')`);
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      const { rows } = await db.query<{ key: string }>(
        `SELECT key FROM settings WHERE key IN ('keep','gone')`,
      );
      expect(rows.map((r) => r.key)).toEqual(['keep']);
    });

    it('reports affected rows, and the row count of a SELECT', async () => {
      const r = await db.query(`UPDATE settings SET value = '2' WHERE key = 'keep'`);
      expect(r.rowCount).toBe(1);
      const none = await db.query(`UPDATE settings SET value = '2' WHERE key = 'absent'`);
      expect(none.rowCount).toBe(0);
      const sel = await db.query(`SELECT * FROM generate_series(1, 3)`);
      expect(sel.rowCount).toBe(3);
    });

    it('delivers NOTIFY to listeners, also from inside a transaction after commit', async () => {
      const got: string[] = [];
      const unlisten = await db.listen('torus_test_ch', (p) => got.push(p));
      await db.notify('torus_test_ch', 'one');
      await db.transaction(async (tx) => {
        await tx.query(`SELECT pg_notify('torus_test_ch', 'two')`);
      });
      const deadline = Date.now() + 2000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(got).toEqual(['one', 'two']);
      await unlisten();
      await db.notify('torus_test_ch', 'three');
      await new Promise((r) => setTimeout(r, 50));
      expect(got).toEqual(['one', 'two']);
    });

    it('refuses to run against a schema newer than the code knows', async () => {
      await db.query(`INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future')`);
      await expect(migrate(db)).rejects.toThrow(/schema is at version 9999, newer than this Torus knows/);
      await db.query(`DELETE FROM schema_migrations WHERE version = 9999`);
      await expect(migrate(db)).resolves.toEqual({ applied: [] });
    });
  });
}

describe.skipIf(!databaseKinds().includes('postgres'))('migrations on PostgreSQL', () => {
  it('are applied once when two replicas start together on an empty database', async () => {
    const base = process.env.TORUS_TEST_DATABASE_URL!;
    const name = `t_${randomBytes(6).toString('hex')}`;
    const admin = await PostgresDatabase.open(base, 1);
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.close();
    const url = new URL(base);
    url.pathname = `/${name}`;
    const [a, b] = await Promise.all([
      PostgresDatabase.open(url.toString()),
      PostgresDatabase.open(url.toString()),
    ]);
    try {
      const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
      const all = loadMigrations().map((m) => m.name);
      expect([...ra.applied, ...rb.applied].sort()).toEqual([...all].sort());
      const { rows } = await a.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows[0]!.n).toBe(all.length);
      // the lock was transaction-scoped: nothing is left held, a third start finds nothing to do
      const held = await a.query('SELECT 1 FROM pg_locks WHERE locktype = $1', ['advisory']);
      expect(held.rows).toEqual([]);
      await expect(migrate(b)).resolves.toEqual({ applied: [] });
    } finally {
      await a.close();
      await b.close();
    }
  });
});
