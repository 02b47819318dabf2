// A two-job workflow that uses what real configs use, through a real server and local agent in
// Docker: checkout into an image without git, save/restore_cache, persist_to/attach_workspace,
// parallelism with `circleci tests split`, store_test_results and store_artifacts — then the
// results through API v2 (tests, artifacts with safe content types).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess, jobOutput } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';
import { BUSYBOX_IMAGE, requireDocker } from '../harness/docker.js';

const hasDocker = requireDocker('job steps end to end');

const CONFIG = `version: 2.1
executors:
  bb:
    docker:
      - image: ${BUSYBOX_IMAGE}
jobs:
  build:
    executor: bb
    steps:
      - checkout
      - run: mkdir -p deps dist && echo "dep $(cat lock.txt)" > deps/lib.txt && echo built > dist/app.txt
      - save_cache:
          key: deps-{{ checksum "lock.txt" }}
          paths: [deps]
      - persist_to_workspace:
          root: .
          paths: [dist]
  test:
    executor: bb
    parallelism: 2
    steps:
      - checkout
      - restore_cache:
          keys:
            - deps-{{ checksum "lock.txt" }}
            - deps-
      - attach_workspace:
          at: ws
      - run:
          name: Split and test
          command: |
            test "$(cat deps/lib.txt)" = "dep v1" && test "$(cat ws/dist/app.txt)" = built
            ls tests/*.sh | circleci tests split > mine.txt
            echo "node $CIRCLE_NODE_INDEX of $CIRCLE_NODE_TOTAL runs: $(cat mine.txt | tr '\\n' ' ')"
            mkdir -p results out
            {
              echo '<testsuite name="t">'
              for t in $(cat mine.txt); do echo "<testcase classname=\\"suite\\" name=\\"$t\\" file=\\"$t\\" time=\\"0.5\\"/>"; done
              echo '</testsuite>'
            } > results/junit.xml
            echo "<script>alert(1)</script>" > out/report.html
            echo '{"node": '$CIRCLE_NODE_INDEX'}' > out/node.json
      - store_test_results:
          path: results
      - store_artifacts:
          path: out
          destination: reports
workflows:
  w:
    jobs:
      - build
      - test:
          requires: [build]
`;

interface Job {
  name: string;
  status: string;
  job_number?: number;
}

describe.skipIf(!hasDocker)('job steps in docker', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    server = await startTorusServer({
      localAgents: 2,
      env: { DOCKER_HOST: process.env.TORUS_TEST_DOCKER_HOST! },
    });
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('caches, workspaces, splitting, test results and artifacts work together', async () => {
    const files: Record<string, string> = { '.circleci/config.yml': CONFIG, 'lock.txt': 'v1' };
    for (const n of ['a', 'b', 'c', 'd']) files[`tests/${n}.sh`] = 'true\n';
    const repo = makeGitRepo(files);
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/steps/project', {
      name: 'app',
      vcs_url: repo,
    });
    const slug = p.body.slug;
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {});
    let last: Job[] = [];
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
      last = items;
      return items.length === 2 && items.every((j) => !['blocked', 'queued', 'running'].includes(j.status))
        ? items
        : false;
    }, 150_000).catch((err: unknown) => {
      throw new Error(`jobs did not finish: ${JSON.stringify(last)}\n${server.output().slice(-3000)}`, {
        cause: err,
      });
    });
    const test = jobs.find((j) => j.name === 'test')!;
    const outputOf = (n: number) => jobOutput(server, slug, n);
    const log = await outputOf(test.job_number!);
    expect(
      jobs.map((j) => j.status),
      `${log}\n${await outputOf(jobs.find((j) => j.name === 'build')!.job_number!)}`,
    ).toEqual(['success', 'success']);
    // the four test files split over two nodes, each node a different half
    const node0 = /node 0 of 2 runs: (.*)/.exec(log)?.[1]?.trim().split(' ');
    const node1 = /node 1 of 2 runs: (.*)/.exec(log)?.[1]?.trim().split(' ');
    expect([...(node0 ?? []), ...(node1 ?? [])].sort()).toEqual([
      'tests/a.sh',
      'tests/b.sh',
      'tests/c.sh',
      'tests/d.sh',
    ]);

    const tests = await api<{ items: Array<{ name: string; result: string; run_time: number }> }>(
      server.url,
      'GET',
      `/api/v2/project/${slug}/${test.job_number}/tests`,
    );
    expect(tests.body.items.map((t) => t.name).sort()).toEqual([
      'tests/a.sh',
      'tests/b.sh',
      'tests/c.sh',
      'tests/d.sh',
    ]);
    expect(tests.body.items.every((t) => t.result === 'success' && t.run_time === 0.5)).toBe(true);

    const arts = await api<{ items: Array<{ path: string; node_index: number; url: string }> }>(
      server.url,
      'GET',
      `/api/v2/project/${slug}/${test.job_number}/artifacts`,
    );
    expect(arts.body.items.map((a) => `${a.node_index}:${a.path}`).sort()).toEqual([
      '0:reports/node.json',
      '0:reports/report.html',
      '1:reports/node.json',
      '1:reports/report.html',
    ]);
    const html = arts.body.items.find((a) => a.path === 'reports/report.html')!;
    const res = await fetch(html.url, { headers: { 'circle-token': server.token } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toMatch(/sandbox/);
    expect(await res.text()).toContain('<script>');
    const json = arts.body.items.find((a) => a.path === 'reports/node.json' && a.node_index === 1)!;
    const jr = await fetch(json.url, { headers: { 'circle-token': server.token } });
    expect(jr.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await jr.json()).toEqual({ node: 1 });
  });
});
