// Queue diagnostics: why a queued job is still waiting, in the words the job page shows.
import type { JobMessage, SchedulerContext } from './context.js';
import { classMatches } from './resource-classes.js';

/** An agent counts as serving a class if it asked for work for it this recently. */
export const AGENT_SEEN_WINDOW_MS = 60_000;

function hintFor(cls: string, serverUrl: string): string {
  const server = serverUrl || '<server URL>';
  if (cls.startsWith('docker:')) {
    return `the Docker executor is not available in this Torus release; jobs using \`docker:\` wait until an agent that serves ${cls} connects`;
  }
  if (cls.includes('/')) {
    return `this is a self-hosted runner class: start one with \`torus agent --server ${server} --token <token for ${cls}>\``;
  }
  return (
    `no local agent of this server claims it (TORUS_LOCAL_AGENTS and TORUS_LOCAL_AGENT_CLASSES decide which run), ` +
    `and no agent connected for it: start one with \`torus agent --server ${server} --token <token for ${cls}> --resource-class ${cls}\``
  );
}

export async function explainQueuedJob(ctx: SchedulerContext, jobId: string): Promise<JobMessage[]> {
  const { db, clock, settings } = ctx.res;
  const queued = await db.query<{ resource_class: string }>(
    "SELECT DISTINCT resource_class FROM tasks WHERE job_id = $1 AND status = 'queued' ORDER BY resource_class",
    [jobId],
  );
  if (queued.rows.length === 0) return [];
  const since = new Date(clock.now().getTime() - AGENT_SEEN_WINDOW_MS);
  const agents = await db.query<{ resource_classes: unknown }>(
    'SELECT resource_classes FROM agents WHERE last_seen_at >= $1',
    [since],
  );
  const patterns = agents.rows.flatMap((a) =>
    Array.isArray(a.resource_classes)
      ? a.resource_classes.filter((p): p is string => typeof p === 'string')
      : [],
  );
  const messages: JobMessage[] = [];
  for (const { resource_class: cls } of queued.rows) {
    if (patterns.some((p) => classMatches(p, cls))) continue;
    messages.push({
      type: 'warning',
      message: `No agent is serving resource class "${cls}": ${hintFor(cls, settings.url)}`,
      reason: 'no-agent',
    });
  }
  return messages;
}
