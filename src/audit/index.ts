// Audit events: who did what to which target, when. Subsystems record an event in the same
// transaction as the change it describes (so a rolled-back change leaves no event, and a committed
// one always has its event); the audit log export reads them back in time order.
import type { Queryable } from '../storage/index.js';

/** '<subject>.<verb>' in the domain's words, e.g. 'orb.publish'. */
export type AuditAction = string;

export interface AuditEventInput {
  id: string;
  /** the user who made the change; null for the system (the server itself, `torus admin`) */
  actorId: string | null;
  action: AuditAction;
  /** what changed, as a person reads it: 'circleci/node@5.1.0' (orb.*), 'circleci' (namespace.*) */
  target: string;
  details?: Record<string, unknown>;
  occurredAt: Date;
}

export type AuditEvent = Required<AuditEventInput>;

interface AuditRow {
  id: string;
  actor_id: string | null;
  action: string;
  target: string;
  details: Record<string, unknown>;
  occurred_at: Date;
}

/** Writes one event; pass the transaction that makes the change. */
export async function recordAudit(tx: Queryable, event: AuditEventInput): Promise<void> {
  await tx.query(
    `INSERT INTO audit_events (id, actor_id, action, target, details, occurred_at)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [
      event.id,
      event.actorId,
      event.action,
      event.target,
      JSON.stringify(event.details ?? {}),
      event.occurredAt,
    ],
  );
}

export interface AuditFilter {
  /** actions starting with this, e.g. 'orb.' */
  actionPrefix?: string;
  actorId?: string;
  since?: Date;
  /** at most this many, oldest first; default 1000 */
  limit?: number;
}

/** Events in the order they happened (then in the order they were written). */
export async function listAuditEvents(q: Queryable, filter: AuditFilter = {}): Promise<AuditEvent[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.actionPrefix !== undefined) {
    params.push(`${filter.actionPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    where.push(`action LIKE $${params.length}`);
  }
  if (filter.actorId !== undefined) {
    params.push(filter.actorId);
    where.push(`actor_id = $${params.length}`);
  }
  if (filter.since !== undefined) {
    params.push(filter.since);
    where.push(`occurred_at >= $${params.length}`);
  }
  params.push(filter.limit ?? 1000);
  const { rows } = await q.query<AuditRow>(
    `SELECT id, actor_id, action, target, details, occurred_at FROM audit_events
     ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY occurred_at, seq LIMIT $${params.length}`,
    params,
  );
  return rows.map((r) => ({
    id: r.id,
    actorId: r.actor_id,
    action: r.action,
    target: r.target,
    details: r.details,
    occurredAt: r.occurred_at,
  }));
}
