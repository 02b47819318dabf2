// A project made from a new git repository with a config that exercises the workflow engine end to
// end through the real server and local agents: several workflows, requires with statuses, branch
// and tag filters, an approval, a failing job and pipeline parameters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { startTorusServer, api, makeGitRepo, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const CONFIG = `
version: 2.1
parameters:
  greeting:
    type: string
    default: hello
  run-extra:
    type: boolean
    default: false
jobs:
  build:
    machine: true
    steps:
      - checkout
      - run: test -f README.md && echo "<< pipeline.parameters.greeting >> from $CIRCLE_JOB on $CIRCLE_BRANCH"
  flaky:
    machine: true
    steps:
      - run:
          name: Fails on purpose
          command: echo "about to fail"; exit 3
  cleanup:
    machine: true
    steps:
      - run: echo cleaning up after a failure
  after-flaky:
    machine: true
    steps:
      - run: echo never runs
  deploy:
    machine: true
    steps:
      - run: echo deploying $CIRCLE_SHA1
  release:
    machine: true
    steps:
      - run: echo releasing $CIRCLE_TAG
  extra:
    machine: true
    steps:
      - run: echo extra
workflows:
  main:
    jobs:
      - build
      - flaky
      - cleanup:
          requires:
            - flaky: failed
      - after-flaky:
          requires: [flaky]
      - hold:
          type: approval
          requires: [build]
      - deploy:
          requires: [hold]
          filters:
            branches:
              only: main
  tagged:
    jobs:
      - release:
          filters:
            tags:
              only: /^v.*/
            branches:
              ignore: /.*/
  extra:
    when: << pipeline.parameters.run-extra >>
    jobs: [extra]
