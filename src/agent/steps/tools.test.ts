// The in-job tools (`circleci tests split` with staged timings, `circleci step halt`) and the
// Docker checkout on real environments: the host executor, and a busybox container (no git, no
// Node, no bash) on the test harness's dockerd.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { requirePart } from '../../../test/harness/parts.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import type { Environment, Executor } from '../executor.js';
import { DockerExecutor, HostExecutor } from '../executors/index.js';
import type { TestCase } from '../junit.js';
import { createRepo, taskSpec } from '../testing.js';
import { execCollect } from './artifacts.js';
import { checkoutInto } from './checkout.js';
import { recordingBlobClient } from './testing-blobs.js';
import { haltRequested, prepareJobTools } from './tools.js';

const hasBwrap = requirePart('bwrap', 'job tools in the host sandbox');
const hasDocker = requireDocker('job tools and checkout in a busybox container');

let base: string;
beforeAll(() => {
  base = mkdtempSync(path.join(tmpdir(), 'torus-tools-'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const kinds: Array<{ name: string; executor: () => Executor; spec: () => TaskSpec }> = [
  {
    name: 'host',
    executor: () =>
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: hasBwrap ? 'bwrap' : 'none' }),
    spec: () => taskSpec([]),
  },
  {
    name: 'docker',
    executor: () => new DockerExecutor({ docker: new Docker() }),
    spec: () =>
      taskSpec([], {
        executor: { type: 'docker', images: [{ image: BUSYBOX_IMAGE, environment: {} }] },
        resourceClass: 'small',
      }),
  },
];

function timing(file: string, seconds: number): TestCase {
  return {
    name: `test ${file}`,
    classname: file.replace(/\W/g, '.'),
    file,
    result: 'success',
    runTime: seconds,
  };
}

describe.each(kinds.filter((k) => k.name === 'host' || hasDocker))('$name environment', (kind) => {
  let env: Environment;
  let spec: TaskSpec;
  let jobEnv: Record<string, string>;
  let printed = '';

  beforeAll(async () => {
    spec = kind.spec();
    env = await kind.executor().prepare(spec, () => undefined, new AbortController().signal);
    const blobs = recordingBlobClient();
    blobs.timings = {
      source: 'branch',
      tests: [
        timing('test/a.js', 10),
        timing('test/b.js', 1),
        timing('test/c.js', 1),
        timing('test/d.js', 8),
      ],
    };
    const additions = await prepareJobTools(env, spec, blobs, (t) => (printed += t));
    jobEnv = { ...env.jobEnvironment, ...additions };
  }, 60_000);
  afterAll(async () => {
    await env?.dispose();
  });

  const sh = (script: string) => execCollect(env, jobEnv, ['/bin/sh', '-c', script]);

  it('puts circleci and circleci-agent on the PATH and says where the timings came from', async () => {
    const r = await sh('command -v circleci && command -v circleci-agent && ls /bin >/dev/null && echo ok');
    expect(r.exitCode).toBe(0);
    expect(r.out).toContain('/.circleci-torus/bin/circleci\n');
    expect(r.out).toContain('/.circleci-torus/bin/circleci-agent\n');
    expect(r.out).toContain('ok\n');
    expect(printed).toContain('Test timings: 4 test cases from the last run of build on this branch');
  });

  it('splits tests by the staged timings', async () => {
    const list = "printf 'test/a.js\\ntest/b.js\\ntest/c.js\\ntest/d.js\\n'";
    const node0 = await sh(`${list} | circleci tests split --split-by=timings --total=2 --index=0`);
    const node1 = await sh(`${list} | circleci-agent tests split --split-by=timings --total=2 --index=1`);
    expect(node0.exitCode).toBe(0);
    expect(node0.out.trim().split('\n')).toEqual(['test/a.js']);
    expect(node1.out.trim().split('\n')).toEqual(['test/b.js', 'test/c.js', 'test/d.js']);
    expect(`${node0.err}${node1.err}`).not.toContain('No timing found');
  });

  it('sees `circleci step halt` after the step that ran it', async () => {
    expect(await haltRequested(env, jobEnv)).toBe(false);
    const r = await sh('circleci step halt');
    expect(r.exitCode).toBe(0);
    expect(await haltRequested(env, jobEnv)).toBe(true);
  });
});

describe.runIf(hasDocker)('checkout into a container without git', () => {
  let env: Environment;
  let spec: TaskSpec;
  let repo: ReturnType<typeof createRepo>;

  beforeAll(async () => {
    repo = createRepo(path.join(base, 'repo'));
    spec = taskSpec([], {
      executor: { type: 'docker', images: [{ image: BUSYBOX_IMAGE, environment: {} }] },
      resourceClass: 'small',
      checkout: { repoUrl: repo.url, revision: repo.first, branch: 'main' },
    });
    env = await new DockerExecutor({ docker: new Docker() }).prepare(
      spec,
      () => undefined,
      new AbortController().signal,
    );
  }, 60_000);
  afterAll(async () => {
    await env?.dispose();
  });

  it('clones on the agent and copies the tree, .git included, at the revision', async () => {
    let out = '';
    const workRoot = path.join(base, 'agent-work');
    const result = await checkoutInto(env, spec, env.workingDirectory, (t) => (out += t), { workRoot });
    expect(result).toEqual({ status: 'success', exitCode: 0 });
    expect(out).toContain('Cloning git repository');
    expect(out).toContain('HEAD is now at');
    const r = await execCollect(env, env.jobEnvironment, [
      '/bin/sh',
      '-c',
      'cat version.txt; test -f .git/HEAD && echo has-git; command -v git || echo no-git; stat -c %u version.txt',
    ]);
    expect(r.out).toBe('v1\nhas-git\nno-git\n0\n');
    // nothing of the temporary clone is left on the agent
    expect(readdirSync(workRoot)).toEqual([]);
  });

  it('refuses a directory that holds other files, as CircleCI does', async () => {
    await env.writeFile('/tmp/occupied/file.txt', 'x');
    let out = '';
    const result = await checkoutInto(env, spec, '/tmp/occupied', (t) => (out += t), {
      workRoot: path.join(base, 'agent-work'),
    });
    expect(result.status).toBe('failed');
    expect(out).toContain(
      'Directory (/tmp/occupied) you are trying to checkout to is not empty and not a git repository',
    );
  });
});
