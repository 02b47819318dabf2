// Small stand-ins for the pipeline engine and the scheduler, for API tests that check HTTP
// behaviour (shapes, auth, errors, streaming) without running pipelines; plus rows seeded straight
// into the schema's tables for the read endpoints.
import type { Queryable } from '../../src/storage/index.js';
import type { PipelineEngine, ProjectRow } from '../../src/pipelines/index.js';
import type { JobMessage, OutputChunk, Scheduler } from '../../src/scheduler/index.js';
import { TorusError, type Resources } from '../../src/ops/index.js';

export interface EngineCall {
  op: string;
  args: unknown[];
}

interface ProjectDbRow {
  id: string;
  org_id: string;
  org_name: string;
  name: string;
  slug: string;
  vcs_url: string;
  default_branch: string;
  created_at: Date;
}

async function projectBy(db: Queryable, where: string, v: string): Promise<ProjectRow | null> {
  const r = await db.query<ProjectDbRow>(
    `SELECT p.id, p.org_id, o.name AS org_name, p.name, p.slug, p.vcs_url, p.default_branch, p.created_at
     FROM projects p JOIN organizations o ON o.id = p.org_id WHERE ${where}`,
    [v],
  );
  const p = r.rows[0];
  return p
    ? {
        id: p.id,
        orgId: p.org_id,
        orgName: p.org_name,
        name: p.name,
        slug: p.slug,
        vcsUrl: p.vcs_url,
        defaultBranch: p.default_branch,
        createdAt: p.created_at,
      }
    : null;
}

/** Records calls; creates projects and pipeline rows as the real engine does, runs nothing. */
export function fakeEngine(res: Resources): PipelineEngine & { calls: EngineCall[] } {
  const calls: EngineCall[] = [];
  const { db, ids } = res;
  const record = (op: string, ...args: unknown[]) => calls.push({ op, args });
  return {
    calls,
    async createProject(input) {
      record('createProject', input);
      const name =
        input.name ??
        input.vcsUrl
          .split('/')
          .pop()!
          .replace(/\.git$/, '');
      const slug = `circleci/${input.orgName}/${name}`;
      if (await projectBy(db, 'p.slug = $1', slug))
        throw new TorusError('TORUS_E_CONFLICT', `project ${slug} already exists`);
      await db.query(
        `INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $3) ON CONFLICT (slug) DO NOTHING`,
        [ids.uuid(), input.orgName, `circleci/${input.orgName}`],
      );
      const org = await db.query<{ id: string }>('SELECT id FROM organizations WHERE slug = $1', [
        `circleci/${input.orgName}`,
      ]);
      await db.query(
        'INSERT INTO projects (id, org_id, name, slug, vcs_url, default_branch) VALUES ($1, $2, $3, $4, $5, $6)',
        [ids.uuid(), org.rows[0]!.id, name, slug, input.vcsUrl, input.defaultBranch ?? 'main'],
      );
      return (await projectBy(db, 'p.slug = $1', slug))!;
    },
    getProject: (slugOrId) =>
      projectBy(db, /^[0-9a-f-]{36}$/.test(slugOrId) ? 'p.id = $1' : 'p.slug = $1', slugOrId),
    async listProjects() {
      return [];
    },
    async triggerPipeline(input) {
      record('triggerPipeline', input);
      const r = await db.query<{ n: number }>(
        'UPDATE projects SET next_pipeline_number = next_pipeline_number + 1 WHERE id = $1 RETURNING next_pipeline_number - 1 AS n',
        [input.projectId],
      );
      const id = ids.uuid();
      const createdAt = new Date();
      await db.query(
        `INSERT INTO pipelines (id, project_id, number, state, trigger_type, actor_id, branch, tag, parameters, created_at)
         VALUES ($1, $2, $3, 'created', $4, $5, $6, $7, $8, $9)`,
        [
          id,
          input.projectId,
          r.rows[0]!.n,
          input.triggerType,
          input.actorId ?? null,
          input.branch ?? null,
          input.tag ?? null,
          JSON.stringify(input.parameters ?? {}),
          createdAt,
        ],
      );
      return { id, number: r.rows[0]!.n, state: 'created', createdAt };
    },
    async settled() {},
    async continuePipeline(input) {
      record('continuePipeline', input);
      if (input.continuationKey !== 'good-key')
        throw new TorusError('TORUS_E_UNAUTHORIZED', 'Invalid continuation key.');
      return { pipelineId: '33333333-3333-4333-8333-333333333333' };
    },
    async approveJob(...args) {
      record('approveJob', ...args);
    },
    async cancelWorkflow(...args) {
      record('cancelWorkflow', ...args);
    },
    async cancelJob(...args) {
      record('cancelJob', ...args);
    },
    async rerunWorkflow(workflowId, opts) {
      record('rerunWorkflow', workflowId, opts);
      return { workflowId: '11111111-1111-4111-8111-111111111111' };
    },
    async onTaskStarted() {},
    async onJobFinished() {},
    async recover() {},
    async fireSchedules() {
      return [];
    },
    async listWorkflowSchedules() {
      return [];
    },
    startSchedules() {},
    async stop() {},
  };
}

