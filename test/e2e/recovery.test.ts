// Failure recovery through real processes: an agent killed with SIGKILL mid-job has its task
// re-queued once the lease expires, and a server killed with SIGKILL mid-pipeline loses nothing and
// the pipeline still reaches a final state after a restart.
import { afterEach, describe, expect, it } from 'vitest';
import { startTorusServer, startTorusAgent, api, makeGitRepo, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const SLOW_CONFIG = `
version: 2.1
jobs:
  slow:
    machine: true
    steps:
      - run:
          name: First
          command: echo first step done
      - run:
          name: Slow
          command: echo started; sleep 4; echo finished
  after:
    machine: true
    steps:
      - run: echo after
workflows:
  w:
    jobs:
      - slow
      - after:
          requires: [slow]
`;

interface Job {
  id: string;
  name: string;
  status: string;
  job_number?: number;
}

const started: Array<{ kill(s?: NodeJS.Signals): Promise<void> }> = [];
afterEach(async () => {
  for (const p of started.splice(0)) await p.kill('SIGKILL');
});

async function setupProject(server: TorusProcess, name: string): Promise<string> {
  const repo = makeGitRepo({ '.circleci/config.yml': SLOW_CONFIG });
  const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/recovery/project', {
    name,
    vcs_url: `file://${repo}`,
  });
  expect(p.status).toBe(200);
  return p.body.slug;
}

async function jobsOf(server: TorusProcess, pipelineId: string): Promise<Record<string, Job>> {
  const wfs = (
    await api<{ items: Array<{ id: string }> }>(server.url, 'GET', `/api/v2/pipeline/${pipelineId}/workflow`)
  ).body.items;
  if (!wfs[0]) return {};
  const js = (await api<{ items: Job[] }>(server.url, 'GET', `/api/v2/workflow/${wfs[0].id}/job`)).body.items;
  return Object.fromEntries(js.map((j) => [j.name, j]));
}

describe('recovery', () => {
  it(
    're-queues the task of an agent killed with SIGKILL once its lease expires',
    { timeout: 240_000 },
    async () => {
      const server = await startTorusServer({
        localAgents: 0,
        env: { TORUS_LEASE_MS: '1500', TORUS_HEARTBEAT_MS: '200' },
      });
      started.push(server);
      const tok = await api<{ token: string }>(server.url, 'POST', '/api/v2/torus/agent-tokens', {
        resource_class: 'machine:*',
        name: 'e2e',
      });
      expect(tok.status).toBe(201);
      const slug = await setupProject(server, 'agentkill');
      const first = await startTorusAgent(server.url, tok.body.token);
      started.push(first);
      const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {
        branch: 'main',
      });
      await waitFor(async () => (await jobsOf(server, trig.body.id)).slow?.status === 'running', 30_000);
      await new Promise((r) => setTimeout(r, 500)); // mid-step
      await first.kill('SIGKILL');

      const second = await startTorusAgent(server.url, tok.body.token);
      started.push(second);
      const jobs = await waitFor(async () => {
        const js = await jobsOf(server, trig.body.id);
        return js.after?.status === 'success' ? js : false;
      }, 60_000);
      expect(jobs.slow?.status).toBe('success');
      const details = await api<{ messages: Array<{ message: string }> }>(
        server.url,
        'GET',
        `/api/v2/project/${slug}/job/${jobs.slow!.job_number}`,
      );
      expect(details.body.messages.map((m) => m.message).join('\n')).toMatch(/re-queued/);
      await server.kill('SIGTERM');
    },
  );

  it(
    'loses nothing when the server is killed with SIGKILL mid-pipeline, and finishes after a restart',
    { timeout: 240_000 },
    async () => {
      let server = await startTorusServer({
        localAgents: 1,
        env: { TORUS_LEASE_MS: '3000', TORUS_HEARTBEAT_MS: '200' },
      });
      started.push(server);
      const slug = await setupProject(server, 'serverkill');
      const trig = await api<{ id: string; number: number }>(
        server.url,
        'POST',
        `/api/v2/project/${slug}/pipeline`,
        { branch: 'main' },
      );
      const running = await waitFor(async () => {
        const js = await jobsOf(server, trig.body.id);
        return js.slow?.status === 'running' ? js : false;
      }, 30_000);
      await new Promise((r) => setTimeout(r, 1000)); // the first step has finished, the slow one runs
      await server.kill('SIGKILL');

      server = await startTorusServer({
        dataDir: server.dataDir,
        port: Number(new URL(server.url).port),
        localAgents: 1,
        env: { TORUS_LEASE_MS: '3000', TORUS_HEARTBEAT_MS: '200' },
      });
      started.push(server);
      const jobs = await waitFor(async () => {
        const js = await jobsOf(server, trig.body.id);
        return js.after && ['success', 'failed', 'infrastructure_fail'].includes(js.after.status)
          ? js
          : false;
      }, 90_000);
      expect(jobs.slow?.id).toBe(running.slow?.id);
      expect(jobs.slow?.status).toBe('success');
      expect(jobs.after?.status).toBe('success');
      const p = await api<{ number: number; state: string }>(
        server.url,
        'GET',
        `/api/v2/pipeline/${trig.body.id}`,
      );
      expect(p.body).toMatchObject({ number: trig.body.number, state: 'pending' });
      // the slow job's output is all there, first step included
      const v11 = await api<{ steps: Array<{ name: string; actions: Array<{ output_url: string }> }> }>(
        server.url,
        'GET',
        `/api/v1.1/project/${slug}/${jobs.slow!.job_number}`,
      );
      const text = async (name: string) => {
        const a = v11.body.steps.find((s) => s.name === name)!.actions[0]!;
        const msgs = (await fetch(a.output_url, { headers: { 'circle-token': server.token } }).then((r) =>
          r.json(),
        )) as Array<{ message: string }>;
        return msgs.map((m) => m.message).join('');
      };
      expect(await text('First')).toContain('first step done');
      expect(await text('Slow')).toContain('finished');
      await server.kill('SIGTERM');
    },
  );
});
