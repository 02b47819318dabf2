// The remote Docker proxy against the harness's real engines (dockerd, and podman's Docker API):
// what would leave the sandbox is refused with Docker's error shape, everything the job makes is
// labelled and capped, other jobs' objects are invisible, streams (build context, attach with stdin,
// exec, logs) pass through, and removeRemoteDockerObjects leaves nothing of the job behind.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import http from 'node:http';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { dockerAt } from '../../../test/harness/podman.js';
import { REMOTE_DOCKER_LABEL, RemoteDockerProxy, removeRemoteDockerObjects } from './remote-docker-proxy.js';
import { TASK_LABEL } from './docker.js';

const hasDocker = requireDocker('remote Docker proxy tests');
const engines = [
  { name: 'dockerd', host: process.env.TORUS_TEST_DOCKER_HOST },
  { name: 'podman', host: process.env.TORUS_TEST_PODMAN_HOST },
].filter((e): e is { name: string; host: string } => Boolean(e.host));
const MiB = 2 ** 20;
const DENIED = "Torus's remote Docker does not allow";

/** a request straight to the proxy: its status and Docker-shaped error message */
function raw(
  socketPath: string,
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      { socketPath, method, path: p, headers: data ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let message = text;
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? text;
          } catch {
            // a stream, not an error
          }
          resolve({ status: res.statusCode ?? 0, message });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function refusal(p: Promise<unknown>): Promise<{ statusCode: number; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { statusCode: number; json?: { message?: string }; message: string };
    return { statusCode: e.statusCode, message: e.json?.message ?? e.message };
  }
  throw new Error('the request was not refused');
}

function collect(): { stream: Writable; text: () => string } {
  let out = '';
  return {
    stream: new Writable({
      write(c: Buffer, _e, cb) {
        out += c.toString();
        cb();
      },
    }),
    text: () => out,
  };
}

async function follow(
  docker: Docker,
  stream: NodeJS.ReadableStream,
): Promise<{ error?: string; stream?: string }[]> {
  return new Promise((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, events: { error?: string }[]) =>
      err ? reject(err) : resolve(events),
    ),
  );
}

