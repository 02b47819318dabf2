// Enqueueing tasks and claiming them: a queue per resource class, claims with FOR UPDATE SKIP LOCKED
// (oldest first), long-polling claims woken by NOTIFY on CHANNELS.taskQueued.
import type { Queryable } from '../storage/index.js';
import { CHANNELS } from '../storage/index.js';
import { TorusError } from '../ops/index.js';
import { MAX_CLAIM_WAIT_MS, type ClaimRequest, type ClaimResponse, type TaskSpec } from './protocol.js';
import {
  assertResourceClass,
  assertResourceClassPattern,
  classFilter,
  patternAllows,
} from './resource-classes.js';
import type { SchedulerContext } from './context.js';
import { completeTask } from './completion.js';

export interface AuthenticatedAgent {
  tokenId: string;
  /** a resource class or a pattern ('machine:*') */
  resourceClass: string;
}

export async function enqueueTasks(
  ctx: SchedulerContext,
  tx: Queryable,
  job: { jobId: string; resourceClass: string; specs: Omit<TaskSpec, 'taskId'>[] },
): Promise<string[]> {
  assertResourceClass(job.resourceClass);
  const specs: TaskSpec[] = job.specs.map((spec, index) => ({
    ...spec,
    taskId: ctx.res.ids.uuid(),
    nodeIndex: index,
  }));
  if (specs.length === 0) return [];
  // one statement for all tasks (node index = position), and the NOTIFY, delivered at commit
  await tx.query(
    `WITH ins AS (
       INSERT INTO tasks (id, job_id, node_index, resource_class, status, spec, queued_at)
       SELECT (s.spec->>'taskId')::uuid, $2, (s.n - 1)::int, $3, 'queued', s.spec, $4
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS s(spec, n)
       RETURNING 1)
     SELECT pg_notify($5, $3) FROM (SELECT 1 FROM ins LIMIT 1) AS any_inserted`,
    [JSON.stringify(specs), job.jobId, job.resourceClass, ctx.res.clock.now(), CHANNELS.taskQueued],
  );
  const ids = specs.map((s) => s.taskId);
  return ids;
}

function assertClaimAllowed(agent: AuthenticatedAgent, req: ClaimRequest): void {
  if (req.resourceClasses.length === 0) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'resourceClasses is empty: name at least one resource class to claim from',
    );
  }
  for (const cls of req.resourceClasses) {
    assertResourceClassPattern(cls);
    if (!patternAllows(agent.resourceClass, cls)) {
      throw new TorusError(
        'TORUS_E_FORBIDDEN',
        `this agent token serves resource class "${agent.resourceClass}", not "${cls}"; create a token for "${cls}"`,
      );
    }
  }
}

async function recordAgentSeen(ctx: SchedulerContext, req: ClaimRequest): Promise<void> {
  await ctx.res.db.query(
    `INSERT INTO agents (id, name, hostname, version, resource_classes, first_seen_at, last_seen_at)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $6)
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, hostname = EXCLUDED.hostname, version = EXCLUDED.version,
       resource_classes = EXCLUDED.resource_classes, last_seen_at = EXCLUDED.last_seen_at`,
    [
      req.agentId,
      req.name ?? '',
      req.hostname ?? '',
      req.version ?? '',
      JSON.stringify(req.resourceClasses),
      ctx.res.clock.now(),
    ],
  );
}

interface Claimed {
  response: ClaimResponse;
  jobId: string;
  resourceClass: string;
  firstOfJob: boolean;
}

/**
 * One attempt, one statement: the oldest queued task of the agent's classes, leased to it, or null.
 * The job_task_starts insert tells exactly one claim per job that it is the job's first.
 */