/** Step output held in memory; tests print into it and end steps. */
export function fakeScheduler(): Scheduler & {
  print(taskId: string, step: number, data: string, stream?: 'out' | 'err'): void;
  endStep(taskId: string, step: number): void;
  queuedMessages: JobMessage[];
  /** how many live followers are subscribed (streams that were not cleaned up stay counted) */
  followerCount(): number;
} {
  const out = new Map<string, { chunks: OutputChunk[]; done: boolean }>();
  const followers = new Map<string, Set<() => void>>();
  const key = (t: string, s: number) => `${t}:${s}`;
  const entry = (t: string, s: number) => {
    let e = out.get(key(t, s));
    if (!e) out.set(key(t, s), (e = { chunks: [], done: false }));
    return e;
  };
  const notify = (t: string, s: number) => {
    for (const f of followers.get(key(t, s)) ?? []) f();
  };
  const unsupported = () => {
    throw new Error('not used by the API tests');
  };
  const self = {
    followerCount: () => [...followers.values()].reduce((n, set) => n + set.size, 0),
    queuedMessages: [
      {
        type: 'info' as const,
        message: 'No agent serves resource class machine:medium yet.',
        reason: 'no_agent',
      },
    ],
    print(taskId: string, step: number, data: string, stream: 'out' | 'err' = 'out') {
      const e = entry(taskId, step);
      e.chunks.push({ seq: e.chunks.length, stream, time: new Date().toISOString(), data });
      notify(taskId, step);
    },
    endStep(taskId: string, step: number) {
      entry(taskId, step).done = true;
      notify(taskId, step);
    },
    enqueue: unsupported,
    cancelJob: unsupported,
    claim: unsupported,
    heartbeat: unsupported,
    stepStart: unsupported,
    stepOutput: unsupported,
    stepEnd: unsupported,
    complete: unsupported,
    async explainQueued() {
      return self.queuedMessages;
    },
    async readStepOutput(taskId: string, step: number, afterSeq = -1) {
      const e = entry(taskId, step);
      return { chunks: e.chunks.filter((c) => c.seq > afterSeq), done: e.done };
    },
    async followStep(taskId: string, step: number, onChange: () => void) {
      const k = key(taskId, step);
      let set = followers.get(k);
      if (!set) followers.set(k, (set = new Set()));
      set.add(onChange);
      return async () => {
        set.delete(onChange);
      };
    },
    async authenticateAgent() {
      return null;
    },
    async createAgentToken(resourceClass: string) {
      return { id: '22222222-2222-4222-8222-222222222222', token: `agent-${resourceClass}` };
    },
    start() {},
    async stop() {},
    async expireLeasesNow() {
      return 0;
    },
  };
  return self as unknown as ReturnType<typeof fakeScheduler>;
}

export interface Seeded {
  orgId: string;
  projectId: string;
  pipelineId: string;
  workflowId: string;
  buildJobId: string;
  testJobId: string;
  approvalJobId: string;
  approvalRequestId: string;
  taskId: string;
}

/**
 * A project circleci/acme/widget with pipeline #1 (branch main) whose workflow `build-test` has
 * job `build` (#1, running, step 2 running on task 0), `hold` (approval, on_hold, requires build)
 * and `test` (#2, queued, parallelism 2, requires hold).
 */
