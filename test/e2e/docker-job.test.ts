// A docker job through a real server and its local agent: the primary container runs the steps,
// a service container answers on localhost, the job's resource class is applied, and nothing is left
// behind on the engine afterwards.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';
import { BUSYBOX_IMAGE, requireDocker } from '../harness/docker.js';

const hasDocker = requireDocker('docker jobs end to end');

const CONFIG = `version: 2.1
jobs:
  in-docker:
    docker:
      - image: ${BUSYBOX_IMAGE}
        environment:
          GREETING: hello-from-primary
      - image: ${BUSYBOX_IMAGE}
        name: web
        command: ["sh", "-c", "mkdir -p /www && echo service-page > /www/index.html && httpd -f -p 8080 -h /www"]
    resource_class: small
    steps:
      - run:
          name: Primary
          command: echo "$GREETING in $(cat /etc/hostname | wc -c) bytes host; node $CIRCLE_NODE_INDEX"
      - run:
          name: Service on localhost
          command: |
            for i in $(seq 1 50); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; exit 1
workflows:
  w:
    jobs: [in-docker]
`;

describe.skipIf(!hasDocker)('docker jobs', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    server = await startTorusServer({
      localAgents: 1,
      env: { DOCKER_HOST: process.env.TORUS_TEST_DOCKER_HOST! },
    });
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('runs the steps in the primary container with a service on localhost, and cleans up', async () => {
    const repo = makeGitRepo({ '.circleci/config.yml': CONFIG });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/dock/project', {
      name: 'app',
      vcs_url: repo,
    });
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${p.body.slug}/pipeline`, {});
    const job = await waitFor(async () => {
      const wf = (
        await api<{ items: Array<{ id: string }> }>(
          server.url,
          'GET',
          `/api/v2/pipeline/${trig.body.id}/workflow`,
        )
      ).body.items[0];
      if (!wf) return false;
      const j = (
        await api<{ items: Array<{ status: string; job_number?: number }> }>(
          server.url,
          'GET',
          `/api/v2/workflow/${wf.id}/job`,
        )
      ).body.items[0];
      return j && ['success', 'failed', 'infrastructure_fail'].includes(j.status) ? j : false;
    }, 120_000);
    const v1 = await api<{ steps: Array<{ name: string; actions: Array<{ output_url: string }> }> }>(
      server.url,
      'GET',
      `/api/v1.1/project/${p.body.slug}/${job.job_number}`,
    );
    const outputs: Record<string, string> = {};
    for (const step of v1.body.steps) {
      const msgs = await fetch(step.actions[0]!.output_url, {
        headers: { 'circle-token': server.token },
      }).then((r) => r.json() as Promise<Array<{ message: string }>>);
      outputs[step.name] = msgs.map((m) => m.message).join('');
    }
    expect(job.status, JSON.stringify(outputs, null, 1)).toBe('success');
    expect(outputs['Primary']).toContain('hello-from-primary');
    expect(outputs['Service on localhost']).toContain('service-page');
    expect(outputs['Spin up environment']).toMatch(new RegExp(BUSYBOX_IMAGE.replace(/[/.]/g, '\\$&')));
    // nothing of this server's agent left on the engine (other suites share the engine: their
    // containers carry other agent processes' labels, <host>/<boot>/<pid>/…)
    const agentPids = readFileSync(`/proc/${server.proc.pid}/task/${server.proc.pid}/children`, 'utf8')
      .split(' ')
      .filter(Boolean);
    const left = execFileSync(
      'docker',
      [
        '-H',
        process.env.TORUS_TEST_DOCKER_HOST!,
        'ps',
        '-a',
        '--format',
        '{{.ID}} {{.Label "io.torus.agent-process"}}',
      ],
      { encoding: 'utf8' },
    )
      .split('\n')
      .filter((line) => agentPids.includes(line.split(' ')[1]?.split('/')[2] ?? ''));
    expect(agentPids.length).toBeGreaterThan(0);
    expect(left).toEqual([]);
  });
});
