// Test helpers for the built-in step tests (not part of the public API): the real API server (its
// agent blob routes) listening on a loopback port over a PGlite database, jobs of one workflow each
// with a running, leased task, and runTask driving real tasks on the host or Docker executor with a
// real HttpBlobClient.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import Docker from 'dockerode';
import { buildApp } from '../../api/index.js';
import { createAccounts } from '../../accounts/index.js';
import { createScheduler, type Scheduler } from '../../scheduler/index.js';
import type { Step } from '../../config/model.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import { fakeEngine, seedPipeline } from '../../../test/api/fakes.js';
import { openTestResources, type TestResources } from '../../../test/api/resources.js';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { requirePart } from '../../../test/harness/parts.js';
import { createBlobClient } from '../blob-client.js';
import { DockerExecutor, HostExecutor } from '../executors/index.js';
import type { Executor } from '../executor.js';
import { runTask, type TaskResult } from '../task.js';
import { MemorySink, taskSpec } from '../testing.js';

export interface BlobServer {
  res: TestResources;
  url: string;
  agentToken: string;
  projectId: string;
  /** a new workflow (its own pipeline on `branch`); returns its id */
  workflow(branch?: string): Promise<string>;
  /** a job of `workflowId` with a running task holding a live lease */
  job(
    workflowId: string,
    name: string,
    requires?: string[],
    position?: number,
  ): Promise<{ jobId: string; taskId: string; leaseId: string; number: number }>;
  close(): Promise<void>;
}