export async function seedPipeline(res: Resources, actorId: string | null): Promise<Seeded> {
  const { db, ids } = res;
  const s: Seeded = {
    orgId: ids.uuid(),
    projectId: ids.uuid(),
    pipelineId: ids.uuid(),
    workflowId: ids.uuid(),
    buildJobId: ids.uuid(),
    testJobId: ids.uuid(),
    approvalJobId: ids.uuid(),
    approvalRequestId: ids.uuid(),
    taskId: ids.uuid(),
  };
  const t0 = new Date('2020-05-01T10:00:00Z');
  const at = (s: number) => new Date(t0.getTime() + s * 1000);
  await db.query(`INSERT INTO organizations (id, name, slug) VALUES ($1, 'acme', 'circleci/acme')`, [
    s.orgId,
  ]);
  await db.query(
    `INSERT INTO projects (id, org_id, name, slug, vcs_url, default_branch, next_pipeline_number, next_job_number)
     VALUES ($1, $2, 'widget', 'circleci/acme/widget', 'file:///srv/git/widget.git', 'main', 2, 3)`,
    [s.projectId, s.orgId],
  );
  await db.query(
    `INSERT INTO pipelines (id, project_id, number, state, trigger_type, actor_id, received_at, branch, revision, vcs, errors,
       config_source, config_compiled, created_at, updated_at)
     VALUES ($1, $2, 1, 'pending', 'api', $3, $4, 'main', 'abc123abc123abc123abc123abc123abc123abcd', $5, '[]',
       'version: 2.1', 'version: 2', $4, $4)`,
    [
      s.pipelineId,
      s.projectId,
      actorId,
      at(0),
      JSON.stringify({
        provider_name: 'circleci',
        origin_repository_url: 'file:///srv/git/widget.git',
        target_repository_url: 'file:///srv/git/widget.git',
        revision: 'abc123abc123abc123abc123abc123abc123abcd',
        branch: 'main',
        commit: { subject: 'Add widget', body: '' },
      }),
    ],
  );
  await db.query(
    `INSERT INTO workflows (id, pipeline_id, project_id, name, status, started_by, workspace_id, created_at)
     VALUES ($1, $2, $3, 'build-test', 'running', $4, $1, $5)`,
    [s.workflowId, s.pipelineId, s.projectId, actorId, at(1)],
  );
  const spec = {
    executor: { type: 'docker', images: [{ image: 'cimg/base:stable', environment: {} }] },
    resourceClass: 'medium',
    workingDirectory: '~/project',
    parallelism: 1,
    environment: {},
    steps: [
      { type: 'checkout', name: 'Checkout code', when: 'on_success' },
      {
        type: 'run',
        name: 'Build',
        command: 'make build',
        environment: {},
        noOutputTimeoutMs: 600000,
        when: 'on_success',
        background: false,
      },
    ],
  };
  await db.query(
    `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status, requires, spec, parallelism, resource_class,
       executor_type, contexts, created_at, queued_at, started_at)
     VALUES ($1, $2, $3, 'build', 'build', 1, 'running', '[]', $4, 1, 'docker:medium', 'docker', '["deploy-creds"]', $5, $5, $6)`,
    [s.buildJobId, s.workflowId, s.projectId, JSON.stringify(spec), at(1), at(2)],
  );
  await db.query(
    `INSERT INTO jobs (id, workflow_id, project_id, name, type, status, requires, approval_request_id, created_at)
     VALUES ($1, $2, $3, 'hold', 'approval', 'on_hold', $4, $1, $5)`,
    [
      s.approvalJobId,
      s.workflowId,
      s.projectId,
      JSON.stringify([{ name: 'build', statuses: ['success'] }]),
      at(1),
    ],
  );
  s.approvalRequestId = s.approvalJobId;
  await db.query(
    `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status, requires, spec, parallelism, resource_class,
       executor_type, created_at, queued_at)
     VALUES ($1, $2, $3, 'test', 'build', 2, 'queued', $4, $5, 2, 'machine:medium', 'machine', $6, $6)`,
    [
      s.testJobId,
      s.workflowId,
      s.projectId,
      JSON.stringify([
        { name: 'hold', statuses: ['success'] },
        { name: 'build', statuses: ['success', 'failed'] },
      ]),
      JSON.stringify({ ...spec, parallelism: 2 }),
      at(1),
    ],
  );
  await db.query(
    `INSERT INTO tasks (id, job_id, node_index, resource_class, status, spec, started_at) VALUES ($1, $2, 0, 'docker:medium', 'running', '{}', $3)`,
    [s.taskId, s.buildJobId, at(2)],
  );
  await db.query(
    `INSERT INTO steps (task_id, step_index, name, type, status, exit_code, started_at, stopped_at, output_bytes) VALUES
     ($1, 0, 'Spin up environment', 'spin-up', 'success', 0, $2, $3, 10),
     ($1, 1, 'Preparing environment variables', 'env', 'success', 0, $3, $3, 5),
     ($1, 2, 'Checkout code', 'checkout', 'success', 0, $3, $4, 20),
     ($1, 3, 'Build', 'run', 'running', NULL, $4, NULL, 0)`,
    [s.taskId, at(2), at(3), at(4)],
  );
  return s;
}
