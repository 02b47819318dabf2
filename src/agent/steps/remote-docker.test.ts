// setup_remote_docker through runTask on the harness's engines: a docker job whose image has a Docker
// CLI sets up remote Docker, then runs, builds and creates through DOCKER_HOST as a user who is not
// root; a bind mount is refused; and after the task nothing carrying its label is left in the engine.
// Without the operator's opt-in the step fails saying how to enable it; on a machine job it is a no-op.
// What a dead agent process left (its tasks' containers, and what their jobs made through the proxy)
// is swept; what live agents have is not.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { buildDockerCliImage, staticDockerCli } from '../../../test/harness/docker-cli.js';
import { dockerAt } from '../../../test/harness/podman.js';
import type { Step } from '../../config/model.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import { runTask } from '../task.js';
import { MemorySink, runStep, taskSpec } from '../testing.js';
import { DockerExecutor, TASK_LABEL, type DockerExecutorOptions } from '../executors/index.js';
import { AGENT_PROCESS_LABEL, agentProcessId, taskEnded, taskStarted } from '../executors/orphans.js';
import { REMOTE_DOCKER_LABEL, removeRemoteDockerObjects } from '../executors/remote-docker-proxy.js';

/** `pid`'s start time in clock ticks since boot, as the agent labels its objects with */
function startTicks(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
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

describe.runIf(hasDocker && cli).each(engines)('setup_remote_docker on $name', ({ host }) => {
  const docker = dockerAt(host);
  const options: DockerExecutorOptions = { docker, remoteDocker: {} };
  const work = mkdtempSync(path.join(tmpdir(), 'torus-rd-job-'));

  beforeAll(async () => {
    await buildDockerCliImage(docker, cli!, CLI_IMAGE);
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

  it('sweeps what tasks of dead agent processes left, and nothing of live agents or other hosts', async () => {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const run = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const owners = {
      // this pid with another start time: the agent process that had it is gone
      dead: `${hostname()}/${boot}/${process.pid}/0/n1`,
      rebooted: `${hostname()}/00000000-0000-0000-0000-000000000000/${process.pid}/${startTicks(process.pid)}/n2`,
      live: `${hostname()}/${boot}/${process.ppid}/${startTicks(process.ppid)}/n3`,
      elsewhere: `other-host.example/${boot}/${process.pid}/0/n4`,
      selfEnded: agentProcessId(),
      selfRunning: agentProcessId(),
    };
    type Kind = keyof typeof owners;
    const task = (kind: Kind) => `sweep-${kind}-${run}`;
    const labels = (kind: Kind) => ({
      [TASK_LABEL]: task(kind),
      [AGENT_PROCESS_LABEL]: owners[kind],
      [REMOTE_DOCKER_LABEL]: task(kind),
    });
    const socketRoot = mkdtempSync(path.join(tmpdir(), 'torus-rd-sockets-'));
    const kinds = Object.keys(owners) as Kind[];
    taskStarted(task('selfRunning'));
    try {
      for (const kind of kinds) {
        const c = await docker.createContainer({
          Image: BUSYBOX_IMAGE,
          Cmd: ['sleep', '300'],
          Labels: labels(kind),
          HostConfig: { NetworkMode: 'none' },
        });
        await c.start();
        await docker.createVolume({ Name: `${task(kind)}-vol`, Labels: labels(kind) });
        await docker.createNetwork({ Name: `${task(kind)}-net`, Labels: labels(kind) });
        const dir = path.join(socketRoot, task(kind));
        mkdirSync(dir);
        writeFileSync(`${dir}.owner`, JSON.stringify({ owner: owners[kind], taskId: task(kind) }));
      }
      const result = await new DockerExecutor({
        docker,
        remoteDocker: { socketDir: socketRoot },
      }).sweepOrphans();
      expect(result.errors).toEqual([]);
      const swept: Kind[] = ['dead', 'rebooted', 'selfEnded'];
      expect(result.tasks.filter((t) => t.endsWith(run)).sort()).toEqual(swept.map(task).sort());
      for (const kind of kinds) {
        const label = [`${TASK_LABEL}=${task(kind)}`];
        const left = [
          (await docker.listContainers({ all: true, filters: { label } })).length,
          ((await docker.listVolumes({ filters: { label } })).Volumes ?? []).length,
          (await docker.listNetworks({ filters: { label } })).length,
        ];
        expect(left, kind).toEqual(swept.includes(kind) ? [0, 0, 0] : [1, 1, 1]);
      }
      expect(readdirSync(socketRoot).sort()).toEqual(
        kinds
          .filter((k) => !swept.includes(k))
          .flatMap((k) => [task(k), `${task(k)}.owner`])
          .sort(),
      );
    } finally {
      taskEnded(task('selfRunning'));
      for (const kind of kinds) await removeRemoteDockerObjects(docker, { [TASK_LABEL]: task(kind) }, []);
      rmSync(socketRoot, { recursive: true, force: true });
    }
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
