// The Docker executor through runTask, against the harness's dockerd and the local busybox image:
// steps in the primary container, a service container on localhost, resource limits (clamped to the
// host), an OOM kill, a missing image, cancel — and no container left behind after any of them.
import { afterEach, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import type { DockerImage } from '../../config/model.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import { runTask } from '../task.js';
import { MemorySink, runStep, taskSpec } from '../testing.js';
import type { Step } from '../../config/model.js';
import { DockerExecutor, resourceLimits, TASK_LABEL, type DockerExecutorOptions } from './index.js';

const hasDocker = requireDocker('Docker executor tests');
const docker = hasDocker ? new Docker() : (undefined as unknown as Docker);
const GiB = 2 ** 30;

function dockerSpec(steps: Step[], images: Partial<DockerImage>[], extra: Partial<TaskSpec> = {}): TaskSpec {
  return taskSpec(steps, {
    executor: {
      type: 'docker',
      images: images.map((i) => ({ image: BUSYBOX_IMAGE, environment: {}, ...i })),
    },
    resourceClass: 'small',
    ...extra,
  });
}

/** this file's containers (test files run in parallel on one engine; taskSpec's ids hold the worker's pid) */
async function ours(): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({
    all: true,
    filters: { label: [TASK_LABEL], name: [`torus-task-${process.pid}-`] },
  });
}

async function run(
  spec: TaskSpec,
  options: DockerExecutorOptions = {},
  signal = new AbortController().signal,
) {
  const sink = new MemorySink();
  const result = await runTask(spec, sink, {
    workRoot: '/nonexistent',
    sandbox: 'none',
    signal,
    docker: options,
  });
  return { sink, result };
}

describe('resourceLimits', () => {
  it("follows CircleCI's Docker table and clamps to the host, saying so", () => {
    const big = { cpus: 64, memoryBytes: 256 * GiB };
    expect(resourceLimits('medium+', big)).toMatchObject({ cpus: 3, memoryBytes: 6 * GiB });
    expect(resourceLimits('2xlarge+', big)).toMatchObject({ cpus: 20, memoryBytes: 40 * GiB });
    expect(resourceLimits('large.gen2', big)).toMatchObject({ cpus: 4, memoryBytes: 8 * GiB });
    const small = resourceLimits('xlarge', { cpus: 2, memoryBytes: 3 * GiB });
    expect(small).toMatchObject({ cpus: 2, memoryBytes: 3 * GiB });
    expect(small.notes.join('\n')).toContain(
      'This host has 2 CPUs and 3 GB of memory: the job is limited to 2 vCPUs and 3 GB instead',
    );
    expect(resourceLimits('acme/runner', big).notes[0]).toMatch(/not a Docker resource class: using medium/);
  });
});

