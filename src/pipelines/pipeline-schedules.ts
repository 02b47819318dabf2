// Scheduled pipelines (CircleCI's "schedule triggers", API v2 `/project/{slug}/schedule` and
// `/schedule/{id}`): a named timetable that triggers a pipeline on a branch or tag with parameters,
// attributed to the user who last saved it ("current") or to the scheduling system ("system").
// A timetable fires `per-hour` times in each listed hour (at minutes 0, 60/n, 2·60/n…) on the listed
// days of the week or of the month, in the listed months (all when absent), in UTC. The schedule
// loop of schedules.ts fires due rows the same way as workflow schedules: claimed FOR UPDATE SKIP
// LOCKED, moved to the next time and triggered in one transaction.
import { nextCronTime, type CronSchedule } from '../config/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import type { Queryable } from '../storage/index.js';
import type { EngineCore } from './core.js';
import { insertPipelineIn, validateParameters } from './trigger.js';

const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] as const;
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'] as const;
const MAX_NAME = 128;
const MAX_DESCRIPTION = 1024;

export interface Timetable {
  'per-hour': number;
  'hours-of-day': number[];
  'days-of-week'?: string[];
  'days-of-month'?: number[];
  months?: string[];
}

export type AttributionActor = 'current' | 'system';

export interface PipelineSchedule {
  id: string;
  projectId: string;
  name: string;
  description: string | null;
  timetable: Timetable;
  attributionActor: AttributionActor;
  /** who created or last updated it (the actor of its pipelines when attribution is "current") */
  actorId: string | null;
  /** pipeline parameters, with `branch` or `tag` among them (CircleCI's shape) */
  parameters: Record<string, string | number | boolean>;
  nextRunAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface ScheduleInput {
  name?: unknown;
  description?: unknown;
  timetable?: unknown;
  'attribution-actor'?: unknown;
  parameters?: unknown;
}

const bad = (message: string) => new TorusError('TORUS_E_BAD_REQUEST', message);

function intList(v: unknown, what: string, min: number, max: number): number[] {
  if (!Array.isArray(v) || v.length === 0) throw bad(`timetable.${what} must be a non-empty list`);
  for (const n of v) {
    if (!Number.isInteger(n) || (n as number) < min || (n as number) > max)
      throw bad(`timetable.${what} must hold whole numbers from ${min} to ${max}; got ${JSON.stringify(n)}`);
  }
  return [...new Set(v as number[])].sort((a, b) => a - b);
}

function nameList(v: unknown, what: string, names: readonly string[]): string[] {
  if (!Array.isArray(v) || v.length === 0) throw bad(`timetable.${what} must be a non-empty list`);
  for (const n of v) {
    if (typeof n !== 'string' || !names.includes(n))
      throw bad(`timetable.${what} must hold ${names.join(', ')}; got ${JSON.stringify(n)}`);
  }
  return [...new Set(v as string[])].sort((a, b) => names.indexOf(a) - names.indexOf(b));
}

/** Checks a timetable as CircleCI does and returns it normalized (sorted, no duplicates). */
export function validateTimetable(raw: unknown): Timetable {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('timetable must be an object');
  const t = raw as Record<string, unknown>;
  for (const k of Object.keys(t)) {
    if (!['per-hour', 'hours-of-day', 'days-of-week', 'days-of-month', 'months'].includes(k))
      throw bad(`timetable has an unknown key ${JSON.stringify(k)}`);
  }
  const perHour = t['per-hour'];
  if (!Number.isInteger(perHour) || (perHour as number) < 1 || (perHour as number) > 60)
    throw bad('timetable.per-hour must be a whole number from 1 to 60');
  const out: Timetable = {
    'per-hour': perHour as number,
    'hours-of-day': intList(t['hours-of-day'], 'hours-of-day', 0, 23),
  };
  const dow = t['days-of-week'];
  const dom = t['days-of-month'];
  if (dow !== undefined && dom !== undefined)
    throw bad('timetable.days-of-week and timetable.days-of-month are mutually exclusive: give one');
  if (dow === undefined && dom === undefined) throw bad('timetable needs days-of-week or days-of-month');
  if (dow !== undefined) out['days-of-week'] = nameList(dow, 'days-of-week', DAYS);
  if (dom !== undefined) out['days-of-month'] = intList(dom, 'days-of-month', 1, 31);
  if (t.months !== undefined) out.months = nameList(t.months, 'months', MONTHS);
  return out;
}

/** The timetable as the cron matcher's schedule: minutes spread evenly over each hour. */
export function timetableSchedule(t: Timetable): CronSchedule {
  const per = t['per-hour'];
  const minutes = new Set<number>();
  for (let k = 0; k < per; k++) minutes.add(Math.floor((k * 60) / per));
  const range = (lo: number, hi: number) => new Set(Array.from({ length: hi - lo + 1 }, (_, i) => lo + i));
  return {
    source: JSON.stringify(t),
    minutes,
    hours: new Set(t['hours-of-day']),
    daysOfMonth: t['days-of-month'] ? new Set(t['days-of-month']) : range(1, 31),
    months: t.months
      ? new Set(t.months.map((m) => MONTHS.indexOf(m as (typeof MONTHS)[number]) + 1))
      : range(1, 12),
    daysOfWeek: t['days-of-week']
      ? new Set(t['days-of-week'].map((d) => DAYS.indexOf(d as (typeof DAYS)[number])))
      : range(0, 6),
    domRestricted: false,
    dowRestricted: false,
  };
}

function validateScheduleParameters(raw: unknown): Record<string, string | number | boolean> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bad('parameters must be an object, with branch or tag among them');
  const params = raw as Record<string, string | number | boolean>;
  validateParameters(params);
  const hasBranch = typeof params.branch === 'string' && params.branch !== '';
  const hasTag = typeof params.tag === 'string' && params.tag !== '';
  if (hasBranch === hasTag)
    throw bad('parameters must contain branch or tag (one of them), e.g. {"branch": "main"}');
  return params;
}

