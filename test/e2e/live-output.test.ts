// Following a running step: each line a step prints reaches a Server-Sent Events follower quickly
// (the bound is 500 ms; the figure is measured by bench/, this test only guards against
// output that is held back until the step ends).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const CONFIG = `version: 2.1
jobs:
  ticker:
    machine: true
    steps:
      - run:
          name: Tick
          command: for i in 1 2 3 4 5; do echo "tick $i $(date +%s%3N)"; sleep 0.7; done
workflows:
  w:
    jobs: [ticker]
`;

describe('live output', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    server = await startTorusServer({ localAgents: 1 });
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('streams each printed line to a follower while the step runs', async () => {
    const repo = makeGitRepo({ '.circleci/config.yml': CONFIG });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/live/project', {
      name: 'ticker',
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
      return j?.status === 'running' && j.job_number ? j : false;
    }, 30_000);

    // step index 2 is the first config step (0: Spin up environment, 1: Preparing environment variables)
    const res = await fetch(
      `${server.url}/api/v2/project/${p.body.slug}/job/${job.job_number}/output?step=2&index=0&follow=true`,
      {
        headers: { 'circle-token': server.token, accept: 'text/event-stream' },
      },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const lags: number[] = [];
    const decoder = new TextDecoder();
    let buf = '';
    let ended = false;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      for (const m of buf.matchAll(/tick \d (\d{13})/g)) lags.push(Date.now() - Number(m[1]));
      buf = buf.replace(/tick \d \d{13}/g, '');
      if (/event: end/.test(buf)) {
        ended = true;
        break;
      }
    }
    expect(ended).toBe(true);
    // lines that were printed while we followed arrive one by one, long before the step's end
    const live = lags.filter((l) => l < 3000);
    expect(live.length).toBeGreaterThanOrEqual(3);
    expect(Math.min(...live)).toBeLessThan(1000);
  });
});