`;

interface Workflow {
  id: string;
  name: string;
  status: string;
}
interface Job {
  id: string;
  name: string;
  status: string;
  type: string;
  job_number?: number;
  approval_request_id?: string;
}

describe('a pipeline with workflows, filters, an approval and a failing job', () => {
  let server: TorusProcess;
  let slug: string;
  let repo: string;
  beforeAll(async () => {
    server = await startTorusServer({ localAgents: 2 });
    repo = makeGitRepo({ 'README.md': '# flow\n', '.circleci/config.yml': CONFIG });
    const created = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/acme/project', {
      name: 'flow',
      vcs_url: `file://${repo}`,
    });
    expect(created.status).toBe(200);
    slug = created.body.slug;
    expect(slug).toBe('circleci/acme/flow');
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  const workflows = async (pipelineId: string) =>
    (await api<{ items: Workflow[] }>(server.url, 'GET', `/api/v2/pipeline/${pipelineId}/workflow`)).body
      .items;
  const jobs = async (workflowId: string) =>
    (await api<{ items: Job[] }>(server.url, 'GET', `/api/v2/workflow/${workflowId}/job`)).body.items;
  const byName = (js: Job[]) => Object.fromEntries(js.map((j) => [j.name, j]));

  it('runs the DAG with statuses, holds for approval, then deploys', async () => {
    const trig = await api<{ id: string; number: number; state: string }>(
      server.url,
      'POST',
      `/api/v2/project/${slug}/pipeline`,
      {
        branch: 'main',
        parameters: { greeting: 'bonjour' },
      },
    );
    expect(trig.status).toBe(201);
    expect(trig.body.number).toBe(1);
    const pid = trig.body.id;

    const main = await waitFor(async () => (await workflows(pid)).find((w) => w.name === 'main'), 30_000);
    // only `main` exists: `tagged` filters out branches, `extra` is off
    expect((await workflows(pid)).map((w) => w.name)).toEqual(['main']);

    const held = await waitFor(async () => {
      const js = byName(await jobs(main.id));
      return js.hold?.status === 'on_hold' &&
        js.cleanup?.status === 'success' &&
        js['after-flaky']?.status === 'not_run'
        ? js
        : false;
    }, 60_000);
    expect(held.build?.status).toBe('success');
    expect(held.flaky?.status).toBe('failed');
    expect(held.deploy?.status).toBe('blocked');
    expect(held.hold?.type).toBe('approval');

    // the failing job's output names its exit code
    const flakyJob = await api<{
      steps: Array<{
        name: string;
        actions: Array<{ exit_code: number | null; output_url: string; status: string }>;
      }>;
    }>(server.url, 'GET', `/api/v1.1/project/${slug}/${held.flaky!.job_number}`);
    const failing = flakyJob.body.steps.find((s) => s.name === 'Fails on purpose')!.actions[0]!;
    expect(failing.exit_code).toBe(3);
    expect(failing.status).toBe('failed');
    const out = await fetch(failing.output_url, { headers: { 'circle-token': server.token } }).then(
      (r) => r.json() as Promise<Array<{ message: string }>>,
    );
    expect(out.map((m) => m.message).join('')).toContain('about to fail');

    // the build job saw the pipeline parameter and its built-in variables
    const buildJob = await api<{ steps: Array<{ name: string; actions: Array<{ output_url: string }> }> }>(
      server.url,
      'GET',
      `/api/v1.1/project/${slug}/${held.build!.job_number}`,
    );
    const buildOut = await Promise.all(
      buildJob.body.steps
        .flatMap((s) => s.actions)
        .map((a) =>
          fetch(a.output_url, { headers: { 'circle-token': server.token } }).then(
            (r) => r.json() as Promise<Array<{ message: string }>>,
          ),
        ),
    );
    expect(
      buildOut
        .flat()
        .map((m) => m.message)
        .join(''),
    ).toContain('bonjour from build on main');

    const approve = await api(
      server.url,
      'POST',
      `/api/v2/workflow/${main.id}/approve/${held.hold!.approval_request_id ?? held.hold!.id}`,
    );
    expect(approve.status).toBe(202);
    const done = await waitFor(async () => {
      const w = (await workflows(pid)).find((x) => x.name === 'main')!;
      return ['failed', 'success'].includes(w.status) ? w : false;
    }, 60_000);
    expect(done.status).toBe('failed'); // flaky failed
    expect(byName(await jobs(main.id)).deploy?.status).toBe('success');
  });

  it('creates the workflow a pipeline parameter turns on, and the tag workflow for tags only', async () => {
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {
      branch: 'main',
      parameters: { 'run-extra': true },
    });
    const names = await waitFor(async () => {
      const ws = await workflows(trig.body.id);
      return ws.length === 2 ? ws.map((w) => w.name).sort() : false;
    }, 30_000);
    expect(names).toEqual(['extra', 'main']);

    // a tag pipeline runs only the job whose filters take tags
    execFileSync('git', ['tag', 'v1.0'], { cwd: repo });
    const tagged = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {
      tag: 'v1.0',
    });
    expect(tagged.status).toBe(201);
    const wf = await waitFor(async () => {
      const ws = await workflows(tagged.body.id);
      return ws.length > 0 && ws.every((w) => w.status === 'success') ? ws : false;
    }, 30_000);
    expect(wf.map((w) => w.name)).toEqual(['tagged']);
    expect(Object.keys(byName(await jobs(wf[0]!.id)))).toEqual(['release']);
  });

  it('rejects a parameter the config does not declare, and an unknown project', async () => {
    const bad = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {
      branch: 'main',
      parameters: { nope: 1 },
    });
    // CircleCI accepts the trigger and errors the pipeline
    const pipeline = await waitFor(async () => {
      const p = await api<{ state: string; errors: Array<{ type: string; message: string }> }>(
        server.url,
        'GET',
        `/api/v2/pipeline/${bad.body.id}`,
      );
      return p.body.state === 'errored' ? p.body : false;
    }, 30_000);
    expect(pipeline.errors[0]?.message).toMatch(/nope/);
    const missing = await api<{ message: string }>(
      server.url,
      'POST',
      '/api/v2/project/circleci/acme/none/pipeline',
      {},
    );
    expect(missing.status).toBe(404);
    expect(missing.body.message).toBeTruthy();
  });

  it('marks a pipeline with invalid YAML errored with line and column', async () => {
    const repo = makeGitRepo({
      '.circleci/config.yml': 'version: 2.1\njobs:\n  a:\n    machine: true\n   steps: [oops\n',
    });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/acme/project', {
      name: 'broken',
      vcs_url: repo,
    });
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${p.body.slug}/pipeline`, {});
    const errored = await waitFor(async () => {
      const r = await api<{ state: string; errors: Array<{ type: string; message: string }> }>(
        server.url,
        'GET',
        `/api/v2/pipeline/${trig.body.id}`,
      );
      return r.body.state === 'errored' ? r.body : false;
    }, 30_000);
    expect(errored.errors[0]?.type).toBe('config');
    expect(errored.errors[0]?.message).toMatch(/config\.yml:\d+:\d+/);
  });
});
