// PGlite (Postgres in WASM) behind the Database interface: the embedded shape's database.
import { PGlite, types } from '@electric-sql/pglite';
import type { Database, Queryable, QueryResult } from './database.js';

const parsers = {
  [types.INT8]: (v: string) => Number(v),
  [types.NUMERIC]: (v: string) => Number(v),
};

function wrap(q: Pick<PGlite, 'query' | 'exec'>): Queryable {
  return {
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      if (params.length === 0 && isMultiStatement(sql)) {
        // The extended protocol takes one statement; migrations are several, sent as a simple query.
        const all = await q.exec(sql);
        const last = all[all.length - 1];
        return { rows: (last?.rows ?? []) as R[], rowCount: last?.affectedRows || last?.rows.length || 0 };
      }
      const res = await q.query<R>(sql, params as unknown[]);
      return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
    },
  };
}

function isMultiStatement(sql: string): boolean {
  return sql.trim().replace(/;\s*$/, '').includes(';');
}

export class PgliteDatabase implements Database {
  readonly kind = 'pglite' as const;
  private readonly q: Queryable;

  private constructor(readonly pg: PGlite) {
    this.q = wrap(pg);
  }

  /** Opens (creating if needed) a data directory; `undefined` means in memory. */
  static async open(dataDir?: string, loadDataDir?: Blob): Promise<PgliteDatabase> {
    const pg = new PGlite({ dataDir, parsers, loadDataDir });
    await pg.waitReady;
    return new PgliteDatabase(pg);
  }

  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.q.query<R>(sql, params);
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.pg.transaction((tx) => fn(wrap(tx)));
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    const unlisten = await this.pg.listen(channel, onPayload);
    return () => unlisten();
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.pg.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  /** A tarball of the data directory, to clone a migrated database quickly (tests). */
  async dump(): Promise<Blob> {
    return this.pg.dumpDataDir('none');
  }

  async close(): Promise<void> {
    if (!this.pg.closed) await this.pg.close();
  }
}
