// "Rerun failed tests" through a real server and agents: a workflow whose test job (two parallel
// runs, `circleci tests run`) fails one of three test files is rerun with failed_tests_only, and the
// rerun's `circleci tests run` hands only that file to the command (split over the two runs); a plain
// rerun from failed still runs every file; a workflow whose failed job stored no failed test is
// refused with CircleCI's message.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess, jobOutput } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

// tests/b.sh fails in the first run only: a rerun has its own workflow id but keeps the workspace id
const CONFIG = `version: 2.1
jobs:
  test:
    machine: true
    parallelism: 2
    steps:
      - checkout
      - run:
          name: Run tests
          command: |
            mkdir -p results
            circleci tests glob "tests/*.sh" | circleci tests run --command=">ran.txt xargs echo" --verbose --split-by=timings
            echo "ran on node $CIRCLE_NODE_INDEX: $(cat ran.txt 2>/dev/null)"
            status=0
            echo '<testsuite name="t">' > results/junit.xml
            for t in $(cat ran.txt 2>/dev/null); do
              if sh "$t"; then
                echo "<testcase classname=\\"suite\\" name=\\"$t\\" file=\\"$t\\" time=\\"0.1\\"/>" >> results/junit.xml
              else
                echo "<testcase classname=\\"suite\\" name=\\"$t\\" file=\\"$t\\" time=\\"0.1\\"><failure>failed</failure></testcase>" >> results/junit.xml
                status=1
              fi
            done
            echo '</testsuite>' >> results/junit.xml
            exit $status
      - store_test_results:
          path: results
  broken:
    machine: true
    steps:
      - run: exit 1
workflows:
  tests:
    jobs: [test]
  other:
    jobs: [broken]
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
  job_number?: number;
}
interface TestItem {
  name: string;
  file?: string;
  result: string;
}

const FINAL = ['success', 'failed', 'error', 'canceled'];

describe('rerun failed tests', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    server = await startTorusServer({ localAgents: 2 });
  }, 180_000);
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('reruns only the test files that failed, split over the parallel runs', async () => {
    const repo = makeGitRepo({
      '.circleci/config.yml': CONFIG,
      'tests/a.sh': 'true\n',
      'tests/b.sh': 'test "$CIRCLE_WORKFLOW_ID" != "$CIRCLE_WORKFLOW_WORKSPACE_ID"\n',
      'tests/c.sh': 'true\n',
    });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/rerun/project', {
      name: 'app',
      vcs_url: repo,
    });
    const slug = p.body.slug;
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {});

    const workflowsOf = async () =>
      (await api<{ items: Workflow[] }>(server.url, 'GET', `/api/v2/pipeline/${trig.body.id}/workflow`)).body
        .items;
    const finished = async (id: string): Promise<Job[]> => {
      let last: unknown;
      return waitFor(async () => {
        const wf = (await api<Workflow>(server.url, 'GET', `/api/v2/workflow/${id}`)).body;
        const jobs = (await api<{ items: Job[] }>(server.url, 'GET', `/api/v2/workflow/${id}/job`)).body
          .items;
        last = { wf, jobs };
        return FINAL.includes(wf.status) ? jobs : false;
      }, 150_000).catch((err: unknown) => {
        throw new Error(
          `workflow ${id} did not finish: ${JSON.stringify(last)}\n${server.output().slice(-3000)}`,
          {
            cause: err,
          },
        );
      });
    };
    const outputOf = (n: number) => jobOutput(server, slug, n);
    const testsOf = async (n: number) =>
      (await api<{ items: TestItem[] }>(server.url, 'GET', `/api/v2/project/${slug}/${n}/tests`)).body.items
        .map((t) => `${t.file} ${t.result}`)
        .sort();

    const wfs = await waitFor(async () => {
      const items = await workflowsOf();
      return items.length === 2 ? items : false;
    }, 60_000);
    const tests = wfs.find((w) => w.name === 'tests')!;
    const other = wfs.find((w) => w.name === 'other')!;
    const [original] = await finished(tests.id);
    await finished(other.id);
    expect(original!.status, await outputOf(original!.job_number!)).toBe('failed');
    expect(await testsOf(original!.job_number!)).toEqual([
      'tests/a.sh success',
      'tests/b.sh failure',
      'tests/c.sh success',
    ]);

    // nothing to rerun: the failed job stored no failed test (CircleCI's message), or jobs named as well
    const none = await api<{ message: string }>(server.url, 'POST', `/api/v2/workflow/${other.id}/rerun`, {
      failed_tests_only: true,
    });
    expect(none.status).toBe(400);
    expect(none.body.message).toMatch(/can not rerun failed tests: no failed tests could be found/);
    const withJobs = await api<{ message: string }>(
      server.url,
      'POST',
      `/api/v2/workflow/${tests.id}/rerun`,
      {
        failed_tests_only: true,
        jobs: [original!.id],
      },
    );
    expect(withJobs.status).toBe(400);

    const rerun = await api<{ workflow_id: string }>(
      server.url,
      'POST',
      `/api/v2/workflow/${tests.id}/rerun`,
      {
        failed_tests_only: true,
      },
    );
    expect(rerun.status).toBe(202);
    const [again] = await finished(rerun.body.workflow_id);
    const log = await outputOf(again!.job_number!);
    expect(again!.status, log).toBe('success');
    expect(log).toContain('Rerun failed tests: 1 of the 3 test cases of the previous run of test failed');
    expect(log).toContain(`received failed tests from workflow ${tests.id}`);
    expect(log).toContain('1 test(s) failed out of 3 total test(s). Rerunning 1 test file(s)');
    // one run got b, the other nothing (and did not run the command)
    const ran = [...log.matchAll(/ran on node (\d): (.*)/g)].map((m) => `${m[1]}:${m[2]!.trim()}`).sort();
    expect(ran).toEqual(['0:tests/b.sh', '1:']);
    expect(log).toContain('No tests to run on node 1 of 2; not running the command.');
    expect(await testsOf(again!.job_number!)).toEqual(['tests/b.sh success']);

    // a plain rerun from failed runs every test again
    const full = await api<{ workflow_id: string }>(
      server.url,
      'POST',
      `/api/v2/workflow/${tests.id}/rerun`,
      {
        from_failed: true,
      },
    );
    expect(full.status).toBe(202);
    const [plain] = await finished(full.body.workflow_id);
    const plainLog = await outputOf(plain!.job_number!);
    expect(plain!.status, plainLog).toBe('success');
    expect(plainLog).not.toContain('received failed tests');
    expect(await testsOf(plain!.job_number!)).toEqual([
      'tests/a.sh success',
      'tests/b.sh success',
      'tests/c.sh success',
    ]);
  }, 300_000);
});