describe.runIf(hasDocker).each(engines)('remote Docker proxy on $name', ({ name, host }) => {
  const engine = dockerAt(host);
  const engineSocket = host.replace(/^unix:\/\//, '');
  const dir = mkdtempSync(path.join(tmpdir(), 'torus-rd-test-'));
  const socket = path.join(dir, 'docker.sock');
  const taskId = `rd-${process.pid}-${name}-${Math.random().toString(36).slice(2, 8)}`;
  const labels = { [TASK_LABEL]: taskId, [REMOTE_DOCKER_LABEL]: taskId };
  const proxy = new RemoteDockerProxy({ engineSocket, labels, limits: { cpus: 1, memoryBytes: 256 * MiB } });
  const job = new Docker({ socketPath: socket });
  /** made on the engine directly, as another job's or the agent's own */
  const foreign: { container?: Docker.Container; volume?: string } = {};

  beforeAll(async () => {
    await proxy.listen(socket);
    foreign.container = await engine.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ['sleep', '300'],
      Labels: { [TASK_LABEL]: taskId }, // the agent's own job container for this very task: not the job's to touch
      HostConfig: { NetworkMode: 'none' },
    });
    await foreign.container.start();
    foreign.volume = `torus-foreign-${taskId}`;
    await engine.createVolume({ Name: foreign.volume, Labels: { [TASK_LABEL]: 'someone-else' } });
  });

  afterAll(async () => {
    await proxy.close();
    await foreign.container?.remove({ force: true });
    if (foreign.volume) await engine.getVolume(foreign.volume).remove();
    await removeRemoteDockerObjects(engine, labels, proxy.tags);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses what would leave the sandbox, with a Docker-style message', async () => {
    const create = (HostConfig: Record<string, unknown>) =>
      refusal(job.createContainer({ Image: BUSYBOX_IMAGE, Cmd: ['true'], HostConfig }));
    const cases: [Record<string, unknown>, string][] = [
      [{ Binds: ['/etc:/host-etc'] }, 'bind mounts of host paths (/etc)'],
      [{ Mounts: [{ Type: 'bind', Source: '/', Target: '/host' }] }, 'bind mounts of host paths (/)'],
      [
        {
          Mounts: [
            {
              Type: 'volume',
              Target: '/x',
              VolumeOptions: {
                DriverConfig: { Name: 'local', Options: { type: 'none', o: 'bind', device: '/etc' } },
              },
            },
          ],
        },
        'volume driver options',
      ],
      [{ Privileged: true }, 'privileged containers'],
      [{ NetworkMode: 'host' }, "the host's network"],
      [{ PidMode: 'host' }, "the host's namespaces (--pid=host)"],
      [{ IpcMode: 'host' }, "the host's namespaces (--ipc=host)"],
      [{ UsernsMode: 'host' }, "the host's namespaces (--userns=host)"],
      [{ CapAdd: ['SYS_ADMIN'] }, 'added capabilities'],
      [
        { Devices: [{ PathOnHost: '/dev/sda', PathInContainer: '/dev/sda', CgroupPermissions: 'rwm' }] },
        'host devices',
      ],
      [{ SecurityOpt: ['seccomp=unconfined'] }, 'security options (seccomp=unconfined)'],
      [{ CgroupParent: '/' }, 'containers in another cgroup'],
    ];
    for (const [hc, what] of cases) {
      const r = await create(hc);
      expect(r, JSON.stringify(hc)).toEqual({
        statusCode: 403,
        message: expect.stringContaining(`${DENIED} ${what}`),
      });
    }
    expect((await create({ Binds: ['/etc:/x'] })).message).toContain("cannot see the job's files");

    const volume = await refusal(
      job.createVolume({ Name: `bind-${taskId}`, DriverOpts: { type: 'none', o: 'bind', device: '/etc' } }),
    );
    expect(volume).toMatchObject({
      statusCode: 403,
      message: expect.stringContaining(`${DENIED} volume driver options`),
    });
    const net = await refusal(job.createNetwork({ Name: `mv-${taskId}`, Driver: 'macvlan' }));
    expect(net.message).toContain(`${DENIED} the macvlan network driver`);

    expect(await raw(socket, 'POST', '/v1.41/build?networkmode=host', undefined)).toMatchObject({
      status: 403,
      message: expect.stringContaining(`${DENIED} builds on the host network`),
    });
    expect(
      (await raw(socket, 'POST', '/build?remote=http%3A%2F%2F127.0.0.1%3A8080%2Fctx.tar')).message,
    ).toContain(`${DENIED} the engine to fetch build contexts from URLs`);
    expect(
      (await raw(socket, 'POST', '/images/create?fromSrc=http%3A%2F%2F169.254.169.254%2F')).message,
    ).toContain(`${DENIED} the engine to download images from URLs`);
    expect(await raw(socket, 'POST', '/plugins/pull?remote=x')).toMatchObject({ status: 403 });
    expect(await raw(socket, 'POST', '/swarm/init', {})).toMatchObject({ status: 403 });
    // a shared image is not the job's to remove
    expect(await refusal(job.getImage(BUSYBOX_IMAGE).remove())).toMatchObject({
      statusCode: 403,
      message: expect.stringContaining(`${DENIED} removing image ${BUSYBOX_IMAGE}`),
    });
  });

  it("hides what the job did not make: the agent's containers, other jobs' volumes", async () => {
    const id = foreign.container!.id;
    const listed = await job.listContainers({ all: true });
    expect(listed.map((c) => c.Id)).not.toContain(id);
    expect(await refusal(job.getContainer(id).inspect())).toMatchObject({ statusCode: 404 });
    expect(await refusal(job.getContainer(id).exec({ Cmd: ['true'] }))).toMatchObject({ statusCode: 404 });
    expect(await refusal(job.getContainer(id).remove({ force: true }))).toMatchObject({ statusCode: 404 });
    // joining its namespaces, or mounting another job's volume, is refused too
    expect(
      await refusal(
        job.createContainer({ Image: BUSYBOX_IMAGE, HostConfig: { NetworkMode: `container:${id}` } }),
      ),
    ).toMatchObject({ statusCode: 404 });
    expect(
      await refusal(
        job.createContainer({ Image: BUSYBOX_IMAGE, HostConfig: { Binds: [`${foreign.volume}:/v`] } }),
      ),
    ).toMatchObject({ statusCode: 403, message: expect.stringContaining(`volume ${foreign.volume}`) });
    expect(await refusal(job.getVolume(foreign.volume!).inspect())).toMatchObject({ statusCode: 404 });
    expect((await job.listVolumes()).Volumes?.map((v) => v.Name) ?? []).not.toContain(foreign.volume);
    expect((await foreign.container!.inspect()).State.Running).toBe(true);
  });

  it('labels and caps what the job makes, and streams attach, exec, logs and build contexts', async () => {
    // a container through attach with stdin (hijacked), start, wait: what `docker run -i` does
    const c = await job.createContainer({
      Image: BUSYBOX_IMAGE,
      // the first line is dropped: dockerode also sends its options as a body, which podman passes to stdin
      Cmd: ['sh', '-c', 'read -r _; cat; echo done >&2'],
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { NetworkMode: 'none', Binds: [`data-${taskId}:/data`], Memory: 4 * 2 ** 30 },
    });
    const info = await engine.getContainer(c.id).inspect();
    expect(info.Config.Labels).toMatchObject(labels);
    expect(info.HostConfig.Memory).toBe(256 * MiB); // capped at the job's resource class
    expect(info.HostConfig.NanoCpus).toBe(1e9);
    // the named volume the engine would have made unlabelled is the job's own
    expect((await engine.getVolume(`data-${taskId}`).inspect()).Labels).toMatchObject(labels);

    const attached = (await c.attach({
      stream: true,
      stdin: true,
      stdout: true,
      stderr: true,
      hijack: true,
    })) as NodeJS.ReadWriteStream;
    const out = collect();
    const err = collect();
    job.modem.demuxStream(attached, out.stream, err.stream);
    await c.start();
    const big = 'x'.repeat(3 * MiB);
    attached.write('\n' + big);
    attached.end();
    expect(await c.wait()).toMatchObject({ StatusCode: 0 });
    await new Promise((r) => setTimeout(r, 200));
    expect(out.text().replace(/x/g, '')).toBe('');
    expect(out.text().length).toBe(big.length);
    expect(err.text()).toBe('done\n');

    // exec (hijacked) and logs of a running container
    const svc = await job.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done'],
      HostConfig: { NetworkMode: 'none' },
    });
    await svc.start();
    const exec = await svc.exec({
      Cmd: ['sh', '-c', 'echo exec-out; exit 3'],
      AttachStdout: true,
      AttachStderr: true,
    });
    const es = (await exec.start({ hijack: true, stdin: false })) as NodeJS.ReadableStream;
    const eo = collect();
    job.modem.demuxStream(es, eo.stream, eo.stream);
    await new Promise((r) => es.on('end', r));
    expect(eo.text()).toBe('exec-out\n');
    expect((await exec.inspect()).ExitCode).toBe(3);
    const logs = (await svc.logs({ follow: true, stdout: true })) as NodeJS.ReadableStream;
    const lo = collect();
    job.modem.demuxStream(logs, lo.stream, lo.stream);
    await new Promise((r) => setTimeout(r, 800));
    (logs as unknown as { destroy(): void }).destroy();
    expect(lo.text()).toMatch(/tick 1\ntick 2\n/);

    // a build from a streamed tar context (classic builder; podman's buildah): labelled image, recorded tag
    const pack = tar.pack();
    pack.entry(
      { name: 'Dockerfile' },
      `FROM ${BUSYBOX_IMAGE}\nCOPY payload /payload\nCMD ["wc","-c","/payload"]\n`,
    );
    pack.entry({ name: 'payload' }, Buffer.alloc(5 * MiB, 7));
    pack.finalize();
    const context = new PassThrough();
    pack.pipe(context);
    const tag = `torus-rd-test/${taskId}:built`;
    const events = await follow(job, await job.buildImage(context as unknown as Readable, { t: tag }));
    expect(events.filter((e) => e.error)).toEqual([]);
    expect((await engine.getImage(tag).inspect()).Config.Labels).toMatchObject(labels);
    expect(proxy.tags.has(tag)).toBe(true);
    const run = await job.createContainer({ Image: tag, HostConfig: { NetworkMode: 'none' } });
    const ro = collect();
    const rs = (await run.attach({ stream: true, stdout: true, stderr: true })) as NodeJS.ReadableStream;
    job.modem.demuxStream(rs, ro.stream, ro.stream);
    await run.start();
    await run.wait();
    await new Promise((r) => setTimeout(r, 200));
    expect(ro.text().trim()).toBe(`${5 * MiB} /payload`);

    // networks and volumes the job makes carry its labels; the job sees only those
    await job.createNetwork({ Name: `net-${taskId}` });
    await job.createVolume({ Name: `vol-${taskId}` });
    const nets = (await engine.listNetworks({ filters: { label: [`${TASK_LABEL}=${taskId}`] } })).map(
      (n) => n.Name,
    );
    expect(nets).toContain(`net-${taskId}`);
    expect((await job.listNetworks()).map((n) => n.Name)).toEqual([`net-${taskId}`]);
    expect((await job.listVolumes()).Volumes?.map((v) => v.Name).sort()).toEqual([
      `data-${taskId}`,
      `vol-${taskId}`,
    ]);
    // retagging a shared image is recorded, and the job may remove what it tagged
    await job.getImage(BUSYBOX_IMAGE).tag({ repo: `torus-rd-test/${taskId}`, tag: 'retag' });
    expect(proxy.tags.has(`torus-rd-test/${taskId}:retag`)).toBe(true);
    await job.getImage(`torus-rd-test/${taskId}:retag`).remove();
    await engine.getImage(BUSYBOX_IMAGE).inspect(); // the shared image itself stays
  });

  // BuildKit's session is a connection upgrade (the Debian CLI's built-in BuildKit client; podman has none)
  if (name === 'dockerd') {
    it('passes BuildKit builds through their session, labelled, and refuses their host network', async () => {
      const ctx = path.join(dir, 'ctx');
      mkdirSync(ctx, { recursive: true });
      writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${BUSYBOX_IMAGE}\nCOPY f /f\n`);
      writeFileSync(path.join(ctx, 'f'), `buildkit ${taskId}\n`); // new content: no cache hit
      const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: '1' };
      const tag = `torus-rd-test/${taskId}:buildkit`;
      const docker = (args: string[]) =>
        promisify(execFile)('/usr/bin/docker', args, { env, timeout: 60_000 });
      await docker(['build', '-q', '-t', tag, ctx]);
      expect((await engine.getImage(tag).inspect()).Config.Labels).toMatchObject(labels);
      expect(proxy.tags.has(tag)).toBe(true);
      const host = await docker(['build', '--network', 'host', ctx]).then(
        () => '',
        (err: { stderr?: string }) => err.stderr ?? '',
      );
      expect(host).toContain(`${DENIED} builds on the host network`);
    });
  }

  it('leaves nothing of the job behind once removeRemoteDockerObjects ran', async () => {
    const c = await job.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ['sleep', '300'],
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
    const errors = await removeRemoteDockerObjects(engine, labels, proxy.tags);
    expect(errors).toEqual([]);
    const label = [`${TASK_LABEL}=${taskId}`, `${REMOTE_DOCKER_LABEL}=${taskId}`];
    expect(await engine.listContainers({ all: true, filters: { label } })).toEqual([]);
    expect((await engine.listVolumes({ filters: { label } })).Volumes ?? []).toEqual([]);
    expect(await engine.listNetworks({ filters: { label } })).toEqual([]);
    expect(await engine.listImages({ filters: { label } })).toEqual([]);
    expect(await refusal(engine.getImage(`torus-rd-test/${taskId}:built`).inspect())).toMatchObject({
      statusCode: 404,
    });
    // the agent's own container of the task and the shared image are untouched
    expect((await foreign.container!.inspect()).State.Running).toBe(true);
    await engine.getImage(BUSYBOX_IMAGE).inspect();
  });
});