function text(v: unknown, what: string, max: number): string {
  if (typeof v !== 'string' || v.trim() === '') throw bad(`${what} must be a non-empty string`);
  if (v.length > max) throw bad(`${what} is longer than ${max} characters`);
  return v;
}

function attribution(v: unknown): AttributionActor {
  if (v !== 'current' && v !== 'system') throw bad('attribution-actor must be "current" or "system"');
  return v;
}

interface Row {
  id: string;
  project_id: string;
  name: string;
  description: string | null;
  timetable: Timetable;
  attribution_actor: AttributionActor;
  actor_id: string | null;
  parameters: Record<string, string | number | boolean>;
  next_run_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  'id, project_id, name, description, timetable, attribution_actor, actor_id, parameters, next_run_at, created_at, updated_at';

function fromRow(r: Row): PipelineSchedule {
  return {
    id: r.id,
    projectId: r.project_id,
    name: r.name,
    description: r.description,
    timetable: r.timetable,
    attributionActor: r.attribution_actor,
    actorId: r.actor_id,
    parameters: r.parameters,
    nextRunAt: r.next_run_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function conflictOnName(err: unknown, name: string): never {
  if ((err as { code?: string }).code === '23505')
    throw new TorusError(
      'TORUS_E_CONFLICT',
      `A schedule named ${JSON.stringify(name)} already exists in this project.`,
    );
  throw err;
}

export async function createPipelineSchedule(
  res: Resources,
  projectId: string,
  actorId: string,
  input: ScheduleInput,
): Promise<PipelineSchedule> {
  const name = text(input.name, 'name', MAX_NAME);
  const description =
    input.description === undefined || input.description === null
      ? null
      : text(input.description, 'description', MAX_DESCRIPTION);
  const timetable = validateTimetable(input.timetable);
  const actor = attribution(input['attribution-actor']);
  const parameters = validateScheduleParameters(input.parameters);
  const now = res.clock.now();
  try {
    const { rows } = await res.db.query<Row>(
      `INSERT INTO pipeline_schedules (id, project_id, name, description, timetable, attribution_actor, actor_id,
         parameters, next_run_at, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ${COLUMNS}`,
      [
        res.ids.uuid(),
        projectId,
        name,
        description,
        JSON.stringify(timetable),
        actor,
        actorId,
        JSON.stringify(parameters),
        nextCronTime(timetableSchedule(timetable), now) ?? null,
        now,
      ],
    );
    return fromRow(rows[0]!);
  } catch (err) {
    return conflictOnName(err, name);
  }
}

export async function listPipelineSchedules(
  db: Queryable,
  projectId: string,
  page: { offset: number; limit: number },
): Promise<PipelineSchedule[]> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM pipeline_schedules WHERE project_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3`,
    [projectId, page.limit, page.offset],
  );
  return rows.map(fromRow);
}

export async function getPipelineSchedule(db: Queryable, id: string): Promise<PipelineSchedule | null> {
  const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM pipeline_schedules WHERE id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : null;
}

/** PATCH: the given fields replace the stored ones; the saver becomes the actor. */
export async function updatePipelineSchedule(
  res: Resources,
  id: string,
  actorId: string,
  input: ScheduleInput,
): Promise<PipelineSchedule | null> {
  return res.db.transaction(async (tx) => {
    const { rows } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM pipeline_schedules WHERE id = $1 FOR UPDATE`,
      [id],
    );
    const cur = rows[0];
    if (!cur) return null;
    const name = input.name === undefined ? cur.name : text(input.name, 'name', MAX_NAME);
    const description =
      input.description === undefined
        ? cur.description
        : input.description === null
          ? null
          : text(input.description, 'description', MAX_DESCRIPTION);
    const timetable = input.timetable === undefined ? cur.timetable : validateTimetable(input.timetable);
    const actor =
      input['attribution-actor'] === undefined
        ? cur.attribution_actor
        : attribution(input['attribution-actor']);
    const parameters =
      input.parameters === undefined ? cur.parameters : validateScheduleParameters(input.parameters);
    const now = res.clock.now();
    try {
      const updated = await tx.query<Row>(
        `UPDATE pipeline_schedules SET name = $2, description = $3, timetable = $4, attribution_actor = $5, actor_id = $6,
           parameters = $7, next_run_at = $8, updated_at = $9 WHERE id = $1 RETURNING ${COLUMNS}`,
        [
          id,
          name,
          description,
          JSON.stringify(timetable),
          actor,
          actorId,
          JSON.stringify(parameters),
          nextCronTime(timetableSchedule(timetable), now) ?? null,
          now,
        ],
      );
      return fromRow(updated.rows[0]!);
    } catch (err) {
      return conflictOnName(err, name);
    }
  });
}