async function claimOnce(
  ctx: SchedulerContext,
  agentId: string,
  patterns: readonly string[],
): Promise<Claimed | null> {
  const { exact, like } = classFilter(patterns);
  const { settings, clock, ids } = ctx.res;
  const now = clock.now();
  const leaseId = ids.uuid();
  const expires = new Date(now.getTime() + settings.leaseMs);
  const { rows } = await ctx.res.db.query<{
    id: string;
    job_id: string;
    resource_class: string;
    spec: TaskSpec;
    first_of_job: boolean;
  }>(
    `WITH picked AS (
       SELECT id FROM tasks
       WHERE status = 'queued' AND (resource_class = ANY($1::text[]) OR resource_class LIKE ANY($2::text[]))
       ORDER BY queued_at, node_index
       LIMIT 1 FOR UPDATE SKIP LOCKED),
     claimed AS (
       UPDATE tasks t SET status = 'running', agent_id = $3, lease_id = $4, lease_expires_at = $5, started_at = $6
       FROM picked WHERE t.id = picked.id
       RETURNING t.id, t.job_id, t.resource_class, t.spec),
     first AS (
       INSERT INTO job_task_starts (job_id, first_task_id, started_at)
       SELECT job_id, id, $6 FROM claimed
       ON CONFLICT (job_id) DO NOTHING
       RETURNING job_id)
     SELECT c.id, c.job_id, c.resource_class, c.spec, EXISTS (SELECT 1 FROM first) AS first_of_job FROM claimed c`,
    [exact, like, agentId, leaseId, expires, now],
  );
  const task = rows[0];
  if (!task) return null;
  ctx.leaseTaken(expires);
  return {
    response: {
      task: { ...task.spec, taskId: task.id },
      leaseId,
      leaseMs: settings.leaseMs,
      heartbeatMs: settings.heartbeatMs,
    },
    jobId: task.job_id,
    resourceClass: task.resource_class,
    firstOfJob: task.first_of_job,
  };
}

/** A claim whose client went away after it won a task: the task goes back to the front of the queue. */
async function releaseClaim(ctx: SchedulerContext, got: Claimed): Promise<void> {
  const taskId = got.response.task.taskId;
  await ctx.res.db.transaction(async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE tasks SET status = 'queued', agent_id = NULL, lease_id = NULL, lease_expires_at = NULL, started_at = NULL
       WHERE id = $1 AND lease_id = $2 AND status = 'running'`,
      [taskId, got.response.leaseId],
    );
    if (rowCount === 0) return;
    // the job has not really started: the next claim reports it
    await tx.query('DELETE FROM job_task_starts WHERE job_id = $1 AND first_task_id = $2', [
      got.jobId,
      taskId,
    ]);
    await tx.query('SELECT pg_notify($1, $2)', [CHANNELS.taskQueued, got.resourceClass]);
  });
}

export async function claimTask(
  ctx: SchedulerContext,
  agent: AuthenticatedAgent,
  req: ClaimRequest,
  signal: AbortSignal,
  stopped: () => boolean,
): Promise<ClaimResponse | null> {
  assertClaimAllowed(agent, req);
  await recordAgentSeen(ctx, req);
  const waitMs = Math.max(0, Math.min(req.waitMs, MAX_CLAIM_WAIT_MS));
  const deadline = Date.now() + waitMs;
  // LISTEN first, then look: a task queued in between wakes the waiter instead of being missed.
  if (waitMs > 0 && !stopped()) await ctx.waiters.ready();
  const waiter = ctx.waiters.add(req.resourceClasses);
  try {
    for (;;) {
      if (signal.aborted) return null;
      waiter.reset();
      const got = await claimOnce(ctx, req.agentId, req.resourceClasses);
      if (got) {
        if (signal.aborted) {
          await releaseClaim(ctx, got);
          return null;
        }
        // in the background: the agent gets its task without waiting for the engine's transaction
        if (got.firstOfJob) ctx.jobHooks.taskStarted(got.jobId);
        const prepared = await ctx.jobHooks.prepareTask(got.jobId, got.response.task);
        if ('refuse' in prepared) {
          await completeTask(ctx, got.response.task.taskId, {
            leaseId: got.response.leaseId,
            status: 'failed',
            message: prepared.refuse,
          });
          continue;
        }
        return { ...got.response, task: prepared };
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0 || stopped()) return null;
      if (!(await waiter.wait(remaining, signal))) return null;
    }
  } finally {
    ctx.waiters.remove(waiter);
  }
}
