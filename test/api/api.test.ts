// The HTTP API against fakes of the engine and scheduler and rows seeded into a real database:
// CircleCI's shapes (checked against the OpenAPI spec), auth, errors, pagination, access, admin.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../../src/api/index.js';
import { createAccounts, type Accounts, type User } from '../../src/accounts/index.js';
import { databaseKinds } from '../harness/db.js';
import { waitFor } from '../harness/net.js';
import { loadOpenApi } from '../harness/openapi.js';
import { fakeEngine, fakeScheduler, seedPipeline, type Seeded } from './fakes.js';
import { openTestResources, truncateAll, type TestResources } from './resources.js';

const openapi = loadOpenApi();

describe.each(databaseKinds())('API v2 on %s', (kind) => {
  let res: TestResources;
  let accounts: Accounts;
  let engine: ReturnType<typeof fakeEngine>;
  let scheduler: ReturnType<typeof fakeScheduler>;
  let app: FastifyInstance;
  let admin: User;
  let adminToken: string;

  /** Injects a request with the admin's token; with `op`, checks the JSON answer against the spec. */
  async function call(
    method: InjectOptions['method'],
    url: string,
    opts: { op?: string; body?: unknown; token?: string | null } = {},
  ) {
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? adminToken : opts.token;
    if (token) headers['circle-token'] = token;
    const r = await app.inject({
      method,
      url,
      headers,
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    const json = r.headers['content-type']?.toString().includes('application/json') ? r.json() : undefined;
    if (opts.op) openapi.assertResponse(opts.op, r.statusCode, json);
    return { status: r.statusCode, json, headers: r.headers, body: r.body };
  }

  beforeAll(async () => {
    res = await openTestResources(kind);
    accounts = createAccounts(res);
    engine = fakeEngine(res);
    scheduler = fakeScheduler();
    app = await buildApp(res, { engine, scheduler, accounts });
  });
  afterAll(async () => {
    await app?.close();
    await res?.close();
  });
  beforeEach(async () => {
    res.setNow(null);
    await truncateAll(res);
    engine.calls.length = 0;
    const boot = await accounts.bootstrapAdmin('admin-token-for-tests');
    admin = boot.user;
    adminToken = 'admin-token-for-tests';
  });

  describe('public endpoints', () => {
    it('answers health probes without a token', async () => {
      expect((await call('GET', '/healthz', { token: null })).json).toEqual({ status: 'ok' });
      expect((await call('GET', '/readyz', { token: null })).json).toEqual({ status: 'ok' });
    });

    it('serves the spec subset it implements, with its extensions, for the CLI probe', async () => {
      const r = await call('GET', '/api/v2/openapi.json', { token: null });
      expect(r.status).toBe(200);
      const paths = r.json.paths as Record<string, Record<string, { operationId?: string }>>;
      expect(paths['/pipeline/{pipeline-id}']?.get?.operationId).toBe('getPipelineById');
      expect(paths['/project/{project-slug}/pipeline']?.post?.operationId).toBe('triggerPipeline');
      expect(paths['/torus/projects']?.get).toBeDefined();
      expect(paths['/context']?.get?.operationId).toBe('listContexts');
      expect(paths['/schedule/{schedule-id}']?.get?.operationId).toBe('getScheduleById');
      // not implemented, so the CLI falls back instead of calling it
      expect(paths['/webhook']).toBeUndefined();
      // path items are the spec's own objects
      expect(paths['/workflow/{id}/job']).toEqual(
        (openapi.spec.paths as Record<string, unknown>)['/workflow/{id}/job'],
      );
    });
  });

  describe('authentication and errors', () => {
    it('accepts the token as Circle-Token, basic user, bearer and query parameter', async () => {
      const basic = Buffer.from(`${adminToken}:`).toString('base64');
      for (const headers of [
        { 'circle-token': adminToken },
        { authorization: `Basic ${basic}` },
        { authorization: `Bearer ${adminToken}` },
        {},
      ]) {
        const url = Object.keys(headers).length ? '/api/v2/me' : `/api/v2/me?circle-token=${adminToken}`;
        const r = await app.inject({ method: 'GET', url, headers });
        expect(r.statusCode).toBe(200);
        openapi.assertResponse('getCurrentUser', 200, r.json());
        expect(r.json()).toMatchObject({ id: admin.id, login: 'admin' });
      }
    });

    it('shows a user by id', async () => {
      const u = await call('GET', `/api/v2/user/${admin.id}`, { op: 'getUser' });
      expect(u.json).toMatchObject({ id: admin.id, login: 'admin', name: 'Administrator' });
      expect((await call('GET', '/api/v2/user/nobody')).status).toBe(404);
    });

    it('answers 401 with a message for a missing or wrong token', async () => {
      const none = await call('GET', '/api/v2/me', { token: null, op: 'getCurrentUser' });
      expect(none.status).toBe(401);
      expect(none.json).toEqual({ message: 'You must log in first.' });
      const bad = await call('GET', '/api/v2/me', { token: 'f'.repeat(40) });
      expect(bad.status).toBe(401);
      expect(bad.json.message).toMatch(/invalid token/i);
    });

    it('answers 404 with a message for unknown routes, projects and ids', async () => {
      const r = await call('GET', '/api/v2/nothing-here');
      expect(r.status).toBe(404);
      expect(typeof r.json.message).toBe('string');
      expect(
        (await call('GET', '/api/v2/project/circleci/nope/nope', { op: 'getProjectBySlug' })).json,
      ).toEqual({ message: 'Project not found' });
      expect((await call('GET', '/api/v2/pipeline/not-a-uuid')).status).toBe(404);
      expect((await call('GET', `/api/v2/workflow/${admin.id}`)).status).toBe(404);
    });

    it('answers 400 saying what is wrong with malformed JSON', async () => {
      await seedPipeline(res, admin.id);
      const r = await app.inject({
        method: 'POST',
        url: '/api/v2/project/circleci/acme/widget/pipeline',
        headers: { 'circle-token': adminToken, 'content-type': 'application/json' },
        payload: '{"branch": "main",',
      });
      expect(r.statusCode).toBe(400);
      expect(r.json().message).toMatch(/not valid JSON/);
    });
  });

  describe('projects', () => {
    it('creates a project from a vcs_url under slashed or encoded org slugs, and reads it back', async () => {
      const r = await call('POST', '/api/v2/organization/circleci%2Facme/project', {
        op: 'createProject',
        body: { name: 'widget', vcs_url: 'file:///srv/git/widget.git', default_branch: 'trunk' },
      });
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({
        slug: 'circleci/acme/widget',
        name: 'widget',
        organization_name: 'acme',
        organization_slug: 'circleci/acme',
        vcs_info: { vcs_url: 'file:///srv/git/widget.git', provider: 'CircleCI', default_branch: 'trunk' },
      });
      expect(engine.calls[0]).toEqual({
        op: 'createProject',
        args: [
          { orgName: 'acme', name: 'widget', vcsUrl: 'file:///srv/git/widget.git', defaultBranch: 'trunk' },
        ],
      });
      const bare = await call('POST', '/api/v2/organization/acme/project', {
        op: 'createProject',
        body: { vcs_url: 'file:///srv/git/gadget.git' },
      });
      expect(bare.json.slug).toBe('circleci/acme/gadget');

      for (const url of [
        '/api/v2/project/circleci/acme/widget',
        '/api/v2/project/circleci%2Facme%2Fwidget',
        '/api/v2/project/gh/acme/widget',
      ]) {
        const g = await call('GET', url, { op: 'getProjectBySlug' });
        expect(g.status).toBe(200);
        expect(g.json.id).toBe(r.json.id);
      }
      const list = await call('GET', '/api/v2/torus/projects');
      expect(list.json.items.map((p: { slug: string }) => p.slug)).toEqual([
        'circleci/acme/gadget',
        'circleci/acme/widget',
      ]);
    });

    it('requires vcs_url', async () => {
      const r = await call('POST', '/api/v2/organization/acme/project', { body: { name: 'x' } });
      expect(r.status).toBe(400);
      expect(r.json.message).toMatch(/vcs_url is required/);
    });

    it('hides other organizations from members, and makes a first-project creator the org admin', async () => {
      await seedPipeline(res, admin.id);
      const alice = await accounts.createUser({ login: 'alice' });
      const t = (await accounts.createToken(alice.id, 'test')).token;
      expect((await call('GET', '/api/v2/project/circleci/acme/widget', { token: t })).status).toBe(404);
      expect((await call('GET', '/api/v2/torus/projects', { token: t })).json.items).toEqual([]);
      const forbidden = await call('POST', '/api/v2/organization/acme/project', {
        token: t,
        body: { vcs_url: 'file:///x/y.git' },
      });
      expect(forbidden.status).toBe(403);

      const local = await call('POST', '/api/v2/organization/alices/project', {
        token: t,
        body: { vcs_url: 'file:///srv/secret.git' },
      });
      expect(local.status).toBe(403);
      expect(local.json.message).toMatch(
        /Only administrators may add a repository from the server's filesystem/,
      );
      const own = await call('POST', '/api/v2/organization/alices/project', {
        token: t,
        body: { vcs_url: 'https://git.example.com/x/tool.git' },
      });
      expect(own.status).toBe(200);
      expect(await accounts.memberRole(own.json.organization_id, alice.id)).toBe('admin');
      expect((await call('GET', '/api/v2/project/circleci/alices/tool', { token: t })).status).toBe(200);
      const collabs = await call('GET', '/api/v2/me/collaborations', { token: t, op: 'getCollaborations' });
      expect(collabs.json.map((c: { slug: string }) => c.slug)).toEqual(['circleci/alices']);
    });
  });

  describe('pipelines', () => {
    let s: Seeded;
    beforeEach(async () => {
      s = await seedPipeline(res, admin.id);
    });

    it('triggers a pipeline: 201 with id, state, number, created_at; the default branch when none given', async () => {
      const r = await call('POST', '/api/v2/project/circleci%2Facme%2Fwidget/pipeline', {
        op: 'triggerPipeline',
        body: { parameters: { deploy: true, count: 3, target: 'prod' } },
      });
      expect(r.status).toBe(201);
      expect(r.json).toMatchObject({ state: 'created', number: 2 });
      expect(engine.calls.at(-1)).toEqual({
        op: 'triggerPipeline',
        args: [
          {
            projectId: s.projectId,
            branch: 'main',
            parameters: { deploy: true, count: 3, target: 'prod' },
            actorId: admin.id,
            triggerType: 'api',
          },
        ],
      });
      const tag = await call('POST', '/api/v2/project/circleci/acme/widget/pipeline', {
        op: 'triggerPipeline',
        body: { tag: 'v1.0.0' },
      });
      expect(tag.status).toBe(201);
      expect(engine.calls.at(-1)?.args[0]).toMatchObject({ tag: 'v1.0.0' });
      expect(engine.calls.at(-1)?.args[0]).not.toHaveProperty('branch');
    });

    it("enforces CircleCI's parameter limits with clear 400s", async () => {
      const many = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`p${i}`, i]));
      const cases: Array<[unknown, RegExp]> = [
        [many, /too many pipeline parameters: 101 given, at most 100/],
        [{ ['k'.repeat(129)]: 1 }, /129 characters long; at most 128/],
        [{ v: 'x'.repeat(513) }, /"v" is 513 characters long; at most 512/],
        [{ f: 1.5 }, /must be integers/],
        [{ o: { a: 1 } }, /must be an integer, a string or a boolean, got object/],
        [{ n: null }, /got null/],
        [[1, 2], /must be an object/],
      ];
      for (const [parameters, message] of cases) {
        const r = await call('POST', '/api/v2/project/circleci/acme/widget/pipeline', {
          body: { parameters },
        });
        expect(r.status, JSON.stringify(parameters).slice(0, 60)).toBe(400);
        expect(r.json.message).toMatch(message);
      }
      const ok = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, 'x'.repeat(512)]));
      expect(
        (await call('POST', '/api/v2/project/circleci/acme/widget/pipeline', { body: { parameters: ok } }))
          .status,
      ).toBe(201);
      const both = await call('POST', '/api/v2/project/circleci/acme/widget/pipeline', {
        body: { branch: 'a', tag: 'b' },
      });
      expect(both.status).toBe(400);
      expect(both.json.message).toMatch(/mutually exclusive/);
    });

    it('reads a pipeline by id and by number, its config and its workflows', async () => {
      const byId = await call('GET', `/api/v2/pipeline/${s.pipelineId}`, { op: 'getPipelineById' });
      expect(byId.json).toMatchObject({
        id: s.pipelineId,
        number: 1,
        state: 'pending',
        project_slug: 'circleci/acme/widget',
        trigger: { type: 'api', actor: { login: 'admin' } },
        vcs: {
          branch: 'main',
          revision: 'abc123abc123abc123abc123abc123abc123abcd',
          commit: { subject: 'Add widget' },
        },
      });
      const byNumber = await call('GET', '/api/v2/project/circleci/acme/widget/pipeline/1', {
        op: 'getPipelineByNumber',
      });
      expect(byNumber.json).toEqual(byId.json);
      expect((await call('GET', '/api/v2/project/circleci/acme/widget/pipeline/7')).status).toBe(404);
      const config = await call('GET', `/api/v2/pipeline/${s.pipelineId}/config`, {
        op: 'getPipelineConfigById',
      });
      expect(config.json).toEqual({ source: 'version: 2.1', compiled: 'version: 2' });
      const wfs = await call('GET', `/api/v2/pipeline/${s.pipelineId}/workflow`, {
        op: 'listWorkflowsByPipelineId',
      });
      expect(wfs.json).toMatchObject({
        items: [{ id: s.workflowId, name: 'build-test', status: 'running', pipeline_number: 1 }],
        next_page_token: null,
      });
    });

    it('lists pipelines newest first, filtered by branch, in pages', async () => {
      for (let i = 0; i < 24; i++) {
        await call('POST', '/api/v2/project/circleci/acme/widget/pipeline', {
          body: { branch: i % 2 ? 'feature' : 'main' },
        });
      }
      const first = await call('GET', '/api/v2/project/circleci/acme/widget/pipeline', {
        op: 'listPipelinesForProject',
      });
      expect(first.json.items).toHaveLength(20);
      expect(first.json.items[0].number).toBe(25);
      expect(first.json.next_page_token).toEqual(expect.any(String));
      const second = await call(
        'GET',
        `/api/v2/project/circleci/acme/widget/pipeline?page-token=${first.json.next_page_token}`,
        {
          op: 'listPipelinesForProject',
        },
      );
      expect(second.json.items.map((p: { number: number }) => p.number)).toEqual([5, 4, 3, 2, 1]);
      expect(second.json.next_page_token).toBeNull();
      const feature = await call('GET', '/api/v2/project/circleci/acme/widget/pipeline?branch=feature', {
        op: 'listPipelinesForProject',
      });
      expect(feature.json.items).toHaveLength(12);
      expect(feature.json.items.every((p: { vcs: { branch: string } }) => p.vcs.branch === 'feature')).toBe(
        true,
      );
      const bad = await call('GET', '/api/v2/project/circleci/acme/widget/pipeline?page-token=garbage');
      expect(bad.status).toBe(400);
      expect(bad.json.message).toMatch(/page-token/);
      const all = await call('GET', '/api/v2/pipeline?org-slug=circleci/acme', { op: 'listPipelines' });
      expect(all.json.items).toHaveLength(20);
      const mine = await call('GET', '/api/v2/project/circleci/acme/widget/pipeline/mine', {
        op: 'listMyPipelines',
      });
      expect(mine.json.items[0].number).toBe(25);
    });
  });

  describe('setup workflows', () => {
    it('continues a pipeline with the continuation key alone, no API token', async () => {
      const ok = await call('POST', '/api/v2/pipeline/continue', {
        token: null,
        op: 'continuePipeline',
        body: { 'continuation-key': 'good-key', configuration: 'version: 2.1', parameters: { deploy: true } },
      });
      expect(ok.status).toBe(200);
      expect(engine.calls.at(-1)).toEqual({
        op: 'continuePipeline',
        args: [{ continuationKey: 'good-key', configuration: 'version: 2.1', parameters: { deploy: true } }],
      });
      const wrong = await call('POST', '/api/v2/pipeline/continue', {
        token: null,
        op: 'continuePipeline',
        body: { 'continuation-key': 'nope', configuration: '' },
      });
      expect(wrong.status).toBe(401);
      const missing = await call('POST', '/api/v2/pipeline/continue', {
        token: null,
        body: { configuration: 'x' },
      });
      expect(missing.status).toBe(400);
      expect(missing.json.message).toMatch(/continuation-key is required/);
      const params = await call('POST', '/api/v2/pipeline/continue', {
        token: null,
        body: { 'continuation-key': 'good-key', configuration: 'x', parameters: { f: 1.5 } },
      });
      expect(params.status).toBe(400);
    });
  });

  describe('workflows and jobs', () => {
    let s: Seeded;
    beforeEach(async () => {
      s = await seedPipeline(res, admin.id);
    });

    it('reads a workflow and its jobs with dependencies and requires by job id', async () => {
      const wf = await call('GET', `/api/v2/workflow/${s.workflowId}`, { op: 'getWorkflowById' });
      expect(wf.json).toMatchObject({
        id: s.workflowId,
        pipeline_id: s.pipelineId,
        started_by: admin.id,
        stopped_at: null,
      });
      const jobs = await call('GET', `/api/v2/workflow/${s.workflowId}/job`, { op: 'listWorkflowJobs' });
      const byName = Object.fromEntries(jobs.json.items.map((j: { name: string }) => [j.name, j]));
      expect(byName.build).toMatchObject({
        id: s.buildJobId,
        type: 'build',
        status: 'running',
        job_number: 1,
        dependencies: [],
        requires: {},
      });
      expect(byName.hold).toMatchObject({
        type: 'approval',
        status: 'on_hold',
        approval_request_id: s.approvalRequestId,
        dependencies: [s.buildJobId],
        started_at: null,
      });
      expect(byName.hold).not.toHaveProperty('job_number');
      expect(byName.test).toMatchObject({
        job_number: 2,
        dependencies: [s.approvalJobId, s.buildJobId],
        requires: { [s.approvalJobId]: ['success'], [s.buildJobId]: ['success', 'failed'] },
      });
    });

    it('approves, cancels and reruns through the engine', async () => {
      const ok = await call('POST', `/api/v2/workflow/${s.workflowId}/approve/${s.approvalRequestId}`, {
        op: 'approvePendingApprovalJobById',
      });
      expect(ok.status).toBe(202);
      expect(engine.calls.at(-1)).toEqual({
        op: 'approveJob',
        args: [s.workflowId, s.approvalRequestId, admin.id],
      });
      expect(
        (await call('POST', `/api/v2/workflow/${s.workflowId}/cancel`, { op: 'cancelWorkflow' })).status,
      ).toBe(202);
      expect(engine.calls.at(-1)).toEqual({ op: 'cancelWorkflow', args: [s.workflowId, admin.id] });

      const rerun = await call('POST', `/api/v2/workflow/${s.workflowId}/rerun`, {
        op: 'rerunWorkflow',
        body: { from_failed: true },
      });
      expect(rerun.status).toBe(202);
      expect(rerun.json).toEqual({ workflow_id: '11111111-1111-4111-8111-111111111111' });
      expect(engine.calls.at(-1)).toEqual({
        op: 'rerunWorkflow',
        args: [s.workflowId, { fromFailed: true, jobs: undefined, actorId: admin.id }],
      });
      await call('POST', `/api/v2/workflow/${s.workflowId}/rerun`, {
        op: 'rerunWorkflow',
        body: { jobs: [s.testJobId], sparse_tree: true },
      });
      expect(engine.calls.at(-1)?.args[1]).toMatchObject({ jobs: [s.testJobId] });
      const ssh = await call('POST', `/api/v2/workflow/${s.workflowId}/rerun`, {
        body: { enable_ssh: true, jobs: [s.testJobId] },
      });
      expect(ssh.status).toBe(400);
      expect(ssh.json.message).toMatch(/enable_ssh is not supported/);
      const both = await call('POST', `/api/v2/workflow/${s.workflowId}/rerun`, {
        body: { from_failed: true, jobs: [s.testJobId] },
      });
      expect(both.status).toBe(400);

      expect(
        (
          await call('POST', '/api/v2/project/circleci/acme/widget/job/2/cancel', {
            op: 'cancelJobByJobNumber',
          })
        ).status,
      ).toBe(200);
      expect(engine.calls.at(-1)).toEqual({ op: 'cancelJob', args: [s.testJobId, admin.id] });
      expect(
        (await call('POST', `/api/v2/jobs/${s.buildJobId}/cancel`, { op: 'cancelJobByJobID' })).status,
      ).toBe(200);
      expect(engine.calls.at(-1)).toEqual({ op: 'cancelJob', args: [s.buildJobId, admin.id] });
    });

    it('shows job details, with the scheduler explaining why a queued job waits', async () => {
      const queued = await call('GET', '/api/v2/project/circleci/acme/widget/job/2', { op: 'getJobDetails' });
      expect(queued.json).toMatchObject({
        number: 2,
        name: 'test',
        status: 'queued',
        parallelism: 2,
        parallel_runs: [
          { index: 0, status: 'queued' },
          { index: 1, status: 'queued' },
        ],
        executor: { type: 'machine', resource_class: 'machine:medium' },
        messages: [
          { type: 'info', message: 'No agent serves resource class machine:medium yet.', reason: 'no_agent' },
        ],
        latest_workflow: { id: s.workflowId, name: 'build-test' },
        pipeline: { id: s.pipelineId },
        organization: { name: 'acme' },
        project: { slug: 'circleci/acme/widget', name: 'widget', external_url: 'file:///srv/git/widget.git' },
        started_at: null,
        duration: null,
        web_url: `http://torus.test/pipelines/circleci/acme/widget/1/workflows/${s.workflowId}/jobs/2`,
      });
      const running = await call('GET', '/api/v2/project/circleci%2Facme%2Fwidget/job/1', {
        op: 'getJobDetails',
      });
      expect(running.json).toMatchObject({
        status: 'running',
        messages: [],
        contexts: [{ name: 'deploy-creds' }],
        parallel_runs: [{ index: 0, status: 'running' }],
      });
      expect((await call('GET', '/api/v2/project/circleci/acme/widget/job/99')).status).toBe(404);
    });

    it('serves the v1.1 build with steps and actions whose output_url returns CircleCI messages', async () => {
      scheduler.print(s.taskId, 3, 'compiling\n');
      scheduler.print(s.taskId, 3, 'warning: x\n', 'err');
      const r = await call('GET', '/api/v1.1/project/circleci/acme/widget/1');
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({
        build_num: 1,
        status: 'running',
        lifecycle: 'running',
        username: 'acme',
        reponame: 'widget',
        parallel: 1,
      });
      expect(r.json.steps.map((st: { name: string }) => st.name)).toEqual([
        'Spin up environment',
        'Preparing environment variables',
        'Checkout code',
        'Build',
      ]);
      const build = r.json.steps[3].actions[0];
      expect(build).toMatchObject({
        index: 0,
        step: 3,
        name: 'Build',
        status: 'running',
        bash_command: 'make build',
        has_output: true,
        exit_code: null,
      });
      expect(r.json.steps[2].actions[0]).toMatchObject({
        status: 'success',
        exit_code: 0,
        run_time_millis: 1000,
        bash_command: null,
      });
      expect(build.output_url).toMatch(
        /^http:\/\/torus\.test\/api\/v1\.1\/project\/circleci\/acme\/widget\/1\/output\/3\/0\?exp=\d+&sig=[\w-]+$/,
      );
      const signed = new URL(build.output_url as string);
      // like CircleCI's presigned URLs, it works as handed out, without a token
      const out = await call('GET', signed.pathname + signed.search, { token: null });
      expect(out.status).toBe(200);
      expect(out.json).toEqual([
        { type: 'out', time: expect.any(String), message: 'compiling\n' },
        { type: 'err', time: expect.any(String), message: 'warning: x\n' },
      ]);
      const text = await call('GET', `${signed.pathname}${signed.search}&file=true`, { token: null });
      expect(text.body).toBe('compiling\nwarning: x\n');
      // with the token instead of a signature
      expect((await call('GET', signed.pathname)).json).toEqual(out.json);
      expect((await call('GET', signed.pathname, { token: null })).status).toBe(401);
      // the signature covers the step and parallel run, and expires
      const other = `/api/v1.1/project/circleci/acme/widget/1/output/2/0${signed.search}`;
      expect((await call('GET', other, { token: null })).status).toBe(403);
      res.setNow(new Date(Date.now() + 2 * 60 * 60 * 1000));
      const expired = await call('GET', signed.pathname + signed.search, { token: null });
      expect(expired.status).toBe(403);
      expect(expired.json.message).toMatch(/expired or is not valid/);
      res.setNow(null);
      expect((await call('GET', '/api/v1.1/project/circleci/acme/widget/1/output/3/5')).status).toBe(404);
    });
  });

  describe('live output', () => {
    it('streams a printed line within 500 ms, then an end event when the step is done', async () => {
      const s = await seedPipeline(res, admin.id);
      scheduler.print(s.taskId, 3, 'before\n');
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      try {
        const resp = await fetch(
          `${url}/api/v2/project/circleci/acme/widget/job/1/output?step=3&index=0&follow=true`,
          {
            headers: { 'circle-token': adminToken },
          },
        );
        expect(resp.status).toBe(200);
        expect(resp.headers.get('content-type')).toMatch(/text\/event-stream/);
        const reader = resp.body!.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        const next = async (pattern: RegExp, ms: number) => {
          const deadline = Date.now() + ms;
          while (!pattern.test(buf)) {
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`no ${pattern} within ${ms} ms; got ${JSON.stringify(buf)}`);
            const chunk = await Promise.race([
              reader.read(),
              new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), left)),
            ]);
            if (chunk === 'timeout') continue;
            if (chunk.done) break;
            buf += decoder.decode(chunk.value, { stream: true });
          }
          return buf;
        };
        await next(/before/, 2000);
        // the best of three deliveries, so one stall of a loaded test machine does not fail it
        const lags: number[] = [];
        for (const line of ['live one', 'live two', 'live three']) {
          const t0 = Date.now();
          scheduler.print(s.taskId, 3, `${line}\n`);
          await next(new RegExp(line), 3000);
          lags.push(Date.now() - t0);
        }
        expect(Math.min(...lags)).toBeLessThan(500);
        scheduler.endStep(s.taskId, 3);
        await next(/event: end/, 2000);
        expect(buf).toMatch(
          /event: output\ndata: \{"seq":0,"type":"out","time":"[^"]+","message":"before\\n"\}/,
        );
        await reader.cancel();
        await waitFor(() => scheduler.followerCount() === 0, 2000);

        // A client that goes away mid-step leaves no subscription behind.
        const other = await fetch(
          `${url}/api/v2/project/circleci/acme/widget/job/1/output?step=2&index=0&follow=true`,
          {
            headers: { 'circle-token': adminToken },
          },
        );
        const r2 = other.body!.getReader();
        await r2.read();
        await waitFor(() => scheduler.followerCount() === 1, 2000);
        await r2.cancel();
        await waitFor(() => scheduler.followerCount() === 0, 2000);
      } finally {
        await app.close();
        app = await buildApp(res, { engine, scheduler, accounts });
      }
    });
  });

  describe('pipeline events', () => {
    it('sends the pipeline and its workflows at once and after each change', async () => {
      const s = await seedPipeline(res, admin.id);
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      try {
        const resp = await fetch(`${url}/api/v2/torus/pipeline/${s.pipelineId}/events`, {
          headers: { authorization: `Bearer ${adminToken}` },
        });
        expect(resp.headers.get('content-type')).toMatch(/text\/event-stream/);
        const reader = resp.body!.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        const readUntil = async (pattern: RegExp) => {
          const deadline = Date.now() + 3000;
          while (!pattern.test(buf)) {
            if (Date.now() > deadline) throw new Error(`no ${pattern}; got ${buf}`);
            const r = await reader.read();
            if (r.done) break;
            buf += decoder.decode(r.value, { stream: true });
          }
        };
        await readUntil(/"status":"running"/);
        expect(buf).toMatch(/^: stream open\n\nevent: pipeline\ndata: \{"pipeline":\{"id":"/);
        buf = '';
        await res.db.query(`UPDATE workflows SET status = 'success' WHERE id = $1`, [s.workflowId]);
        await res.db.notify('torus_pipeline_changed', s.pipelineId);
        await readUntil(/"status":"success"/);
        await reader.cancel();
        const gone = await fetch(`${url}/api/v2/torus/pipeline/${admin.id}/events`, {
          headers: { authorization: `Bearer ${adminToken}` },
        });
        expect(gone.status).toBe(404);
      } finally {
        await app.close();
        app = await buildApp(res, { engine, scheduler, accounts });
      }
    });
  });

  describe('request bodies', () => {
    it('reads JSON whatever the content type, as curl -d sends it, and takes a bare Authorization token', async () => {
      await seedPipeline(res, admin.id);
      const r = await app.inject({
        method: 'POST',
        url: '/api/v2/project/circleci/acme/widget/pipeline',
        headers: { authorization: adminToken, 'content-type': 'application/x-www-form-urlencoded' },
        payload: '{"branch":"feature"}',
      });
      expect(r.statusCode).toBe(201);
      expect(engine.calls.at(-1)?.args[0]).toMatchObject({ branch: 'feature' });
      const empty = await app.inject({
        method: 'POST',
        url: '/api/v2/project/circleci/acme/widget/pipeline',
        headers: { 'circle-token': adminToken, 'content-type': 'application/json' },
      });
      expect(empty.statusCode).toBe(201);
    });
  });

  describe('administration', () => {
    it('lets admins create users whose first token works, and suspend them', async () => {
      const created = await call('POST', '/api/v2/torus/users', { body: { login: 'bob', name: 'Bob' } });
      expect(created.status).toBe(201);
      expect(created.json).toMatchObject({
        login: 'bob',
        name: 'Bob',
        role: 'member',
        suspended: false,
        token: { token: expect.stringMatching(/^[0-9a-f]{40}$/) },
      });
      const bobToken = created.json.token.token as string;
      expect((await call('GET', '/api/v2/me', { token: bobToken })).json.login).toBe('bob');
      expect((await call('GET', '/api/v2/torus/users', { token: bobToken })).status).toBe(403);
      expect(
        (await call('POST', '/api/v2/torus/users', { token: bobToken, body: { login: 'eve' } })).status,
      ).toBe(403);
      expect(
        (await call('POST', '/api/v2/torus/orgs', { token: bobToken, body: { name: 'evil' } })).status,
      ).toBe(403);
      expect(
        (
          await call('POST', '/api/v2/torus/agent-tokens', {
            token: bobToken,
            body: { resource_class: 'x/y' },
          })
        ).status,
      ).toBe(403);
      expect((await call('POST', '/api/v2/torus/users', { body: { login: 'bob' } })).status).toBe(409);

      expect((await call('POST', '/api/v2/torus/users/bob/suspend')).json.suspended).toBe(true);
      expect((await call('GET', '/api/v2/me', { token: bobToken })).status).toBe(401);
      await call('POST', '/api/v2/torus/users/bob/unsuspend');
      expect((await call('GET', '/api/v2/me', { token: bobToken })).status).toBe(200);
      const users = await call('GET', '/api/v2/torus/users');
      expect(users.json.items.map((u: { login: string }) => u.login)).toEqual(['admin', 'bob']);
    });

    it("lets users manage their own tokens, and admins anyone's", async () => {
      const bob = await accounts.createUser({ login: 'bob' });
      const bobToken = (await accounts.createToken(bob.id, 'first')).token;
      const made = await call('POST', '/api/v2/torus/users/me/tokens', {
        token: bobToken,
        body: { label: 'laptop' },
      });
      expect(made.status).toBe(201);
      expect(made.json).toMatchObject({
        label: 'laptop',
        hint: (made.json.token as string).slice(0, 4),
        last_used_at: null,
      });
      const list = await call('GET', '/api/v2/torus/users/me/tokens', { token: bobToken });
      expect(list.json.items.map((t: { label: string }) => t.label).sort()).toEqual(['first', 'laptop']);
      expect(JSON.stringify(list.json)).not.toContain(made.json.token);
      expect((await call('GET', '/api/v2/torus/users/admin/tokens', { token: bobToken })).status).toBe(403);

      const revoke = await call('DELETE', `/api/v2/torus/users/bob/tokens/${made.json.id}`);
      expect(revoke.status).toBe(200);
      expect((await call('GET', '/api/v2/me', { token: made.json.token })).status).toBe(401);
      expect(
        (await call('DELETE', `/api/v2/torus/users/me/tokens/${made.json.id}`, { token: bobToken })).status,
      ).toBe(404);
    });

    it('manages organizations and members', async () => {
      const bob = await accounts.createUser({ login: 'bob' });
      const bobToken = (await accounts.createToken(bob.id, 'x')).token;
      const org = await call('POST', '/api/v2/torus/orgs', { body: { name: 'acme' } });
      expect(org.status).toBe(201);
      expect(org.json).toMatchObject({ name: 'acme', slug: 'circleci/acme' });
      expect((await call('GET', '/api/v2/torus/orgs', { token: bobToken })).json.items).toEqual([]);
      expect((await call('POST', '/api/v2/torus/orgs/acme/members', { body: { login: 'bob' } })).status).toBe(
        201,
      );
      expect(
        (await call('GET', '/api/v2/torus/orgs', { token: bobToken })).json.items.map(
          (o: { name: string }) => o.name,
        ),
      ).toEqual(['acme']);
      const members = await call('GET', '/api/v2/torus/orgs/acme/members', { token: bobToken });
      expect(members.json.items).toMatchObject([{ login: 'bob', role: 'member' }]);
      // a plain member cannot change membership
      expect((await call('DELETE', '/api/v2/torus/orgs/acme/members/bob', { token: bobToken })).status).toBe(
        403,
      );
      expect((await call('DELETE', '/api/v2/torus/orgs/acme/members/bob')).status).toBe(200);
      expect((await call('GET', '/api/v2/torus/orgs/acme/members', { token: bobToken })).status).toBe(404);
      const agent = await call('POST', '/api/v2/torus/agent-tokens', {
        body: { resource_class: 'acme/runner', name: 'r1' },
      });
      expect(agent.json).toMatchObject({ token: 'agent-acme/runner', resource_class: 'acme/runner' });
    });
  });
});
