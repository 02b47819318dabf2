// Test helpers for the scheduler's suites: Resources on a test database, the parent rows a task needs
// (organization → project → pipeline → workflow → job), and task specs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import type { Database } from '../storage/index.js';
import { FsObjectStore } from '../storage/index.js';
import { defaultSettings, randomIds, systemClock, type Resources, type Settings } from '../ops/index.js';
import type { TaskOutcome, TaskSpec } from './protocol.js';
import type { SchedulerHooks } from './context.js';

export interface TestResources {
  res: Resources;
  /** removes the object store's directory */
  cleanup(): void;
}

export function testResources(db: Database, settings: Partial<Settings> = {}): TestResources {
  const dir = mkdtempSync(join(tmpdir(), 'torus-sched-'));
  const res: Resources = {
    db,
    store: new FsObjectStore(dir),
    clock: systemClock,
    ids: randomIds,
    logger: pino({ level: 'silent' }),
    settings: {
      ...defaultSettings(),
      leaseMs: 2_000,
      heartbeatMs: 500,
      maxLeaseRequeues: 2,
      url: 'http://127.0.0.1:8080',
      ...settings,
    },
  };
  return { res, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Hooks that record their calls. */
export function recordingHooks(): SchedulerHooks & {
  started: string[];
  finished: { jobId: string; outcome: TaskOutcome }[];
} {
  const started: string[] = [];
  const finished: { jobId: string; outcome: TaskOutcome }[] = [];
  return {
    started,
    finished,
    onTaskStarted: async (jobId) => {
      started.push(jobId);
    },
    onJobFinished: async (jobId, outcome) => {
      finished.push({ jobId, outcome });
    },
  };
}

let jobNumber = 0;

/** Inserts an organization, project, pipeline, workflow and one job; returns the job id. */
export async function insertJob(
  db: Database,
  opts: { resourceClass?: string; parallelism?: number } = {},
): Promise<string> {
  const org = randomUUID();
  const project = randomUUID();
  const pipeline = randomUUID();
  const workflow = randomUUID();
  const job = randomUUID();
  const slug = `circleci/org-${org.slice(0, 8)}/p`;
  await db.query(`INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $3)`, [
    org,
    `org-${org.slice(0, 8)}`,
    `circleci/org-${org.slice(0, 8)}`,
  ]);
  await db.query(
    `INSERT INTO projects (id, org_id, name, slug, vcs_url) VALUES ($1, $2, 'p', $3, 'file:///tmp/none')`,
    [project, org, slug],
  );
  await db.query(
    `INSERT INTO pipelines (id, project_id, number, state, trigger_type) VALUES ($1, $2, 1, 'created', 'api')`,
    [pipeline, project],
  );
  await db.query(
    `INSERT INTO workflows (id, pipeline_id, project_id, name, status, workspace_id) VALUES ($1, $2, $3, 'build', 'running', $1)`,
    [workflow, pipeline, project],
  );
  await db.query(
    `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status, parallelism, resource_class, executor_type)
     VALUES ($1, $2, $3, 'test', 'build', $4, 'queued', $5, $6, 'machine')`,
    [job, workflow, project, ++jobNumber, opts.parallelism ?? 1, opts.resourceClass ?? 'machine:medium'],
  );
  return job;
}

export function taskSpec(
  jobId: string,
  nodeIndex = 0,
  nodeTotal = 1,
  resourceClass = 'machine:medium',
): Omit<TaskSpec, 'taskId'> {
  return {
    jobId,
    jobNumber: 1,
    jobName: 'test',
    projectSlug: 'circleci/org/p',
    nodeIndex,
    nodeTotal,
    executor: { type: 'machine' },
    resourceClass,
    workingDirectory: '~/project',
    environment: { CIRCLE_JOB: 'test' },
    steps: [
      {
        type: 'run',
        name: 'hello',
        command: 'echo hi',
        environment: {},
        noOutputTimeoutMs: 600_000,
        when: 'on_success',
        background: false,
      },
    ],
    checkout: { repoUrl: 'file:///tmp/none', revision: 'abc' },
    secrets: [],
  };
}

/** Inserts a job and enqueues `n` tasks for it through `enqueue`. */
export async function enqueueJob(
  db: Database,
  enqueue: (
    tx: Parameters<Parameters<Database['transaction']>[0]>[0],
    job: { jobId: string; resourceClass: string; specs: Omit<TaskSpec, 'taskId'>[] },
  ) => Promise<string[]>,
  opts: { resourceClass?: string; parallelism?: number } = {},
): Promise<{ jobId: string; taskIds: string[] }> {
  const resourceClass = opts.resourceClass ?? 'machine:medium';
  const n = opts.parallelism ?? 1;
  const jobId = await insertJob(db, { resourceClass, parallelism: n });
  const specs = Array.from({ length: n }, (_, i) => taskSpec(jobId, i, n, resourceClass));
  const taskIds = await db.transaction((tx) => enqueue(tx, { jobId, resourceClass, specs }));
  return { jobId, taskIds };
}

/** Empties the scheduler's tables and their parents between tests sharing one database. */
export async function truncateAll(db: Database): Promise<void> {
  await db.query(
    'TRUNCATE job_task_starts, output_segments, steps, tasks, agents, agent_tokens, jobs, workflows, pipelines, projects, organizations CASCADE',
  );
}
