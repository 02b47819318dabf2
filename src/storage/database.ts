// The Database interface: one Postgres dialect over PGlite (embedded) and PostgreSQL (scaled out).
// Callers write plain SQL with $1 parameters; rows come back with jsonb parsed, timestamps as Date and
// int8 as number, whatever the driver.

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export type DatabaseKind = 'pglite' | 'postgres';

export interface Database extends Queryable {
  readonly kind: DatabaseKind;
  /** Runs fn in one transaction; rolls back if it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Subscribes to NOTIFY on channel; the returned function unsubscribes. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** NOTIFY outside a transaction (inside one, use `SELECT pg_notify($1, $2)` on the tx). */
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

/** Channel names used with LISTEN/NOTIFY, in one place so producers and consumers agree. */
export const CHANNELS = {
  /** payload: the resource class of a task that became claimable */
  taskQueued: 'torus_task_queued',
  /** payload: `${taskId}` whose state or cancel flag changed */
  taskChanged: 'torus_task_changed',
  /** payload: `${taskId}:${stepIndex}` that received output or changed state */
  stepOutput: 'torus_step_output',
  /** payload: `${pipelineId}` whose pipeline, workflows or jobs changed */
  pipelineChanged: 'torus_pipeline_changed',
} as const;
