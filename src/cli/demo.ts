// The quick start's demo: turns examples/demo into a git repository in the data directory, makes it
// a project (once; later starts reuse it), triggers a pipeline and prints its progress.
import { cpSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { CHANNELS } from '../storage/index.js';
import type { RunningServer } from './server.js';

const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/demo/', import.meta.url));
export const DEMO_ORG = 'demo';
export const DEMO_PROJECT = 'hello-torus';
const GIT_IDENTITY = ['-c', 'user.name=Torus Demo', '-c', 'user.email=demo@torus.invalid'];

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', [...GIT_IDENTITY, ...args], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Creates (once) the demo repository and project; returns the project's slug. */
export async function ensureDemoProject(server: RunningServer): Promise<string> {
  const slug = `circleci/${DEMO_ORG}/${DEMO_PROJECT}`;
  const existing = await server.engine.getProject(slug);
  if (existing) return slug;
  const repo = join(server.res.settings.dataDir, 'demo-repo');
  if (!existsSync(join(repo, '.git'))) {
    cpSync(EXAMPLE_DIR, repo, { recursive: true });
    git(repo, 'init', '-q', '-b', 'main');
    git(repo, 'add', '-A');
    git(repo, 'commit', '-q', '-m', 'Demo project for Torus');
  }
  await server.engine.createProject({
    orgName: DEMO_ORG,
    name: DEMO_PROJECT,
    vcsUrl: `file://${repo}`,
    defaultBranch: 'main',
  });
  return slug;
}

interface JobLine {
  workflow: string;
  name: string;
  status: string;
  number: number | null;
}

/** Triggers the demo pipeline and prints each job's status as it changes, until every workflow is final. */
export async function runDemoPipeline(
  server: RunningServer,
  print: (line: string) => void,
): Promise<boolean> {
  const slug = await ensureDemoProject(server);
  const project = await server.engine.getProject(slug);
  if (!project) throw new Error(`demo project ${slug} vanished`);
  const pipeline = await server.engine.triggerPipeline({
    projectId: project.id,
    branch: 'main',
    triggerType: 'explicit',
  });
  print(`Demo pipeline #${pipeline.number} of ${slug} triggered (id ${pipeline.id})`);
  const { db } = server.res;
  const seen = new Map<string, string>();
  const finalWorkflow = new Set(['success', 'failed', 'error', 'canceled', 'not_run', 'unauthorized']);

  return new Promise<boolean>((resolve, reject) => {
    let done = false;
    let unlisten: (() => Promise<void>) | undefined;
    let checking = false;
    let again = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      void unlisten?.();
      resolve(ok);
    };
    const check = async (): Promise<void> => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      try {
        const p = await db.query<{ state: string; errors: Array<{ message: string }> }>(
          'SELECT state, errors FROM pipelines WHERE id = $1',
          [pipeline.id],
        );
        const row = p.rows[0];
        if (row?.state === 'errored') {
          print(`Demo pipeline errored: ${row.errors.map((e) => e.message).join('; ')}`);
          return finish(false);
        }
        const jobs = await db.query<JobLine>(
          `SELECT w.name AS workflow, j.name, j.status, j.number FROM jobs j JOIN workflows w ON w.id = j.workflow_id
           WHERE w.pipeline_id = $1 ORDER BY j.created_at, j.name`,
          [pipeline.id],
        );
        for (const j of jobs.rows) {
          const key = `${j.workflow}/${j.name}`;
          if (seen.get(key) !== j.status) {
            seen.set(key, j.status);
            print(`  ${key.padEnd(24)} ${j.status}${j.number ? `  (job #${j.number})` : ''}`);
          }
        }
        const wfs = await db.query<{ name: string; status: string }>(
          'SELECT name, status FROM workflows WHERE pipeline_id = $1',
          [pipeline.id],
        );
        if (
          row?.state === 'pending' &&
          wfs.rows.length > 0 &&
          wfs.rows.every((w) => finalWorkflow.has(w.status))
        ) {
          const ok = wfs.rows.every((w) => w.status === 'success');
          print(
            `Demo pipeline #${pipeline.number}: ${wfs.rows.map((w) => `${w.name} ${w.status}`).join(', ')}`,
          );
          finish(ok);
        }
      } finally {
        checking = false;
        if (again && !done) {
          again = false;
          void check().catch(reject);
        }
      }
    };
    // Notifications drive the updates; the slow timer only covers a missed one.
    const timer = setInterval(() => void check().catch(reject), 2000);
    db.listen(CHANNELS.pipelineChanged, (id) => {
      if (id === pipeline.id) void check().catch(reject);
    })
      .then((u) => {
        unlisten = u;
        return check();
      })
      .catch(reject);
  });
}
