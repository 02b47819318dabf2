// Project and context variables reach a real job, layered as CircleCI layers them, and never show in
// its output, in the server's logs or in the database's task queue; a job naming a context the
// organization lacks fails with a message saying so.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const PROJECT_SECRET = 'project-s3cret-9f2c';
const CONTEXT_SECRET = 'context-s3cret-7a1d';

const CONFIG = `version: 2.1
jobs:
  show:
    machine: true
    environment:
      OVERRIDDEN_BY_JOB: from-job
    steps:
      - run:
          name: Print the variables
          command: |
            echo "project=$PROJECT_SECRET"
            echo "context=$SHARED"
            echo "job wins: $OVERRIDDEN_BY_JOB"
            printf 'straddle=%s' "\${PROJECT_SECRET%????}"; sleep 0.3; printf '%s\\n' "\${PROJECT_SECRET#\${PROJECT_SECRET%????}}"
            test "$PROJECT_SECRET" = "${PROJECT_SECRET}" && test "$SHARED" = "${CONTEXT_SECRET}"
workflows:
  w:
    jobs:
      - show:
          context: [deploy]
      - show:
          name: no-such-context
          context: [missing-one]
`;

interface Job {
  name: string;
  status: string;
  job_number?: number;
}

describe('secrets in jobs', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    server = await startTorusServer({ localAgents: 1 });
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('injects project and context variables, masks them, and fails a job whose context is missing', async () => {
    const repo = makeGitRepo({ '.circleci/config.yml': CONFIG });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/sec/project', {
      name: 'app',
      vcs_url: repo,
    });
    const slug = p.body.slug;
    for (const [name, value] of [
      ['PROJECT_SECRET', PROJECT_SECRET],
      ['SHARED', 'project-value-loses'],
      ['OVERRIDDEN_BY_JOB', 'project-value-loses-too'],
    ]) {
      expect((await api(server.url, 'POST', `/api/v2/project/${slug}/envvar`, { name, value })).status).toBe(
        201,
      );
    }
    const ctx = await api<{ id: string }>(server.url, 'POST', '/api/v2/context', {
      name: 'deploy',
      owner: { slug: 'circleci/sec', type: 'organization' },
    });
    expect(ctx.status).toBe(200);
    const put = await api(server.url, 'PUT', `/api/v2/context/${ctx.body.id}/environment-variable/SHARED`, {
      value: CONTEXT_SECRET,
    });
    expect(put.status).toBe(200);

    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {});
    const jobs = await waitFor(async () => {
      const wf = (
        await api<{ items: Array<{ id: string }> }>(
          server.url,
          'GET',
          `/api/v2/pipeline/${trig.body.id}/workflow`,
        )
      ).body.items[0];
      if (!wf) return false;
      const items = (await api<{ items: Job[] }>(server.url, 'GET', `/api/v2/workflow/${wf.id}/job`)).body
        .items;
      return items.every((j) => ['success', 'failed'].includes(j.status)) ? items : false;
    }, 90_000);
    const show = jobs.find((j) => j.name === 'show')!;
    const missing = jobs.find((j) => j.name === 'no-such-context')!;
    expect(show.status).toBe('success');
    expect(missing.status).toBe('failed');

    const details = await api<{ messages: Array<{ message: string }> }>(
      server.url,
      'GET',
      `/api/v2/project/${slug}/job/${missing.job_number}`,
    );
    expect(details.body.messages.map((m) => m.message).join('\n')).toMatch(
      /Could not find context "missing-one"/,
    );

    const v1 = await api<{ steps: Array<{ name: string; actions: Array<{ output_url: string }> }> }>(
      server.url,
      'GET',
      `/api/v1.1/project/${slug}/${show.job_number}`,
    );
    const printed = v1.body.steps.find((s) => s.name === 'Print the variables')!.actions[0]!;
    const out = (
      await fetch(printed.output_url, { headers: { 'circle-token': server.token } }).then(
        (r) => r.json() as Promise<Array<{ message: string }>>,
      )
    )
      .map((m) => m.message)
      .join('');
    expect(out).toContain('project=********');
    expect(out).toContain('context=********');
    expect(out).toContain('job wins: from-job');
    expect(out).not.toContain(PROJECT_SECRET);
    expect(out).not.toContain(CONTEXT_SECRET);
    // printed in two writes 300 ms apart: still masked as a whole
    expect(out).not.toContain(PROJECT_SECRET.slice(0, -4));

    // nor in the server's log, nor in the queue's stored task specs
    expect(server.output()).not.toContain(PROJECT_SECRET);
    expect(server.output()).not.toContain(CONTEXT_SECRET);
    const dump = readFileSync(`${server.dataDir}/torus.log`, { encoding: 'utf8', flag: 'a+' });
    expect(dump).not.toContain(PROJECT_SECRET);
  });
});
