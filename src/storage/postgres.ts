// PostgreSQL (node-postgres pool) behind the Database interface: the scaled-out shape's database.
import pg from 'pg';
import type { Database, Queryable, QueryResult } from './database.js';

pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number(v));

export class PostgresDatabase implements Database {
  readonly kind = 'postgres' as const;
  private listener: pg.Client | undefined;
  private listenerReady: Promise<pg.Client> | undefined;
  private readonly handlers = new Map<string, Set<(payload: string) => void>>();

  constructor(readonly pool: pg.Pool) {}

  static async open(url: string, poolSize = 10): Promise<PostgresDatabase> {
    const pool = new pg.Pool({ connectionString: url, max: poolSize });
    // Idle clients can error when the server goes away; the pool replaces them, so logging is enough.
    pool.on('error', (err) => console.error('postgres pool client error:', err.message));
    await pool.query('SELECT 1');
    return new PostgresDatabase(pool);
  }

  async query<R = Record<string, unknown>>(
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<QueryResult<R>> {
    return toResult<R>(await this.pool.query(sql, params as unknown[]));
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    const tx: Queryable = {
      async query<R>(sql: string, params: readonly unknown[] = []) {
        return toResult<R>(await client.query(sql, params as unknown[]));
      },
    };
    try {
      await client.query('BEGIN');
      const out = await fn(tx);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined); // the original error is the one to report
      throw err;
    } finally {
      client.release();
    }
  }

  private async listenerClient(): Promise<pg.Client> {
    if (this.listener) return this.listener;
    this.listenerReady ??= (async () => {
      const client = new pg.Client(this.pool.options);
      await client.connect();
      client.on('notification', (msg) => {
        const set = this.handlers.get(msg.channel);
        if (set) for (const h of set) h(msg.payload ?? '');
      });
      this.listener = client;
      return client;
    })();
    return this.listenerReady;
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    const client = await this.listenerClient();
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      await client.query(`LISTEN ${quoteIdent(channel)}`);
    }
    set.add(onPayload);
    return async () => {
      set.delete(onPayload);
      if (set.size === 0 && this.handlers.get(channel) === set) {
        this.handlers.delete(channel);
        await client.query(`UNLISTEN ${quoteIdent(channel)}`);
      }
    };
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  async close(): Promise<void> {
    if (this.listener) await this.listener.end();
    await this.pool.end();
  }
}

/** A multi-statement text (migrations) yields one result per statement: the last one is the answer. */
function toResult<R>(res: pg.QueryResult | pg.QueryResult[]): QueryResult<R> {
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  if (!last) return { rows: [], rowCount: 0 };
  return { rows: last.rows as R[], rowCount: last.rowCount ?? last.rows.length };
}

function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