export async function deletePipelineSchedule(db: Queryable, id: string): Promise<boolean> {
  const r = await db.query('DELETE FROM pipeline_schedules WHERE id = $1', [id]);
  return r.rowCount > 0;
}

/** Fires the due scheduled pipelines inside `tx` (schedules.ts's tick); returns the new pipelines' ids. */
export async function fireDuePipelineSchedules(
  core: EngineCore,
  tx: Queryable,
  now: Date,
  limit: number,
): Promise<string[]> {
  const { rows } = await tx.query<Row>(
    `SELECT ${COLUMNS} FROM pipeline_schedules WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [now, limit],
  );
  const ids: string[] = [];
  for (const row of rows) {
    const next = nextCronTime(timetableSchedule(row.timetable), now) ?? null;
    await tx.query('UPDATE pipeline_schedules SET next_run_at = $2, last_run_at = $3 WHERE id = $1', [
      row.id,
      next,
      now,
    ]);
    const { branch, tag, ...parameters } = row.parameters;
    const pipeline = await insertPipelineIn(core, tx, {
      projectId: row.project_id,
      ...(typeof tag === 'string' && tag !== '' ? { tag } : { branch: String(branch) }),
      parameters,
      triggerType: 'scheduled_pipeline',
      ...(row.attribution_actor === 'current' && row.actor_id ? { actorId: row.actor_id } : {}),
      pipelineSchedule: { id: row.id, name: row.name },
    });
    core.res.logger.info(
      { project: row.project_id, schedule: row.name, pipelineId: pipeline.id },
      'scheduled pipeline triggered',
    );
    ids.push(pipeline.id);
  }
  return ids;
}