describe.runIf(hasDocker)('Docker executor', () => {
  afterEach(async () => {
    expect(await ours()).toEqual([]);
  });

  it('runs steps in the primary container as the image user, with job and image environment', async () => {
    const { sink, result } = await run(
      dockerSpec(
        [
          runStep('echo "$(id -un)|$HOME|$(pwd)|$CIRCLE_JOB|$IMAGE_VAR|$STEP_VAR"', {
            environment: { STEP_VAR: 'step' },
          }),
          runStep('tr "\\0" " " < /proc/$$/cmdline; echo; exit 4', { name: 'fails' }),
        ],
        [{ user: 'circleci', environment: { IMAGE_VAR: 'img' } }],
      ),
    );
    expect(result.status).toBe('failed');
    expect(sink.step(0).out).toContain(`Using local image ${BUSYBOX_IMAGE}`);
    expect(sink.step(0).out).toContain('Resource class: small (1 vCPU, 2 GB RAM)');
    expect(sink.step(0).out).toContain('Working directory: /home/circleci/project');
    expect(sink.step(2)).toMatchObject({
      status: 'success',
      out: 'circleci|/home/circleci|/home/circleci/project|build|img|step\n',
    });
    // busybox has no bash: CircleCI's default shell falls back to sh
    expect(sink.step(3)).toMatchObject({ status: 'failed', exitCode: 4 });
    expect(sink.step(3).out).toMatch(/^\/bin\/sh -eo pipefail \/tmp\/\.torus\/steps\/3\.sh \n/);
  });

  it("gives files written into the container to the image's user", async () => {
    const env = await new DockerExecutor({ docker }).prepare(
      dockerSpec([], [{ user: 'circleci' }]),
      () => undefined,
      new AbortController().signal,
    );
    try {
      const pack = tar.pack();
      pack.entry({ name: 'dir/file.txt' }, 'restored\n');
      pack.finalize();
      await env.writeTar(`${env.homeDirectory}/restored`, pack);
      let out = '';
      const h = env.exec({
        argv: ['/bin/sh', '-c', 'touch restored/dir/new && stat -c %U restored/dir restored/dir/file.txt'],
        cwd: env.homeDirectory,
        env: env.jobEnvironment,
        onOutput: (_s, d) => {
          out += d;
        },
      });
      expect(await h.done).toEqual({ kind: 'exited', exitCode: 0 });
      expect(out).toBe('circleci\ncircleci\n');
    } finally {
      await env.dispose();
    }
  });

  it('reaches a service container on localhost', async () => {
    const { sink, result } = await run(
      dockerSpec(
        [
          runStep(
            'for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/hostname 2>/dev/null && exit 0; sleep 0.1; done; exit 1',
          ),
        ],
        [
          {},
          {
            name: 'web',
            entrypoint: ['/bin/sh', '-c'],
            command: [
              'mkdir -p /www && echo served-by-service > /www/hostname && exec httpd -f -p 8080 -h /www',
            ],
          },
        ],
      ),
    );
    expect(result.status).toBe('success');
    expect(sink.step(0).out).toContain(`Starting service container ${BUSYBOX_IMAGE} as web`);
    expect(sink.step(2).out).toBe('served-by-service\n');
  });

  it('applies the resource class limits, clamped to the host, on the primary container', async () => {
    const executor = new DockerExecutor({ docker });
    const printed: string[] = [];
    const env = await executor.prepare(
      dockerSpec([], [{}], { resourceClass: 'large' }),
      (t) => printed.push(t),
      new AbortController().signal,
    );
    try {
      const info = (await docker.info()) as { NCPU: number; MemTotal: number };
      const [c] = await ours();
      const inspect = await docker.getContainer(c?.Id ?? '').inspect();
      const cpus = Math.min(4, info.NCPU);
      const mem = Math.min(8 * GiB, info.MemTotal);
      expect(inspect.HostConfig.NanoCpus).toBe(cpus * 1e9);
      expect(inspect.HostConfig.Memory).toBe(mem);
      if (info.NCPU < 4)
        expect(printed.join('')).toMatch(/This host has \d+ CPUs? and .*: the job is limited to/);
    } finally {
      await env.dispose();
    }
  });

  it('says so when a step is killed for running out of memory', async () => {
    const { sink, result } = await run(
      dockerSpec([runStep('echo start; dd if=/dev/zero of=/dev/null bs=256M count=1')], [{}]),
      { docker, hostResources: { cpus: 1, memoryBytes: 64 * 2 ** 20 } },
    );
    expect(sink.step(0).out).toContain('the job is limited to 1 vCPU and 0.06 GB instead');
    expect(result.status).toBe('failed');
    expect(sink.step(2)).toMatchObject({ status: 'failed', exitCode: 137 });
    expect(sink.step(2).err).toContain(
      'The step was killed because the container ran out of memory (limit 0.06 GB)',
    );
  });

  it('fails the job naming the image and registry when the image cannot be pulled', async () => {
    const { sink, result } = await run(
      dockerSpec([runStep('true')], [{ image: 'torus-test/no-such-image:1' }]),
    );
    expect(['failed', 'infrastructure_fail']).toContain(result.status);
    expect(result.message).toMatch(
      /^Failed to pull image torus-test\/no-such-image:1 from registry docker\.io: /,
    );
    expect(sink.step(0)).toMatchObject({ status: 'failed' });
    expect(sink.step(0).err).toContain('torus-test/no-such-image:1');
    expect(sink.steps.has(2)).toBe(false);
  });

  it('fails the job naming a service image that cannot start, and removes the primary', async () => {
    const { sink, result } = await run(dockerSpec([runStep('true')], [{}, { name: 'db' }]));
    expect(result).toEqual({
      status: 'failed',
      message: `Could not start container ${BUSYBOX_IMAGE}: No command specified`,
    });
    expect(sink.step(0).err).toContain('No command specified');
  });

  it('cancels a running step and removes the containers', async () => {
    const ac = new AbortController();
    const sink = new MemorySink();
    const done = runTask(
      dockerSpec(
        [runStep('echo started; sleep 54.337'), runStep('echo nope', { when: 'always' })],
        [{}, { command: ['sleep', '1000'] }],
      ),
      sink,
      { workRoot: '/nonexistent', sandbox: 'none', signal: ac.signal, docker: {} },
    );
    await sink.waitForOutput('started');
    ac.abort();
    expect((await done).status).toBe('canceled');
    expect(sink.step(2)).toMatchObject({ status: 'canceled' });
    expect(sink.steps.has(3)).toBe(false);
  });

  it('runs a background step and stops it at the end of the job', async () => {
    const { sink, result } = await run(
      dockerSpec(
        [
          runStep('echo ready > /tmp/flag; echo bg; sleep 55.337', { background: true }),
          runStep('for i in $(seq 50); do [ -f /tmp/flag ] && break; sleep 0.1; done; cat /tmp/flag'),
        ],
        [{}],
      ),
    );
    expect(result.status).toBe('success');
    expect(sink.step(2).out).toContain('Background step stopped at the end of the job');
    expect(sink.step(3).out).toBe('ready\n');
  });
});
