// Legacy scheduled workflows (`workflows.<name>.triggers: - schedule: {cron, filters: {branches}}`),
// and the loop that fires them and the API's scheduled pipelines (pipeline-schedules.ts).
// As on CircleCI, the config on a branch decides that branch's schedules: when a pipeline of the
// branch compiles, each workflow trigger whose branch filter admits the branch becomes a row of
// workflow_schedules (and rows the config no longer has go). The ScheduleLoop, on every server
// replica, claims due rows with FOR UPDATE SKIP LOCKED, moves each to its next time in the same
// transaction (so one replica fires it, once) and triggers a pipeline on the branch's newest commit
// that runs that workflow alone. A schedule that came due while no server ran fires once, not once
// per missed time.
import { nextCronTime, parseCron, type CompiledConfig, type CompiledWorkflow } from '../config/index.js';
import type { Resources } from '../ops/index.js';
import type { Queryable } from '../storage/index.js';
import type { EngineCore, PipelineRecord, ScheduledWorkflow } from './core.js';
import { FilterPatternError, filtersAllow } from './filters.js';
import { fireDuePipelineSchedules } from './pipeline-schedules.js';
import { insertPipelineIn } from './trigger.js';
import { Periodic } from '../ops/periodic.js';

interface ScheduleRow {
  id: string;
  project_id: string;
  branch: string;
  workflow: string;
  cron: string;
  next_run_at: Date;
}

/** Whether `workflow` has a trigger with this cron that admits `branch` (filter errors: no). */
function triggerAdmits(workflow: CompiledWorkflow, cron: string | undefined, branch: string): boolean {
  return workflow.triggers.some((t) => {
    if (cron !== undefined && t.cron !== cron) return false;
    try {
      return filtersAllow({ branches: t.filters.branches }, { branch });
    } catch (err) {
      if (err instanceof FilterPatternError) return false;
      throw err;
    }
  });
}

/** Whether a pipeline started by `scheduled` runs `workflow` (selectWorkflows). */
export function isScheduledHere(
  workflow: CompiledWorkflow,
  scheduled: ScheduledWorkflow,
  branch: string | null,
): boolean {
  return (
    workflow.name === scheduled.workflow && branch !== null && triggerAdmits(workflow, scheduled.cron, branch)
  );
}

/** The (workflow, cron) pairs of `config` that run on `branch`, each once. */
export function schedulesFor(config: CompiledConfig, branch: string): { workflow: string; cron: string }[] {
  const out = new Map<string, { workflow: string; cron: string }>();
  for (const w of config.workflows) {
    for (const t of w.triggers) {
      if (triggerAdmits({ ...w, triggers: [t] }, undefined, branch))
        out.set(`${w.name}\n${t.cron}`, { workflow: w.name, cron: t.cron });
    }
  }
  return [...out.values()];
}

/**
 * Makes the branch's workflow schedules those of `config`, the config of its pipeline `pipeline`,
 * unless a newer pipeline of the branch set them already. Runs in the pipeline's creation transaction.
 */
export async function syncWorkflowSchedules(
  core: EngineCore,
  tx: Queryable,
  pipeline: PipelineRecord,
  config: CompiledConfig,
): Promise<void> {
  const branch = pipeline.branch;
  if (!branch) return;
  const claimed = await tx.query(
    `INSERT INTO workflow_schedule_sources (project_id, branch, pipeline_number) VALUES ($1, $2, $3)
     ON CONFLICT (project_id, branch) DO UPDATE SET pipeline_number = EXCLUDED.pipeline_number
       WHERE workflow_schedule_sources.pipeline_number <= EXCLUDED.pipeline_number
     RETURNING pipeline_number`,
    [pipeline.project_id, branch, pipeline.number],
  );
  if (claimed.rows.length === 0) return; // a newer pipeline of the branch decided already
  const wanted = schedulesFor(config, branch);
  const { rows: existing } = await tx.query<{ id: string; workflow: string; cron: string }>(
    'SELECT id, workflow, cron FROM workflow_schedules WHERE project_id = $1 AND branch = $2',
    [pipeline.project_id, branch],
  );
  const key = (s: { workflow: string; cron: string }) => `${s.workflow}\n${s.cron}`;
  const wantedKeys = new Set(wanted.map(key));
  const gone = existing.filter((e) => !wantedKeys.has(key(e))).map((e) => e.id);
  if (gone.length > 0) await tx.query('DELETE FROM workflow_schedules WHERE id = ANY($1::uuid[])', [gone]);
  const have = new Set(existing.map(key));
  const now = core.res.clock.now();
  for (const s of wanted) {
    if (have.has(key(s))) continue;
    // the compiler checked the cron; one that never fires (30 February) is not kept
    const next = nextCronTime(parseCron(s.cron), now);
    if (!next) continue;
    await tx.query(
      `INSERT INTO workflow_schedules (id, project_id, branch, workflow, cron, next_run_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, branch, workflow, cron) DO NOTHING`,
      [core.res.ids.uuid(), pipeline.project_id, branch, s.workflow, s.cron, next, now],
    );
  }
  if (gone.length > 0 || wanted.length > have.size) {
    core.res.logger.info(
      { project: pipeline.project_id, branch, schedules: wanted.map((s) => `${s.workflow} (${s.cron})`) },
      'workflow schedules updated',
    );
  }
}

