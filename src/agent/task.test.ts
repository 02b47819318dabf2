// runTask against real git, real processes and real bubblewrap, reporting to an in-memory sink.
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirePart } from '../../test/harness/parts.js';
import { waitFor } from '../../test/harness/net.js';
import type { Step } from '../config/model.js';
import { detectSandbox, formatGoDuration, runTask, type RunTaskOptions } from './index.js';
import { createRepo, git, MemorySink, processesMatching, runStep, taskSpec } from './testing.js';
import type { TaskSpec } from '../scheduler/protocol.js';

const hasBwrap = requirePart('bwrap', 'agent sandbox tests');
const hasGit = requirePart('git', 'agent checkout tests');

let base: string;
let workRoot: string;
let repo: ReturnType<typeof createRepo>;

beforeAll(() => {
  base = mkdtempSync(path.join(tmpdir(), 'torus-agent-test-'));
  workRoot = path.join(base, 'work');
  if (hasGit) repo = createRepo(path.join(base, 'repo'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

function options(extra: Partial<RunTaskOptions> = {}): RunTaskOptions {
  return { workRoot, sandbox: hasBwrap ? 'bwrap' : 'none', signal: new AbortController().signal, ...extra };
}

async function run(spec: TaskSpec, extra: Partial<RunTaskOptions> = {}) {
  const sink = new MemorySink();
  const result = await runTask(spec, sink, options(extra));
  return { sink, result };
}

describe('runTask', () => {
  it.runIf(hasGit)('checks out the revision and runs steps in order with their output', async () => {
    const spec = taskSpec(
      [
        { type: 'checkout', name: 'Checkout code', when: 'on_success' },
        runStep('cat version.txt; git rev-parse HEAD; git rev-parse --abbrev-ref HEAD; pwd'),
        runStep('for i in 1 2 3 4 5; do echo line $i; done; echo to-stderr >&2', { name: 'Count' }),
        runStep('echo "shell=$0 greeting=$GREETING"; pwd', {
          shell: '/bin/sh -e',
          workingDirectory: 'sub',
          environment: { GREETING: 'hello' },
        }),
      ],
      { checkout: { repoUrl: repo.url, revision: repo.first, branch: 'main' } },
    );
    const { sink, result } = await run(spec);
    expect(result).toEqual({ status: 'success' });
    expect(sink.order).toEqual([
      'start 0',
      'end 0',
      'start 1',
      'end 1',
      'start 2',
      'end 2',
      'start 3',
      'end 3',
      'start 4',
      'end 4',
      'start 5',
      'end 5',
    ]);
    expect(sink.step(0).name).toBe('Spin up environment');
    expect(sink.step(0).out).toContain('Resource class: machine:medium');
    expect(sink.step(1).name).toBe('Preparing environment variables');
    expect(sink.step(1).out).toContain('  CIRCLE_JOB\n');
    expect(sink.step(1).out).not.toContain('true');
    const checkout = sink.step(2);
    expect(checkout).toMatchObject({
      name: 'Checkout code',
      type: 'checkout',
      status: 'success',
      exitCode: 0,
    });
    expect(checkout.out).toContain(`HEAD is now at ${repo.first.slice(0, 7)} first commit`);
    const [version, sha, branch, pwd] = sink.step(3).out.trim().split('\n');
    expect(version).toBe('v1');
    expect(sha).toBe(repo.first);
    expect(branch).toBe('main');
    expect(pwd).toMatch(new RegExp(`/${spec.taskId}/home/project$`));
    expect(sink.step(4)).toMatchObject({
      name: 'Count',
      out: 'line 1\nline 2\nline 3\nline 4\nline 5\n',
      err: 'to-stderr\n',
    });
    expect(sink.step(5).out).toMatch(/^shell=\S+ greeting=hello\n.*\/home\/project\/sub\n$/);
    // the task directory is gone afterwards
    expect(existsSync(path.join(workRoot, spec.taskId))).toBe(false);
  });

  it.runIf(hasGit)(
    'checks out a tag from a plain path into `path`, and refuses a non-empty directory',
    async () => {
      git(path.join(base, 'repo'), 'tag', 'v1.0', repo.first);
      const { sink, result } = await run(
        taskSpec(
          [
            { type: 'checkout', name: 'Checkout code', path: 'code', when: 'on_success' },
            runStep('cd code && cat version.txt && git describe --tags'),
            runStep('mkdir -p ../other && touch ../other/junk'),
            { type: 'checkout', name: 'Again', path: '../other', when: 'on_success' },
          ],
          { checkout: { repoUrl: path.join(base, 'repo'), revision: repo.first, tag: 'v1.0' } },
        ),
      );
      expect(sink.step(2).out).toContain('Checking out tag');
      expect(sink.step(3).out).toBe('v1\nv1.0\n');
      expect(result.status).toBe('failed');
      expect(sink.step(5).status).toBe('failed');
      expect(sink.step(5).err).toMatch(/you are trying to checkout to is not empty and not a git repository/);
    },
  );

  it('fails on a failing command, skips on_success steps and runs always/on_fail ones', async () => {
    const steps: Step[] = [
      runStep('echo first'),
      runStep('echo before; exit 3', { name: 'Breaks' }),
      runStep('echo skipped'),
      runStep('echo always ran', { when: 'always' }),
      runStep('echo on_fail ran', { when: 'on_fail' }),
    ];
    const { sink, result } = await run(taskSpec(steps));
    expect(result.status).toBe('failed');
    expect(sink.step(3)).toMatchObject({ status: 'failed', exitCode: 3 });
    expect(sink.step(3).out).toBe('before\n\nExited with code exit status 3\n');
    expect(sink.steps.has(4)).toBe(false);
    expect(sink.step(5)).toMatchObject({ status: 'success', out: 'always ran\n' });
    expect(sink.step(6)).toMatchObject({ status: 'success', out: 'on_fail ran\n' });
  });

  it('skips on_fail steps when nothing failed; pipefail is on by default', async () => {
    const { sink, result } = await run(
      taskSpec([
        runStep('echo ok'),
        runStep('echo never', { when: 'on_fail' }),
        runStep('false | cat; echo unreachable'),
      ]),
    );
    expect(result.status).toBe('failed');
    expect(sink.steps.has(3)).toBe(false);
    expect(sink.step(4)).toMatchObject({
      status: 'failed',
      exitCode: 1,
      out: '\nExited with code exit status 1\n',
    });
  });

  it('times out a step with no output and kills it', async () => {
    const started = Date.now();
    const { sink, result } = await run(
      taskSpec([
        runStep('echo start; sleep 41.337', { noOutputTimeoutMs: 300 }),
        runStep('echo after', { when: 'always' }),
      ]),
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.status).toBe('timedout');
    expect(sink.step(2)).toMatchObject({ status: 'timedout', exitCode: null });
    expect(sink.step(2).out).toBe(
      'start\n\nToo long with no output (exceeded 300ms): context deadline exceeded\n',
    );
    expect(sink.step(3).out).toBe('after\n');
    await waitFor(() => processesMatching('sleep 41.337').length === 0, 3_000);
  });

  it('runs a background step alongside later steps and stops it at the end of the job', async () => {
    const started = Date.now();
    const { sink, result } = await run(
      taskSpec([
        runStep('echo bg-start; sleep 0.2; echo ready > "$HOME/flag"; sleep 42.337', {
          background: true,
          name: 'Server',
        }),
        runStep('for i in $(seq 100); do [ -f "$HOME/flag" ] && break; sleep 0.05; done; cat "$HOME/flag"'),
      ]),
    );
    expect(result.status).toBe('success');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(sink.step(2)).toMatchObject({
      name: 'Server',
      background: true,
      status: 'success',
      exitCode: null,
    });
    expect(sink.step(2).out).toContain('bg-start\n');
    expect(sink.step(2).out).toContain('Background step stopped at the end of the job');
    expect(sink.step(3).out).toBe('ready\n');
    // the background step started before the foreground one ended
    expect(sink.order.indexOf('start 3')).toBeLessThan(sink.order.indexOf('end 2'));
    await waitFor(() => processesMatching('sleep 42.337').length === 0, 3_000);
  });

  it('a failing background step fails the job', async () => {
    const { sink, result } = await run(
      taskSpec([
        runStep('exit 4', { background: true }),
        runStep('sleep 0.5; echo later', { when: 'always' }),
      ]),
    );
    expect(result.status).toBe('failed');
    expect(sink.step(2)).toMatchObject({ status: 'failed', exitCode: 4 });
  });

  it.each([
    ['auto', '43.337'],
    ['none', '43.338'],
  ] as const)(
    'cancels on abort (sandbox %s): the step is canceled, nothing else runs, the processes are gone',
    async (sandbox, marker) => {
      const ac = new AbortController();
      const sink = new MemorySink();
      const spec = taskSpec([
        runStep(`echo started; (sleep ${marker}; echo child) & sleep ${marker}`),
        runStep('echo nope', { when: 'always' }),
      ]);
      const done = runTask(spec, sink, options({ signal: ac.signal, sandbox }));
      await sink.waitForOutput('started');
      await waitFor(() => processesMatching(`sleep ${marker}`).length === 2, 3_000);
      ac.abort();
      const result = await done;
      expect(result.status).toBe('canceled');
      expect(sink.step(2)).toMatchObject({ status: 'canceled', exitCode: null });
      expect(sink.steps.has(3)).toBe(false);
      await waitFor(() => processesMatching(`sleep ${marker}`).length === 0, 3_000);
      expect(existsSync(path.join(workRoot, spec.taskId))).toBe(false);
    },
  );

  it('reruns a failing step up to max_auto_reruns times', async () => {
    const flaky =
      'n=$(cat "$HOME/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$HOME/count"; echo "attempt $n"; [ $n -ge 3 ]';
    const { sink, result } = await run(
      taskSpec([runStep(flaky, { maxAutoReruns: 3, autoRerunDelayMs: 50 })]),
    );
    expect(result.status).toBe('success');
    expect(sink.step(2).status).toBe('success');
    expect(sink.step(2).out).toContain(
      'attempt 1\n\nExited with code exit status 1\n\nRerunning the step (attempt 2 of 4) after 50ms\n',
    );
    expect(sink.step(2).out).toMatch(/attempt 3\n$/);
    const never = await run(taskSpec([runStep('exit 9', { maxAutoReruns: 1 })]));
    expect(never.sink.step(2)).toMatchObject({ status: 'failed', exitCode: 9 });
  });

  it('carries exports through BASH_ENV from one step to the next', async () => {
    const { sink } = await run(
      taskSpec([
        runStep(`echo 'export FROM_EARLIER=yes' >> "$BASH_ENV"`),
        runStep('echo "got $FROM_EARLIER"'),
      ]),
    );
    expect(sink.step(3).out).toBe('got yes\n');
  });

  it('gives each task its own HOME and working directory', async () => {
    const cmd = 'echo "$HOME|$CIRCLE_WORKING_DIRECTORY|$(pwd)"; ls -A "$HOME"; touch "$HOME/mine"';
    const a = await run(taskSpec([runStep(cmd)], { taskId: 'home-a' }));
    const b = await run(taskSpec([runStep(cmd)], { taskId: 'home-b' }));
    const [lineA, lsA] = a.sink.step(2).out.split('\n');
    const [lineB, lsB] = b.sink.step(2).out.split('\n');
    const homeA = path.join(workRoot, 'home-a', 'home');
    expect(lineA).toBe(`${homeA}|${homeA}/project|${homeA}/project`);
    expect(lineB).toBe(
      `${path.join(workRoot, 'home-b', 'home')}|${path.join(workRoot, 'home-b', 'home')}/project|${path.join(workRoot, 'home-b', 'home')}/project`,
    );
    expect(lsA).toBe('project');
    expect(lsB).toBe('project');
  });

  it('fails unsupported steps naming them, and refuses docker executors', async () => {
    const { sink, result } = await run(
      taskSpec([
        // a built-in step type no handler knows (setup_remote_docker has one now: steps/remote-docker.ts)
        { type: 'unknown_builtin_step', name: 'Unknown', when: 'on_success', args: {} },
      ]),
    );
    expect(result.status).toBe('failed');
    expect(sink.step(2)).toMatchObject({ type: 'unknown_builtin_step', status: 'failed', exitCode: null });
    expect(sink.step(2).out).toContain(
      'The `unknown_builtin_step` step is not supported by this Torus release yet',
    );
    const docker = await run(taskSpec([runStep('true')], { executor: { type: 'docker', images: [] } }));
    expect(docker.result.status).toBe('infrastructure_fail');
    expect(docker.result.message).toMatch(/this agent has no Docker executor/);
  });

  it('masks secrets in output', async () => {
    const { sink } = await run(
      taskSpec([runStep('echo "token is $TOKEN"; printf "split-%s" "$TOKEN" >&2')], {
        environment: { TOKEN: 'hunter2-secret' },
        secrets: ['hunter2-secret', 'abc'],
      }),
    );
    expect(sink.step(2).out).toBe('token is ********\n');
    expect(sink.step(2).err).toBe('split-********');
  });

  it('runs deploy steps like run steps', async () => {
    const { sink, result } = await run(
      taskSpec([
        { type: 'deploy', name: 'Ship', when: 'on_success', args: { command: 'echo shipped; exit 5' } },
      ]),
    );
    expect(result.status).toBe('failed');
    expect(sink.step(2)).toMatchObject({ type: 'deploy', status: 'failed', exitCode: 5 });
    expect(sink.step(2).out).toContain('shipped\n');
  });

  describe.runIf(hasBwrap)('sandbox', () => {
    it('hides the host filesystem and the agent environment, keeps system dirs read-only', async () => {
      const secretDir = path.join(base, 'server-data-secret');
      mkdirSync(secretDir, { recursive: true });
      writeFileSync(path.join(secretDir, 'keyring'), 'KEYRING');
      process.env.TORUS_AGENT_TEST_MARKER = 'agent-env-marker';
      try {
        const { sink, result } = await run(
          taskSpec([
            runStep(`ls ${secretDir}`, { name: 'peek' }),
            runStep('env', { name: 'env', when: 'always' }),
            runStep('touch /usr/torus-sandbox-probe', { name: 'write usr', when: 'always' }),
            runStep('echo hi > /tmp/x && cat /tmp/x && touch "$HOME/ok" && echo $$', {
              name: 'writable',
              when: 'always',
            }),
          ]),
        );
        expect(result.status).toBe('failed');
        expect(sink.step(2).status).toBe('failed');
        expect(sink.step(2).err).toContain('No such file or directory');
        expect(sink.step(3).status).toBe('success');
        expect(sink.step(3).out).toContain('CIRCLE_JOB=build');
        expect(sink.step(3).out).not.toContain('agent-env-marker');
        expect(sink.step(3).out).not.toContain('TORUS_AGENT_TEST_MARKER');
        expect(sink.step(4).status).toBe('failed');
        expect(sink.step(4).err).toMatch(/Read-only file system/);
        expect(sink.step(5).status).toBe('success');
        expect(sink.step(5).out).toMatch(/^hi\n\d{1,2}\n$/); // own pid namespace: a small pid
      } finally {
        delete process.env.TORUS_AGENT_TEST_MARKER;
      }
    });

    it('keeps environment values off every command line (ps)', async () => {
      const ac = new AbortController();
      const sink = new MemorySink();
      const done = runTask(
        taskSpec([runStep('echo "$VALUE" | wc -c; sleep 46.337')], {
          environment: { VALUE: 'topsecret-in-env-xyz' },
        }),
        sink,
        options({ signal: ac.signal }),
      );
      await sink.waitForOutput('21');
      await waitFor(() => processesMatching('sleep 46.337').length > 0, 3_000);
      expect(processesMatching('topsecret-in-env-xyz')).toEqual([]);
      ac.abort();
      expect((await done).status).toBe('canceled');
    });

    it('maps absolute working directories outside the task into it', async () => {
      const { sink, result } = await run(
        taskSpec([runStep('pwd; touch made-here; ls')], { workingDirectory: '/home/circleci/project' }),
      );
      expect(result.status).toBe('success');
      expect(sink.step(2).out).toBe('/home/circleci/project\nmade-here\n');
      expect(existsSync('/home/circleci/project/made-here')).toBe(false);
    });
  });

  it('without a sandbox the job still gets an environment built from scratch', async () => {
    expect(detectSandbox('none').warning).toMatch(/WITHOUT a sandbox/);
    process.env.TORUS_AGENT_TEST_MARKER = 'agent-env-marker';
    try {
      const { sink } = await run(taskSpec([runStep('env')]), { sandbox: 'none' });
      expect(sink.step(0).out).toContain('Sandbox: none');
      expect(sink.step(2).out).toContain('CIRCLE_JOB=build');
      expect(sink.step(2).out).not.toContain('agent-env-marker');
    } finally {
      delete process.env.TORUS_AGENT_TEST_MARKER;
    }
  });
});

describe('formatGoDuration', () => {
  it('prints durations like Go', () => {
    expect(formatGoDuration(600_000)).toBe('10m0s');
    expect(formatGoDuration(300)).toBe('300ms');
    expect(formatGoDuration(5_000)).toBe('5s');
    expect(formatGoDuration(4_500_000)).toBe('1h15m0s');
    expect(formatGoDuration(1_500)).toBe('1.5s');
  });
});
