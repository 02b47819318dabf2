// The pipelines engine end to end on real git repositories and both databases: projects, triggers,
// config errors, filters, the DAG (requires with statuses, approvals), cancel, rerun, recover.
// The scheduler is a recording fake: tests drive jobs with onTaskStarted/onJobFinished.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import { requirePart } from '../../test/harness/parts.js';
import { createLogger, defaultSettings, randomIds, systemClock, type Resources } from '../ops/index.js';
import { FsObjectStore, type Database } from '../storage/index.js';
import { createPipelineEngine, GitVcsProvider, type PipelineEngine } from './index.js';
import { commit, config, FakeScheduler, git, RepoFactory } from './testing.js';

const hasGit = requirePart('git', 'pipelines engine tests');

const repos = new RepoFactory('torus-pipelines-');
const tmpRoot = repos.root;
const makeRepo = (files: Record<string, string>, message?: string) => repos.make(files, message);

const SIMPLE = `version: 2.1
jobs:
  build:
    machine: true
    steps: [checkout, run: echo building << pipeline.git.branch >> << pipeline.number >>]
workflows:
  main:
    jobs: [build]
`;

const DAG = `version: 2.1
jobs:
  a: {machine: true, steps: [run: "true"]}
  b: {machine: true, steps: [run: "true"]}
  c: {machine: true, steps: [run: "true"]}
  cleanup: {docker: [{image: busybox}], resource_class: small, steps: [run: "true"]}
  always: {machine: true, steps: [run: "true"]}
workflows:
  w:
    jobs:
      - a
      - b: {requires: [a]}
      - c: {requires: [b]}
      - cleanup: {requires: [{a: failed}]}
      - always: {requires: [{a: terminal}]}
`;

const APPROVAL = `version: 2.1
jobs:
  build: {machine: true, steps: [run: "true"]}
  deploy: {machine: true, parallelism: 2, steps: [run: "true"]}
workflows:
  release:
    jobs:
      - build
      - hold: {type: approval, requires: [build]}
      - deploy: {requires: [hold]}
`;

