// setup_remote_docker through runTask on the harness's engines: a docker job whose image has a Docker
// CLI sets up remote Docker, then runs, builds and creates through DOCKER_HOST as a user who is not
// root; a bind mount is refused; and after the task nothing carrying its label is left in the engine.
// Without the operator's opt-in the step fails saying how to enable it; on a machine job it is a no-op.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream } from 'node:fs';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { dockerAt } from '../../../test/harness/podman.js';
import { REQUIRE_ALL } from '../../../test/harness/parts.js';
import type { Step } from '../../config/model.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import { runTask } from '../task.js';
import { MemorySink, runStep, taskSpec } from '../testing.js';
import { TASK_LABEL, type DockerExecutorOptions } from '../executors/index.js';

/** a `docker` on PATH that runs in any image: a static ELF (no program interpreter) */
function findStaticDockerCli(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const file = path.join(dir, 'docker');
    let fd: number | undefined;
    try {
      fd = openSync(file, 'r');
      const head = Buffer.alloc(64);
      readSync(fd, head, 0, 64, 0);
      if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) continue; // a 64-bit ELF
      const phoff = Number(head.readBigUInt64LE(0x20));
      const size = head.readUInt16LE(0x36);
      const count = head.readUInt16LE(0x38);
      const table = Buffer.alloc(size * count);
      readSync(fd, table, 0, table.length, phoff);
      const PT_INTERP = 3;
      if (![...Array(count).keys()].some((i) => table.readUInt32LE(i * size) === PT_INTERP)) return file;
    } catch {
      // not there or not readable: the next PATH entry
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return undefined;
}