/**
 * Fires the workflow schedules and scheduled pipelines that are due: claims up to `limit` rows of
 * each, moves each to its next time and inserts its pipeline, all in one transaction. Returns the
 * new pipelines' ids (the caller processes them as it does any trigger's).
 */
export async function fireDueSchedules(core: EngineCore, limit = 50): Promise<string[]> {
  const now = core.res.clock.now();
  return core.res.db.transaction(async (tx) => {
    const ids = await fireDuePipelineSchedules(core, tx, now, limit);
    const { rows } = await tx.query<ScheduleRow>(
      `SELECT id, project_id, branch, workflow, cron, next_run_at FROM workflow_schedules
        WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [now, limit],
    );
    for (const row of rows) {
      const next = nextCronTime(parseCron(row.cron), now);
      if (next) {
        await tx.query('UPDATE workflow_schedules SET next_run_at = $2, last_run_at = $3 WHERE id = $1', [
          row.id,
          next,
          now,
        ]);
      } else {
        await tx.query('DELETE FROM workflow_schedules WHERE id = $1', [row.id]);
      }
      const pipeline = await insertPipelineIn(core, tx, {
        projectId: row.project_id,
        branch: row.branch,
        triggerType: 'scheduled_pipeline',
        scheduledWorkflow: { id: row.id, workflow: row.workflow, cron: row.cron },
      });
      core.res.logger.info(
        {
          project: row.project_id,
          branch: row.branch,
          workflow: row.workflow,
          cron: row.cron,
          pipelineId: pipeline.id,
        },
        'workflow schedule fired',
      );
      ids.push(pipeline.id);
    }
    return ids;
  });
}

/** The workflow schedules of a project (the `torus` API and tests). */
export async function listWorkflowSchedules(
  db: Queryable,
  projectId: string,
): Promise<
  { id: string; branch: string; workflow: string; cron: string; nextRunAt: Date; lastRunAt: Date | null }[]
> {
  const { rows } = await db.query<ScheduleRow & { last_run_at: Date | null }>(
    `SELECT id, project_id, branch, workflow, cron, next_run_at, last_run_at FROM workflow_schedules
      WHERE project_id = $1 ORDER BY branch, workflow, cron`,
    [projectId],
  );
  return rows.map((r) => ({
    id: r.id,
    branch: r.branch,
    workflow: r.workflow,
    cron: r.cron,
    nextRunAt: r.next_run_at,
    lastRunAt: r.last_run_at,
  }));
}

/**
 * Checks for due schedules every `tickMs` (default settings.scheduleTickMs) and hands each new
 * pipeline to `start`. Every replica runs one; row locks keep a firing to one of them.
 */
export class ScheduleLoop {
  private readonly loop: Periodic;

  constructor(
    private readonly res: Resources,
    private readonly fire: () => Promise<string[]>,
    tickMs: number,
  ) {
    this.loop = new Periodic(
      () => this.tick(),
      () => tickMs,
    );
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async tick(): Promise<void> {
    try {
      // a burst of due schedules (after downtime) is drained batch by batch
      while (this.loop.started && (await this.fire()).length > 0);
    } catch (err) {
      this.res.logger.error({ err }, 'firing workflow schedules failed; trying again at the next tick');
    }
  }
}