describe.skipIf(!hasGit).each(hasGit ? databaseKinds() : ['pglite' as const])(
  'pipelines engine on %s',
  (kind) => {
    let db: Database;
    let res: Resources;
    let scheduler: FakeScheduler;
    let engine: PipelineEngine;
    let userId: string;
    let dataDir: string;

    beforeAll(async () => {
      db = await openTestDatabase(kind);
      dataDir = mkdtempSync(join(tmpRoot, 'data-'));
      const settings = { ...defaultSettings(), dataDir, url: 'http://torus.test' };
      res = {
        db,
        store: new FsObjectStore(join(dataDir, 'objects')),
        clock: systemClock,
        ids: randomIds,
        logger: createLogger('silent'),
        settings,
      };
    });

    afterAll(async () => {
      await engine?.stop();
      await db?.close();
    });

    beforeEach(async () => {
      await engine?.stop();
      await db.query('TRUNCATE organizations, projects, pipelines, workflows, jobs, users CASCADE');
      userId = randomUUID();
      await db.query(`INSERT INTO users (id, login, name) VALUES ($1, 'ada', 'Ada')`, [userId]);
      scheduler = new FakeScheduler();
      engine = createPipelineEngine(res, { scheduler });
    });

    async function newProject(yaml: string, name?: string) {
      const repo = makeRepo(config(yaml));
      const project = await engine.createProject({
        orgName: 'acme',
        vcsUrl: repo,
        ...(name ? { name } : {}),
      });
      return { repo, project };
    }

    async function run(
      projectId: string,
      opts: { branch?: string; tag?: string; parameters?: Record<string, string | number | boolean> } = {},
    ) {
      const p = await engine.triggerPipeline({ projectId, triggerType: 'api', actorId: userId, ...opts });
      expect(p.state).toBe('created');
      await engine.settled(p.id);
      return p;
    }

    async function pipelineRow(id: string) {
      const { rows } = await db.query<{
        state: string;
        number: number;
        errors: { type: string; message: string }[];
        revision: string | null;
        branch: string | null;
        tag: string | null;
        config_source: string | null;
        config_compiled: string | null;
        vcs: { commit?: { subject: string } };
      }>('SELECT * FROM pipelines WHERE id = $1', [id]);
      return rows[0]!;
    }

    async function workflows(pipelineId: string) {
      const { rows } = await db.query<{
        id: string;
        name: string;
        status: string;
        rerun_of: string | null;
        workspace_id: string;
        canceled_by: string | null;
      }>('SELECT * FROM workflows WHERE pipeline_id = $1 ORDER BY created_at, name', [pipelineId]);
      return rows;
    }

    async function jobs(workflowId: string) {
      const { rows } = await db.query<{
        id: string;
        name: string;
        type: string;
        status: string;
        number: number | null;
        approval_request_id: string | null;
        approved_by: string | null;
        canceled_by: string | null;
        copied_from: string | null;
      }>('SELECT * FROM jobs WHERE workflow_id = $1 ORDER BY position', [workflowId]);
      return Object.fromEntries(rows.map((r) => [r.name, r]));
    }

    async function statuses(workflowId: string) {
      return Object.fromEntries(Object.values(await jobs(workflowId)).map((j) => [j.name, j.status]));
    }

    async function workflowStatus(id: string) {
      const { rows } = await db.query<{ status: string }>('SELECT status FROM workflows WHERE id = $1', [id]);
      return rows[0]!.status;
    }

    it('creates projects with CircleCI slugs, the org on first use, and refuses duplicates', async () => {
      const repo = makeRepo(config(SIMPLE));
      const p = await engine.createProject({ orgName: 'acme', vcsUrl: repo, name: 'app' });
      expect(p).toMatchObject({
        slug: 'circleci/acme/app',
        orgName: 'acme',
        name: 'app',
        defaultBranch: 'main',
        vcsUrl: repo,
      });
      const other = await engine.createProject({ orgName: 'acme', vcsUrl: `file://${repo}` });
      expect(other.slug).toBe(`circleci/acme/${repo.split('/').pop()}`);
      expect(other.orgId).toBe(p.orgId);
      const orgs = await db.query<{ slug: string }>('SELECT slug FROM organizations');
      expect(orgs.rows.map((r) => r.slug)).toEqual(['circleci/acme']);
      await expect(
        engine.createProject({ orgName: 'acme', vcsUrl: repo, name: 'app' }),
      ).rejects.toMatchObject({ code: 'TORUS_E_CONFLICT' });
      await expect(engine.createProject({ orgName: 'bad name', vcsUrl: repo })).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
      await expect(
        engine.createProject({ orgName: 'acme', vcsUrl: 'ext::sh -c touch% /tmp/x' }),
      ).rejects.toMatchObject({ code: 'TORUS_E_VCS' });
      await expect(
        engine.createProject({ orgName: 'acme', vcsUrl: join(tmpRoot, 'missing') }),
      ).rejects.toMatchObject({ code: 'TORUS_E_VCS' });
      expect((await engine.getProject('circleci/acme/app'))?.id).toBe(p.id);
      expect((await engine.getProject(p.id))?.slug).toBe('circleci/acme/app');
      expect(await engine.getProject('circleci/acme/nope')).toBeNull();
      expect((await engine.listProjects()).map((x) => x.slug)).toContain('circleci/acme/app');
    });

    it('triggers a pipeline: config fetched and compiled with pipeline values, workflow created, root job queued', async () => {
      const { repo, project } = await newProject(SIMPLE, 'app');
      const sha = git(repo, 'rev-parse', 'HEAD');
      const p = await run(project.id);
      const row = await pipelineRow(p.id);
      expect(row).toMatchObject({ state: 'pending', number: 1, branch: 'main', revision: sha, errors: [] });
      expect(row.config_source).toBe(SIMPLE);
      expect(row.config_compiled).toContain('echo building main 1');
      expect(row.vcs.commit?.subject).toBe('first commit');
      const [wf] = await workflows(p.id);
      expect(wf).toMatchObject({ name: 'main', status: 'running' });
      const { build } = await jobs(wf!.id);
      expect(build).toMatchObject({ status: 'queued', number: 1, type: 'build' });
      expect(scheduler.enqueued).toHaveLength(1);
      const task = scheduler.enqueued[0]!;
      expect(task.resourceClass).toBe('machine:medium');
      expect(task.specs[0]!.checkout).toEqual({ repoUrl: `file://${repo}`, revision: sha, branch: 'main' });
      expect(task.specs[0]!.environment).toMatchObject({
        CIRCLE_BRANCH: 'main',
        CIRCLE_SHA1: sha,
        CIRCLE_BUILD_NUM: '1',
        CIRCLE_JOB: 'build',
        CIRCLE_PROJECT_REPONAME: 'app',
        CIRCLE_PROJECT_USERNAME: 'acme',
        CIRCLE_USERNAME: 'ada',
        CIRCLE_PIPELINE_ID: p.id,
        CIRCLE_WORKFLOW_ID: wf!.id,
        CIRCLE_WORKFLOW_JOB_ID: build!.id,
        CIRCLE_BUILD_URL: `http://torus.test/pipelines/circleci/acme/app/1/workflows/${wf!.id}/jobs/1`,
      });

      await engine.onTaskStarted(build!.id);
      expect((await jobs(wf!.id)).build!.status).toBe('running');
      await engine.onJobFinished(build!.id, 'success');
      expect((await jobs(wf!.id)).build!.status).toBe('success');
      expect(await workflowStatus(wf!.id)).toBe('success');
      // a second report is ignored
      await engine.onJobFinished(build!.id, 'failed');
      expect(await workflowStatus(wf!.id)).toBe('success');
    });

    it('passes pipeline parameters to the compiler', async () => {
      const { project } = await newProject(`version: 2.1
parameters:
  greeting: {type: string, default: hello}
jobs:
  build: {machine: true, steps: [run: "echo << pipeline.parameters.greeting >>"]}
workflows:
  w: {jobs: [build]}
`);
      const p = await run(project.id, { parameters: { greeting: 'bonjour' } });
      expect((await pipelineRow(p.id)).config_compiled).toContain('echo bonjour');
      const bad = await run(project.id, { parameters: { nope: 1 } });
      const row = await pipelineRow(bad.id);
      expect(row.state).toBe('errored');
      expect(row.errors[0]!.message).toMatch(/nope/);
    });

    it('numbers pipelines and jobs per project', async () => {
      const a = await newProject(SIMPLE, 'one');
      const b = await newProject(SIMPLE, 'two');
      const numbers = [];
      for (const project of [a.project, b.project, a.project, b.project])
        numbers.push((await run(project.id)).number);
      expect(numbers).toEqual([1, 1, 2, 2]);
      const { rows } = await db.query<{ slug: string; numbers: number[] }>(
        `SELECT p.slug, array_agg(j.number ORDER BY j.number) AS numbers FROM jobs j JOIN projects p ON p.id = j.project_id GROUP BY p.slug ORDER BY p.slug`,
      );
      expect(rows).toEqual([
        { slug: 'circleci/acme/one', numbers: [1, 2] },
        { slug: 'circleci/acme/two', numbers: [1, 2] },
      ]);
      // the second job on main knows the first
      expect(scheduler.enqueued[2]!.specs[0]!.environment.CIRCLE_PREVIOUS_BUILD_NUM).toBe('1');
    });

    it('errors a pipeline whose config does not compile, with the file:line:column', async () => {
      const { project } = await newProject(`version: 2.1
jobs:
  a:
    machine: true
    steps: [run: "true"]
workflows:
  w:
    jobs: [nope]
`);
      const p = await run(project.id);
      const row = await pipelineRow(p.id);
      expect(row.state).toBe('errored');
      expect(row.errors).toHaveLength(1);
      expect(row.errors[0]!.type).toBe('config');
      expect(row.errors[0]!.message).toMatch(/^\.circleci\/config\.yml:8:12: .*nope/);
      expect(row.config_source).toContain('nope');
      expect(await workflows(p.id)).toEqual([]);
    });

    it('errors a pipeline with a resource class no agent could ever claim', async () => {
      const { project } = await newProject(`version: 2.1
jobs:
  a: {machine: true, resource_class: "big machine!", steps: [run: "true"]}
workflows:
  w: {jobs: [a]}
`);
      const p = await run(project.id);
      const row = await pipelineRow(p.id);
      expect(row.state).toBe('errored');
      expect(row.errors).toEqual([
        { type: 'config', message: expect.stringMatching(/resource_class "big machine!" is not valid/) },
      ]);
      expect(scheduler.enqueued).toEqual([]);
    });

    it('errors a pipeline without a config file, or on an unknown branch, as config-fetch', async () => {
      const repo = makeRepo({ 'README.md': 'no config here' });
      const project = await engine.createProject({ orgName: 'acme', vcsUrl: repo });
      const p = await run(project.id);
      const row = await pipelineRow(p.id);
      expect(row.state).toBe('errored');
      expect(row.errors).toEqual([
        { type: 'config-fetch', message: expect.stringContaining('.circleci/config.yml') },
      ]);

      const q = await run(project.id, { branch: 'no-such-branch' });
      const row2 = await pipelineRow(q.id);
      expect(row2.state).toBe('errored');
      expect(row2.errors[0]).toEqual({
        type: 'config-fetch',
        message: expect.stringMatching(/branch "no-such-branch" was not found/),
      });
      await expect(
        engine.triggerPipeline({ projectId: project.id, triggerType: 'api', branch: 'a', tag: 'b' }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
      await expect(
        engine.triggerPipeline({ projectId: randomUUID(), triggerType: 'api' }),
      ).rejects.toMatchObject({ code: 'TORUS_E_NOT_FOUND' });
    });

    it('applies branch and tag filters; a workflow with no job left is not created', async () => {
      const { repo, project } = await newProject(`version: 2.1
jobs:
  build: {machine: true, steps: [run: "true"]}
  main-only: {machine: true, steps: [run: "true"]}
  not-main: {machine: true, steps: [run: "true"]}
  rel: {machine: true, steps: [run: "true"]}
  deploy: {machine: true, steps: [run: "true"]}
  publish: {machine: true, steps: [run: "true"]}
workflows:
  ci:
    jobs:
      - build
      - main-only: {filters: {branches: {only: main}}}
      - not-main: {filters: {branches: {ignore: [main]}}}
      - rel: {filters: {branches: {only: /rel-.*/, ignore: rel-skip}}}
  tags:
    jobs:
      - deploy: {filters: {tags: {only: /^v.*/}, branches: {ignore: /.*/}}}
      - publish: {requires: [deploy], filters: {tags: {only: /^v.*/}}}
  nightly:
    triggers:
      - schedule: {cron: "0 0 * * *", filters: {branches: {only: [main]}}}
    jobs: [build]
`);
      git(repo, 'branch', 'rel-1');
      git(repo, 'branch', 'rel-skip');
      git(repo, 'tag', 'v1.0');
      git(repo, 'tag', 'nightly');
      const names = async (opts: { branch?: string; tag?: string }) => {
        const p = await run(project.id, opts);
        expect((await pipelineRow(p.id)).state).toBe('pending');
        const out: Record<string, string[]> = {};
        for (const wf of await workflows(p.id)) out[wf.name] = Object.keys(await jobs(wf.id));
        return out;
      };
      // the scheduled workflow runs on its cron only
      expect(await names({ branch: 'main' })).toEqual({ ci: ['build', 'main-only'] });
      expect(await names({ branch: 'rel-1' })).toEqual({ ci: ['build', 'not-main', 'rel'] });
      expect(await names({ branch: 'rel-skip' })).toEqual({ ci: ['build', 'not-main'] });
      // jobs without tag filters do not run for tags; publish runs since its requirement does
      expect(await names({ tag: 'v1.0' })).toEqual({ tags: ['deploy', 'publish'] });
      // no job matches: the pipeline is pending with no workflows
      expect(await names({ tag: 'nightly' })).toEqual({});
      const tagTask = scheduler.enqueued.find((e) => e.specs[0]!.environment.CIRCLE_TAG === 'v1.0');
      expect(tagTask?.specs[0]!.environment.CIRCLE_BRANCH).toBeUndefined();
      expect(tagTask?.specs[0]!.checkout.tag).toBe('v1.0');
    });

    it('runs requirements with statuses: failed-only cleanup runs, plain requires become not_run', async () => {
      const { project } = await newProject(DAG);
      const p = await run(project.id);
      const [wf] = await workflows(p.id);
      let j = await jobs(wf!.id);
      expect(await statuses(wf!.id)).toEqual({
        a: 'queued',
        b: 'blocked',
        c: 'blocked',
        cleanup: 'blocked',
        always: 'blocked',
      });
      await engine.onTaskStarted(j.a!.id);
      await engine.onJobFinished(j.a!.id, 'failed');
      expect(await statuses(wf!.id)).toEqual({
        a: 'failed',
        b: 'not_run',
        c: 'not_run',
        cleanup: 'queued',
        always: 'queued',
      });
      expect(await workflowStatus(wf!.id)).toBe('failing');
      j = await jobs(wf!.id);
      expect(scheduler.enqueued.find((e) => e.jobId === j.cleanup!.id)?.resourceClass).toBe('docker:small');
      await engine.onJobFinished(j.cleanup!.id, 'success');
      await engine.onJobFinished(j.always!.id, 'success');
      expect(await workflowStatus(wf!.id)).toBe('failed');

      // the same workflow when a succeeds: the failed-only job is not run, the workflow succeeds
      const q = await run(project.id);
      const [wf2] = await workflows(q.id);
      const j2 = await jobs(wf2!.id);
      await engine.onJobFinished(j2.a!.id, 'success');
      expect(await statuses(wf2!.id)).toMatchObject({ b: 'queued', cleanup: 'not_run', always: 'queued' });
      for (const name of ['b', 'always']) await engine.onJobFinished(j2[name]!.id, 'success');
      await engine.onJobFinished((await jobs(wf2!.id)).c!.id, 'success');
      expect(await workflowStatus(wf2!.id)).toBe('success');
    });

    it('holds approvals until approved; no-op jobs succeed at once', async () => {
      const { project } = await newProject(APPROVAL);
      const p = await run(project.id);
      const [wf] = await workflows(p.id);
      let j = await jobs(wf!.id);
      expect(j.hold).toMatchObject({
        type: 'approval',
        status: 'blocked',
        approval_request_id: j.hold!.id,
        number: null,
      });
      await expect(engine.approveJob(wf!.id, j.hold!.id, userId)).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
        message: expect.stringMatching(/not waiting for approval yet/),
      });
      await engine.onJobFinished(j.build!.id, 'success');
      expect(await statuses(wf!.id)).toEqual({ build: 'success', hold: 'on_hold', deploy: 'blocked' });
      expect(await workflowStatus(wf!.id)).toBe('on_hold');
      await expect(engine.approveJob(wf!.id, randomUUID(), userId)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });
      await expect(engine.approveJob(wf!.id, 'not-a-uuid', userId)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });
      await expect(engine.approveJob(randomUUID(), j.hold!.id, userId)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });
      await engine.approveJob(wf!.id, j.hold!.id, userId);
      j = await jobs(wf!.id);
      expect(j.hold).toMatchObject({ status: 'success', approved_by: userId });
      expect(j.deploy).toMatchObject({ status: 'queued', number: 2 });
      expect(await workflowStatus(wf!.id)).toBe('running');
      const deployTask = scheduler.enqueued.find((e) => e.jobId === j.deploy!.id)!;
      expect(deployTask.specs.map((s) => [s.nodeIndex, s.nodeTotal])).toEqual([
        [0, 2],
        [1, 2],
      ]);
      await expect(engine.approveJob(wf!.id, j.hold!.id, userId)).rejects.toMatchObject({
        message: expect.stringMatching(/already approved/),
      });

      const noop = await newProject(
        `version: 2.1
jobs:
  after: {machine: true, steps: [run: "true"]}
workflows:
  w:
    jobs:
      - gate: {type: no-op}
      - after: {requires: [gate]}
`,
        'noop',
      );
      const n = await run(noop.project.id);
      const [nwf] = await workflows(n.id);
      expect(await statuses(nwf!.id)).toEqual({ gate: 'success', after: 'queued' });
    });

    it('cancels a workflow: waiting jobs at once, running ones when the scheduler reports', async () => {
      const { project } = await newProject(`version: 2.1
jobs:
  a: {machine: true, steps: [run: "true"]}
  b: {machine: true, steps: [run: "true"]}
  c: {machine: true, steps: [run: "true"]}
workflows:
  w:
    jobs: [a, b, {c: {requires: [a]}}]
`);
      const p = await run(project.id);
      const [wf] = await workflows(p.id);
      const j = await jobs(wf!.id);
      await engine.onTaskStarted(j.a!.id);
      scheduler.running.add(j.a!.id);
      await engine.cancelWorkflow(wf!.id, userId);
      expect(scheduler.canceled.sort()).toEqual([j.a!.id, j.b!.id].sort());
      expect(await statuses(wf!.id)).toEqual({ a: 'running', b: 'canceled', c: 'canceled' });
      const after = await workflows(p.id);
      expect(after[0]).toMatchObject({ status: 'canceled', canceled_by: userId });
      await engine.onJobFinished(j.a!.id, 'canceled');
      expect(await statuses(wf!.id)).toEqual({ a: 'canceled', b: 'canceled', c: 'canceled' });
      expect(await workflowStatus(wf!.id)).toBe('canceled');
      await expect(engine.cancelWorkflow(wf!.id, userId)).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
      await expect(engine.cancelWorkflow(randomUUID(), userId)).rejects.toMatchObject({
        code: 'TORUS_E_NOT_FOUND',
      });

      // canceling one job: its dependents are not run, the rest carries on
      const q = await run(project.id);
      const [wf2] = await workflows(q.id);
      const j2 = await jobs(wf2!.id);
      await engine.cancelJob(j2.a!.id, userId);
      expect(await statuses(wf2!.id)).toEqual({ a: 'canceled', b: 'queued', c: 'not_run' });
      expect((await jobs(wf2!.id)).a!.canceled_by).toBe(userId);
      await engine.onJobFinished(j2.b!.id, 'success');
      expect(await workflowStatus(wf2!.id)).toBe('canceled');
      await expect(engine.cancelJob(j2.b!.id, userId)).rejects.toMatchObject({ code: 'TORUS_E_BAD_REQUEST' });
    });

    it('reruns a workflow: all jobs, from failed (successful upstream copied), or chosen jobs', async () => {
      const { project } = await newProject(DAG);
      const p = await run(project.id);
      const [wf] = await workflows(p.id);
      const j = await jobs(wf!.id);
      await expect(engine.rerunWorkflow(wf!.id, { actorId: userId })).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
        message: expect.stringMatching(/still running/),
      });
      await engine.onJobFinished(j.a!.id, 'success');
      await engine.onJobFinished(j.b!.id, 'failed');
      await engine.onJobFinished(j.always!.id, 'success');
      expect(await statuses(wf!.id)).toEqual({
        a: 'success',
        b: 'failed',
        c: 'not_run',
        cleanup: 'not_run',
        always: 'success',
      });
      expect(await workflowStatus(wf!.id)).toBe('failed');

      const { workflowId: fromFailed } = await engine.rerunWorkflow(wf!.id, {
        fromFailed: true,
        actorId: userId,
      });
      const all = await workflows(p.id);
      const rerun = all.find((w) => w.id === fromFailed)!;
      expect(rerun).toMatchObject({
        name: 'w',
        rerun_of: wf!.id,
        workspace_id: all.find((w) => w.id === wf!.id)!.workspace_id,
        status: 'running',
      });
      const rj = await jobs(fromFailed);
      expect(await statuses(fromFailed)).toEqual({
        a: 'success',
        b: 'queued',
        c: 'blocked',
        cleanup: 'not_run',
        always: 'success',
      });
      expect(rj.a!.copied_from).toBe(j.a!.id);
      expect(rj.a!.number).toBeNull();
      expect(rj.b!.number).toBe(4);
      expect(rj.b!.id).not.toBe(j.b!.id);
      await engine.onJobFinished(rj.b!.id, 'success');
      await engine.onJobFinished((await jobs(fromFailed)).c!.id, 'success');
      expect(await workflowStatus(fromFailed)).toBe('success');
      await expect(
        engine.rerunWorkflow(fromFailed, { fromFailed: true, actorId: userId }),
      ).rejects.toMatchObject({
        message: expect.stringMatching(/no failed or canceled jobs/),
      });

      const { workflowId: everything } = await engine.rerunWorkflow(wf!.id, { actorId: userId });
      expect(await statuses(everything)).toEqual({
        a: 'queued',
        b: 'blocked',
        c: 'blocked',
        cleanup: 'blocked',
        always: 'blocked',
      });

      const { workflowId: chosen } = await engine.rerunWorkflow(fromFailed, {
        jobs: [rj.b!.id],
        actorId: userId,
      });
      const cj = await jobs(chosen);
      expect(await statuses(chosen)).toEqual({
        a: 'success',
        b: 'queued',
        c: 'blocked',
        cleanup: 'not_run',
        always: 'success',
      });
      // copies point at the job that ran, not at a copy
      expect(cj.a!.copied_from).toBe(j.a!.id);
      await expect(
        engine.rerunWorkflow(fromFailed, { jobs: [randomUUID()], actorId: userId }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
    });

    it('reruns a failed workflow from failed automatically up to max_auto_reruns times', async () => {
      const { project } = await newProject(`version: 2.1
jobs:
  a: {machine: true, steps: [run: "true"]}
  b: {machine: true, steps: [run: "true"]}
workflows:
  w:
    max_auto_reruns: 2
    jobs: [a, {b: {requires: [a]}}]
`);
      const p = await run(project.id);
      let [wf] = await workflows(p.id);
      await engine.onJobFinished((await jobs(wf!.id)).a!.id, 'success');
      for (let attempt = 0; attempt < 3; attempt++) {
        await engine.onJobFinished((await jobs(wf!.id)).b!.id, 'failed');
        expect(await workflowStatus(wf!.id)).toBe('failed');
        const all = await workflows(p.id);
        const next = all.find((w) => w.rerun_of === wf!.id);
        if (attempt < 2) {
          expect(next).toBeDefined();
          expect(await statuses(next!.id)).toEqual({ a: 'success', b: 'queued' });
          const { rows } = await db.query<{ auto_rerun_number: number }>(
            'SELECT auto_rerun_number FROM workflows WHERE id = $1',
            [next!.id],
          );
          expect(rows[0]!.auto_rerun_number).toBe(attempt + 1);
          wf = next;
        } else {
          expect(next).toBeUndefined();
          expect(all).toHaveLength(3);
        }
      }
    });

    it('recover() finishes pipelines left created and advances workflows a crash interrupted', async () => {
      const { project } = await newProject(APPROVAL);
      // a crash right after the trigger's insert: the row exists in state created
      const pipelineId = randomUUID();
      await db.query(`UPDATE projects SET next_pipeline_number = next_pipeline_number + 1 WHERE id = $1`, [
        project.id,
      ]);
      await db.query(
        `INSERT INTO pipelines (id, project_id, number, state, trigger_type, branch) VALUES ($1, $2, 1, 'created', 'api', 'main')`,
        [pipelineId, project.id],
      );
      const fresh = createPipelineEngine(res, { scheduler });
      await fresh.recover();
      expect((await pipelineRow(pipelineId)).state).toBe('pending');
      const [wf] = await workflows(pipelineId);
      const j = await jobs(wf!.id);
      expect(j.build!.status).toBe('queued');
      // a job final whose dependents were never decided
      await db.query(`UPDATE jobs SET status = 'success' WHERE id = $1`, [j.build!.id]);
      await fresh.recover();
      expect(await statuses(wf!.id)).toEqual({ build: 'success', hold: 'on_hold', deploy: 'blocked' });
      expect(await workflowStatus(wf!.id)).toBe('on_hold');

      // the scheduler finished a job's tasks but its report was lost
      const q = await run(project.id);
      const [wf2] = await workflows(q.id);
      const build = (await jobs(wf2!.id)).build!;
      await db.query(
        `INSERT INTO tasks (id, job_id, node_index, resource_class, status, spec) VALUES ($1, $2, 0, 'machine:medium', 'failed', '{}')`,
        [randomUUID(), build.id],
      );
      await fresh.recover();
      expect(await statuses(wf2!.id)).toEqual({ build: 'failed', hold: 'not_run', deploy: 'not_run' });
      expect(await workflowStatus(wf2!.id)).toBe('failed');
      await fresh.stop();
      await expect(
        fresh.triggerPipeline({ projectId: project.id, triggerType: 'api' }),
      ).rejects.toMatchObject({ code: 'TORUS_E_UNAVAILABLE' });
    });

    it('applies concurrent job reports of one workflow one at a time (fan-in queued once)', async () => {
      const roots = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'];
      const { project } = await newProject(`version: 2.1
jobs:
${[...roots, 'join'].map((n) => `  ${n}: {machine: true, steps: [run: "true"]}`).join('\n')}
workflows:
  w:
    jobs: [${roots.join(', ')}, {join: {requires: [${roots.join(', ')}]}}]
`);
      const p = await run(project.id);
      const [wf] = await workflows(p.id);
      const j = await jobs(wf!.id);
      await Promise.all(roots.map((n) => engine.onTaskStarted(j[n]!.id)));
      await Promise.all(roots.map((n) => engine.onJobFinished(j[n]!.id, 'success')));
      expect((await jobs(wf!.id)).join!.status).toBe('queued');
      expect(scheduler.enqueued.filter((e) => e.jobId === j.join!.id)).toHaveLength(1);
      expect(await workflowStatus(wf!.id)).toBe('running');
    });

    it('records the pipeline values, with base_revision from the previous pipeline on the branch', async () => {
      const { repo, project } = await newProject(SIMPLE, 'vals');
      const first = await run(project.id);
      const sha1 = git(repo, 'rev-parse', 'HEAD');
      const sha2 = commit(repo, {}, 'second');
      const second = await run(project.id);
      const { rows } = await db.query<{ pipeline_values: Record<string, unknown> }>(
        'SELECT pipeline_values FROM pipelines WHERE id = $1',
        [second.id],
      );
      expect(rows[0]!.pipeline_values).toMatchObject({
        'pipeline.id': second.id,
        'pipeline.number': 2,
        'pipeline.project.type': 'circleci',
        'pipeline.git.branch': 'main',
        'pipeline.git.branch.is_default': true,
        'pipeline.git.revision': sha2,
        'pipeline.git.base_revision': sha1,
        'pipeline.git.commit.subject': 'second',
        'pipeline.git.repo_owner': 'acme',
        'pipeline.git.repo_name': 'vals',
        'pipeline.trigger_source': 'api',
      });
      expect((await pipelineRow(first.id)).revision).toBe(sha1);
    });

    it('notifies pipeline changes', async () => {
      const { project } = await newProject(SIMPLE);
      const seen: string[] = [];
      const unlisten = await db.listen('torus_pipeline_changed', (id) => seen.push(id));
      try {
        const p = await run(project.id);
        const [wf] = await workflows(p.id);
        await engine.onJobFinished((await jobs(wf!.id)).build!.id, 'success');
        await new Promise((r) => setTimeout(r, 100));
        expect(seen.filter((id) => id === p.id).length).toBeGreaterThanOrEqual(3);
      } finally {
        await unlisten();
      }
    });
  },
);

