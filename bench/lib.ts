// Helpers shared by the benchmarks: percentiles, an in-process server on a temp data dir, git
// repositories made on the fly, and pipelines run on either kind of server (in this process, or a
// `torus server` process reached through its API).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSettings } from '../src/ops/index.js';
import { startServer, type RunningServer } from '../src/cli/server.js';
import { api, makeGitRepo, type TorusProcess } from '../test/harness/torus.js';
import { waitFor } from '../test/harness/net.js';

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export function fmt(ms: number): string {
  return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

export async function withServer<T>(
  env: Record<string, string>,
  fn: (server: RunningServer) => Promise<T>,
): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'torus-bench-'));
  const settings = loadSettings({
    TORUS_DATA_DIR: dataDir,
    TORUS_PORT: '0',
    TORUS_LOG_LEVEL: 'warn',
    TORUS_ADMIN_TOKEN: 'bench',
    ...env,
  });
  const server = await startServer(settings);
  try {
    return await fn(server);
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export { makeGitRepo };

/** the statuses of a workflow that has not ended yet */
const WORKFLOW_UNFINISHED = ['running', 'failing', 'not_run', 'on_hold'];

/**
 * Triggers a pipeline of the project (branch `main`) on the in-process server and waits for its
 * workflow to end, reading its status from the database every `pollMs`. The final status is
 * returned, not checked: each benchmark says what a failure means to it.
 */
export async function runPipeline(
  server: RunningServer,
  projectId: string,
  { pollMs }: { pollMs: number },
): Promise<{ pipelineId: string; status: string }> {
  const p = await server.engine.triggerPipeline({ projectId, branch: 'main', triggerType: 'api' });
  for (;;) {
    const r = await server.res.db.query<{ status: string }>(
      'SELECT status FROM workflows WHERE pipeline_id = $1',
      [p.id],
    );
    const status = r.rows[0]?.status ?? 'running';
    if (!WORKFLOW_UNFINISHED.includes(status)) return { pipelineId: p.id, status };
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Creates a project in organization `bench` through the API of a `torus server` process, from a
 * new git repository holding `config` as its `.circleci/config.yml`; returns the project's slug.
 */
export async function createProjectViaApi(
  server: TorusProcess,
  name: string,
  config: string,
): Promise<string> {
  const repo = makeGitRepo({ '.circleci/config.yml': config });
  const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/bench/project', {
    name,
    vcs_url: repo,
  });
  if (p.status >= 300) throw new Error(`project: ${JSON.stringify(p.body)}`);
  return p.body.slug;
}

/**
 * Triggers a pipeline of the project through the API of a `torus server` process and waits (up to
 * a minute, asking every `pollMs`) for its first workflow's first job to have a number.
 */
export async function triggerPipelineViaApi(
  server: TorusProcess,
  slug: string,
  { pollMs }: { pollMs: number },
): Promise<{ pipelineId: string; jobNumber: number }> {
  const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {});
  if (trig.status >= 300) throw new Error(`trigger failed: ${JSON.stringify(trig.body)}`);
  const jobNumber = await waitFor(
    async () => {
      const wf = (
        await api<{ items: Array<{ id: string }> }>(
          server.url,
          'GET',
          `/api/v2/pipeline/${trig.body.id}/workflow`,
        )
      ).body.items?.[0];
      if (!wf) return false;
      const j = (
        await api<{ items: Array<{ job_number?: number }> }>(
          server.url,
          'GET',
          `/api/v2/workflow/${wf.id}/job`,
        )
      ).body.items?.[0];
      return j?.job_number ?? false;
    },
    60_000,
    pollMs,
  );
  return { pipelineId: trig.body.id, jobNumber };
}