export async function startBlobServer(): Promise<BlobServer> {
  const res = await openTestResources('pglite');
  const accounts = createAccounts(res);
  const scheduler: Scheduler = createScheduler(res, {
    onTaskStarted: async () => {},
    onJobFinished: async () => {},
  });
  const app: FastifyInstance = await buildApp(res, { engine: fakeEngine(res), scheduler, accounts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await accounts.bootstrapAdmin('admin-token-for-step-tests');
  const agentToken = (await scheduler.createAgentToken('*', 'step tests')).token;
  const seeded = await seedPipeline(res, null);
  const { db, ids } = res;
  const branches = new Map<string, string>();
  return {
    res,
    url: `http://127.0.0.1:${port}`,
    agentToken,
    projectId: seeded.projectId,
    async workflow(branch = 'main') {
      const pipelineId = ids.uuid();
      const workflowId = ids.uuid();
      const n = await db.query<{ n: number }>(
        'UPDATE projects SET next_pipeline_number = next_pipeline_number + 1 WHERE id = $1 RETURNING next_pipeline_number - 1 AS n',
        [seeded.projectId],
      );
      await db.query(
        `INSERT INTO pipelines (id, project_id, number, state, trigger_type, branch) VALUES ($1, $2, $3, 'created', 'api', $4)`,
        [pipelineId, seeded.projectId, n.rows[0]!.n, branch],
      );
      await db.query(
        `INSERT INTO workflows (id, pipeline_id, project_id, name, status, workspace_id) VALUES ($1, $2, $3, 'w', 'running', $1)`,
        [workflowId, pipelineId, seeded.projectId],
      );
      branches.set(workflowId, branch);
      return workflowId;
    },
    async job(workflowId, name, requires = [], position = 0) {
      const jobId = ids.uuid();
      const taskId = ids.uuid();
      const leaseId = ids.uuid();
      const num = await db.query<{ n: number }>(
        'UPDATE projects SET next_job_number = next_job_number + 1 WHERE id = $1 RETURNING next_job_number - 1 AS n',
        [seeded.projectId],
      );
      await db.query(
        `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status, requires, position, created_at)
         VALUES ($1, $2, $3, $4, 'build', $5, 'running', $6, $7, now())`,
        [
          jobId,
          workflowId,
          seeded.projectId,
          name,
          num.rows[0]!.n,
          JSON.stringify(requires.map((r) => ({ name: r, statuses: ['success'] }))),
          position,
        ],
      );
      await db.query(
        `INSERT INTO tasks (id, job_id, node_index, resource_class, status, spec, lease_id, lease_expires_at)
         VALUES ($1, $2, 0, 'machine:medium', 'running', '{}', $3, now() + interval '1 hour')`,
        [taskId, jobId, leaseId],
      );
      return { jobId, taskId, leaseId, number: num.rows[0]!.n };
    },
    async close() {
      await app.close();
      await scheduler.stop();
      await res.close();
    },
  };
}

/** a built-in step as the compiler writes it */
export function builtIn(type: string, args: Record<string, unknown>, name = type): Step {
  return { type, name, when: 'on_success', args };
}

export interface ExecutorKind {
  name: 'host' | 'docker';
  /** how the test names it */
  label: string;
  available: boolean;
  /** the blob client reads and writes cache archives as the store's files (an agent on the server's machine) */
  direct?: boolean;
  executor(): Executor;
  spec(steps: Step[], overrides: Partial<TaskSpec>): TaskSpec;
}

/**
 * the host executor (bubblewrap when present) and the Docker executor (busybox test image); with
 * `direct`, the host executor once more with a blob client that uses the store's files
 */
export function executorKinds(
  what: string,
  opts: { direct?: boolean } = {},
): { kinds: ExecutorKind[]; cleanup: () => void } {
  const base = mkdtempSync(path.join(tmpdir(), 'torus-steps-'));
  const hasBwrap = requirePart('bwrap', `${what} on the host executor in the sandbox`);
  const hasDocker = requireDocker(`${what} on the Docker executor`);
  const docker = hasDocker ? new Docker() : undefined;
  const host: ExecutorKind = {
    name: 'host',
    label: 'host',
    available: true,
    executor: () =>
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: hasBwrap ? 'bwrap' : 'none' }),
    spec: (steps, overrides) => taskSpec(steps, overrides),
  };
  return {
    kinds: [
      host,
      ...(opts.direct ? [{ ...host, label: "host, with the store's files", direct: true }] : []),
      {
        name: 'docker',
        label: 'docker',
        available: hasDocker,
        executor: () => new DockerExecutor({ docker }),
        spec: (steps, overrides) =>
          taskSpec(steps, {
            executor: { type: 'docker', images: [{ image: BUSYBOX_IMAGE, environment: {} }] },
            resourceClass: 'small',
            ...overrides,
          }),
      },
    ],
    cleanup: () => rmSync(base, { recursive: true, force: true }),
  };
}

/** runs `steps` as the task of `job` through runTask with a real blob client */
export async function runJob(
  server: BlobServer,
  kind: ExecutorKind,
  job: { taskId: string; leaseId: string; number: number; jobId: string },
  name: string,
  steps: Step[],
  env: Record<string, string> = {},
): Promise<{ result: TaskResult; sink: MemorySink }> {
  const sink = new MemorySink();
  const spec = kind.spec(steps, {
    taskId: job.taskId,
    jobId: job.jobId,
    jobNumber: job.number,
    jobName: name,
    environment: {
      CI: 'true',
      CIRCLECI: 'true',
      CIRCLE_JOB: name,
      CIRCLE_BRANCH: 'main',
      CIRCLE_SHA1: 'abc123abc123abc123abc123abc123abc123abcd',
      CIRCLE_BUILD_NUM: String(job.number),
      ...env,
    },
  });
  const signal = new AbortController().signal;
  const blobs = createBlobClient({
    serverUrl: server.url,
    token: server.agentToken,
    taskId: job.taskId,
    leaseId: job.leaseId,
    signal,
    direct: kind.direct === true,
  });
  const result = await runTask(spec, sink, {
    workRoot: path.join(tmpdir(), 'unused'),
    sandbox: 'none',
    signal,
    executor: kind.executor(),
    blobs,
  });
  return { result, sink };
}