describe.skipIf(!hasGit)('git provider mirrors remote repositories', () => {
  it('clones a bare mirror under dataDir/repos and fetches new commits on each resolve', async () => {
    const repo = makeRepo(config(SIMPLE));
    const dataDir = mkdtempSync(join(tmpRoot, 'mirror-'));
    const vcs = new GitVcsProvider({ dataDir, mirrorLocal: true });
    const project = { id: randomUUID(), vcsUrl: `file://${repo}` };
    const first = await vcs.resolve(project, { branch: 'main' });
    expect(first.revision).toBe(git(repo, 'rev-parse', 'HEAD'));
    expect(existsSync(join(dataDir, 'repos', `${project.id}.git`, 'HEAD'))).toBe(true);
    const second = commit(repo, { 'x.txt': 'x' }, 'second\n\nwith a body');
    const resolved = await vcs.resolve(project, { branch: 'main' });
    expect(resolved).toMatchObject({
      revision: second,
      subject: 'second',
      body: 'with a body',
      authorName: 'Ada',
    });
    expect(await vcs.readFile(project, second, '.circleci/config.yml')).toBe(SIMPLE);
    expect(await vcs.readFile(project, second, 'missing.yml')).toBeNull();
    // a damaged mirror is cloned again
    rmSync(join(dataDir, 'repos', `${project.id}.git`, 'HEAD'));
    expect((await vcs.resolve(project, { branch: 'main' })).revision).toBe(second);
    await expect(vcs.resolve(project, { tag: 'v9' })).rejects.toMatchObject({ kind: 'unknown-ref' });
    expect(await vcs.defaultBranch(repo)).toBe('main');
    await expect(
      vcs.resolve({ id: randomUUID(), vcsUrl: 'https://127.0.0.1:1/none.git' }, { branch: 'main' }),
    ).rejects.toMatchObject({
      kind: 'unreachable',
    });
  });
});

afterAll(() => {
  rmSync(tmpRoot, { recursive: true, force: true });
});