/** the CLI to copy into the job's image; Debian's docker.io CLI is dynamically linked and would not run in busybox */
function staticDockerCli(what: string): string | undefined {
  const found = findStaticDockerCli();
  if (found) return found;
  const line = `SKIP ${what}: needs a statically linked docker CLI on PATH (copied into the job's busybox image), which is not here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return undefined;
}

const hasDocker = requireDocker('setup_remote_docker tests');
const cli = hasDocker ? staticDockerCli('setup_remote_docker tests') : undefined;
const engines = [
  { name: 'dockerd', host: process.env.TORUS_TEST_DOCKER_HOST },
  { name: 'podman', host: process.env.TORUS_TEST_PODMAN_HOST },
].filter((e): e is { name: string; host: string } => Boolean(e.host));
const CLI_IMAGE = `torus-rd-test/docker-cli:${process.pid}`;

const setupStep = (args: Record<string, unknown> = {}): Step => ({
  type: 'setup_remote_docker',
  name: 'Setup a remote Docker engine',
  when: 'on_success',
  args,
});

async function follow(docker: Docker, stream: NodeJS.ReadableStream): Promise<void> {
  const events = await new Promise<{ error?: string }[]>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, ev: { error?: string }[]) =>
      err ? reject(err) : resolve(ev),
    ),
  );
  const error = events.find((e) => e.error)?.error;
  if (error) throw new Error(error);
}

/** the busybox test image plus a static Docker CLI: what a job image with `docker` looks like */
async function buildCliImage(docker: Docker, cliPath: string): Promise<void> {
  const pack = tar.pack();
  const body = new PassThrough();
  pack.pipe(body);
  // the engine reads the context while it is written: 40 MB do not fit in the stream's buffers
  const building = docker.buildImage(body as unknown as Readable, { t: CLI_IMAGE });
  pack.entry({ name: 'Dockerfile' }, `FROM ${BUSYBOX_IMAGE}\nCOPY docker /bin/docker\n`);
  const entry = pack.entry({ name: 'docker', mode: 0o755, size: statSync(cliPath).size });
  await pipeline(createReadStream(cliPath), entry);
  pack.finalize();
  await follow(docker, await building);
}

describe.runIf(hasDocker && cli).each(engines)('setup_remote_docker on $name', ({ host }) => {
  const docker = dockerAt(host);
  const options: DockerExecutorOptions = { docker, remoteDocker: {} };
  const work = mkdtempSync(path.join(tmpdir(), 'torus-rd-job-'));

  beforeAll(async () => {
    await buildCliImage(docker, cli!);
  });
  afterAll(async () => {
    await docker.getImage(CLI_IMAGE).remove({ force: true });
    rmSync(work, { recursive: true, force: true });
  });

  function spec(steps: Step[], extra: Partial<TaskSpec> = {}): TaskSpec {
    return taskSpec(steps, {
      executor: { type: 'docker', images: [{ image: CLI_IMAGE, user: 'circleci', environment: {} }] },
      resourceClass: 'small',
      ...extra,
    });
  }

  async function run(s: TaskSpec, opts: DockerExecutorOptions = options) {
    const sink = new MemorySink();
    const result = await runTask(s, sink, {
      workRoot: work,
      sandbox: 'none',
      signal: new AbortController().signal,
      docker: opts,
    });
    return { sink, result };
  }

  it('runs, builds and creates through DOCKER_HOST, refuses bind mounts, and leaves nothing behind', async () => {
    const s = spec([
      runStep('echo "before: ${DOCKER_HOST:-unset}"', { name: 'before' }),
      setupStep({ version: '20.10.24', docker_layer_caching: true }),
      runStep(
        [
          'echo "after: $DOCKER_HOST as $(id -un)"',
          'docker run --network none ' + BUSYBOX_IMAGE + ' echo hello-from-remote',
          'docker volume create job-vol-$$ >/dev/null',
          'mkdir -p ctx && printf "FROM ' +
            BUSYBOX_IMAGE +
            '\\nCOPY f /f\\nCMD [\\"cat\\",\\"/f\\"]\\n" > ctx/Dockerfile',
          'echo built-by-the-job > ctx/f',
          'DOCKER_BUILDKIT=0 docker build -q -t torus-rd-job/app:$$ ctx >/dev/null 2>&1',
          'docker run --rm --network none -v job-vol-$$:/v torus-rd-job/app:$$',
          // still running when the task ends: dispose must remove it
          'docker run -d --network none ' + BUSYBOX_IMAGE + ' sleep 300 >/dev/null',
          'echo "containers seen: $(docker ps -aq | wc -l)"',
        ].join('\n'),
        { name: 'use remote docker' },
      ),
      runStep(
        'if docker run --network none -v /etc:/host-etc ' +
          BUSYBOX_IMAGE +
          ' true 2>err; then exit 1; fi; cat err',
        { name: 'bind mount' },
      ),
    ]);
    const { sink, result } = await run(s);
    expect(sink.step(2).out).toBe('before: unset\n');
    expect(sink.step(3)).toMatchObject({ status: 'success' });
    expect(sink.step(3).out).toMatch(/Remote Docker: the agent's (Docker engine|podman) \S+ \(API [\d.]+\)/);
    expect(sink.step(3).out).toContain('version "20.10.24" requested: Torus uses the agent');
    expect(sink.step(3).out).toContain(
      "Docker layer caching: layers are shared with the agent's engine cache",
    );
    expect(sink.step(3).out).not.toContain('no `docker` command');
    expect(sink.step(4).out + sink.step(4).err).toContain(
      'after: unix:///run/torus-docker/docker.sock as circleci',
    );
    expect(sink.step(4).out).toContain('hello-from-remote\n');
    expect(sink.step(4).out).toContain('built-by-the-job\n');
    // the job sees its two containers, not its own primary container
    expect(sink.step(4).out).toContain('containers seen: 2\n');
    expect(sink.step(5).out).toContain(
      "Torus's remote Docker does not allow bind mounts of host paths (/etc)",
    );
    expect(result.status).toBe('success');

    const label = [`${TASK_LABEL}=${s.taskId}`];
    expect(await docker.listContainers({ all: true, filters: { label } })).toEqual([]);
    expect((await docker.listVolumes({ filters: { label } })).Volumes ?? []).toEqual([]);
    expect(await docker.listNetworks({ filters: { label } })).toEqual([]);
    expect(await docker.listImages({ filters: { label } })).toEqual([]);
    const tagged = (await docker.listImages()).flatMap((i) => i.RepoTags ?? []);
    expect(tagged.filter((t) => t.includes('torus-rd-job/app'))).toEqual([]);
    // the shared image the job ran stays
    expect(tagged.some((t) => t.endsWith(BUSYBOX_IMAGE))).toBe(true);
  });

  it('fails saying how to enable it when the operator has not', async () => {
    const { sink, result } = await run(spec([setupStep(), runStep('echo never')]), { docker });
    expect(result.status).toBe('failed');
    expect(sink.step(2)).toMatchObject({ status: 'failed' });
    expect(sink.step(2).out).toContain('TORUS_AGENT_REMOTE_DOCKER=1');
  });
});

describe('setup_remote_docker on a machine job', () => {
  it('is a no-op: Docker needs no setup there', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'torus-rd-machine-'));
    try {
      const sink = new MemorySink();
      const result = await runTask(taskSpec([setupStep(), runStep('echo next')]), sink, {
        workRoot: work,
        sandbox: 'none',
        signal: new AbortController().signal,
      });
      expect(result.status).toBe('success');
      expect(sink.step(2).out).toContain('only needed by jobs with a `docker:` executor');
      expect(sink.step(3).out).toBe('next\n');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
