// One Executor conformance suite, run on the host executor and on the Docker executor against two
// engines started by the test harness: dockerd and podman's Docker API (the locally imported busybox image).
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { dockerAt, requirePodman } from '../../../test/harness/podman.js';
import { requirePart } from '../../../test/harness/parts.js';
import { waitFor } from '../../../test/harness/net.js';
import type { Environment, ExecEnd, Executor } from '../executor.js';
import { processesMatching, taskSpec } from '../testing.js';
import { DockerExecutor, HostExecutor, TASK_LABEL } from './index.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import {
  compress,
  compressedHomeArchive,
  decompress,
  extractHomeArchive,
  hasZstd,
  writeHomeArchive,
} from '../steps/archive.js';
import { buffer } from 'node:stream/consumers';
import { spawnSync } from 'node:child_process';

const hasBwrap = requirePart('bwrap', 'host executor conformance in the sandbox');
const hasDocker = requireDocker('Docker executor conformance');
const hasPodman = requirePodman('Docker executor conformance on podman');
const hasGnuTar = /GNU tar/.test(spawnSync('tar', ['--version'], { encoding: 'utf8' }).stdout ?? '');

let base: string;
beforeAll(() => {
  base = mkdtempSync(path.join(tmpdir(), 'torus-exec-conf-'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

interface Kind {
  /** the executor, and for the Docker executor the engine */
  name: 'host' | 'docker' | 'podman';
  executor: () => Executor;
  spec: () => TaskSpec;
  /** processes whose command line holds `marker`, seen from where the executor runs them */
  processes: (env: Environment, marker: string) => Promise<number>;
  /** anything of the task left after dispose */
  leftovers: (env: Environment, spec: TaskSpec) => Promise<unknown[]>;
}

/** the Docker executor on one engine (podman: no network, so its CNI bridge never touches the host) */
function dockerKind(name: 'docker' | 'podman', docker: Docker, network?: string): Kind {
  return {
    name,
    executor: () => new DockerExecutor({ docker, network }),
    spec: () =>
      taskSpec([], {
        executor: {
          type: 'docker',
          images: [{ image: BUSYBOX_IMAGE, environment: { IMAGE_VAR: 'from-image' } }],
        },
        resourceClass: 'small',
      }),
    processes: async (env, marker) => {
      const out = await collect(env, ['ps', '-o', 'args']);
      return out.out.split('\n').filter((l) => l.includes(marker) && !l.includes('ps -o')).length;
    },
    leftovers: async (_env, spec) =>
      docker.listContainers({ all: true, filters: { label: [`${TASK_LABEL}=${spec.taskId}`] } }),
  };
}

const kinds: Kind[] = [
  {
    name: 'host',
    executor: () =>
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: hasBwrap ? 'bwrap' : 'none' }),
    spec: () => taskSpec([]),
    processes: (_env, marker) => Promise.resolve(processesMatching(marker).length),
    leftovers: (env) => Promise.resolve(existsSync(env.taskDirectory) ? [env.taskDirectory] : []),
  },
  ...(hasDocker ? [dockerKind('docker', new Docker())] : []),
  ...(hasPodman ? [dockerKind('podman', dockerAt(process.env.TORUS_TEST_PODMAN_HOST ?? ''), 'none')] : []),
];

async function collect(
  env: Environment,
  argv: string[],
  extra: { cwd?: string; env?: Record<string, string>; noOutputTimeoutMs?: number } = {},
): Promise<{ end: ExecEnd; out: string; err: string }> {
  let out = '';
  let err = '';
  const h = env.exec({
    argv,
    cwd: extra.cwd ?? env.workingDirectory,
    env: { ...env.jobEnvironment, ...extra.env },
    noOutputTimeoutMs: extra.noOutputTimeoutMs,
    onOutput: (s, d) => {
      if (s === 'out') out += d;
      else err += d;
    },
  });
  const end = await h.done;
  return { end, out, err };
}

async function tarNames(stream: NodeJS.ReadableStream): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (h, s, next) => {
    names.push(h.name.replace(/\/$/, ''));
    s.on('end', next);
    s.resume();
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    stream.on('error', reject);
    stream.pipe(extract);
  });
  return names.sort();
}

describe.each(kinds)('$name executor', (kind) => {
  let env: Environment;
  let spec: TaskSpec;
  const printed: string[] = [];

  beforeAll(async () => {
    spec = kind.spec();
    env = await kind.executor().prepare(spec, (t) => printed.push(t), new AbortController().signal);
  });
  afterAll(async () => {
    await env?.dispose();
  });

  it('prints what it prepared and describes the environment', () => {
    expect(printed.join('')).toContain(`Working directory: ${env.workingDirectory}`);
    expect(env.kind).toBe(kind.name === 'host' ? 'host' : 'docker');
    expect(env.workingDirectory).toBe(`${env.homeDirectory}/project`);
    expect(env.jobEnvironment.CIRCLE_WORKING_DIRECTORY).toBe(env.workingDirectory);
    expect(env.jobEnvironment.CIRCLE_JOB).toBe('build');
    expect(env.defaultShell).toMatch(/^\/bin\/(ba)?sh -eo pipefail$/);
  });

  it('reports exit codes', async () => {
    expect((await collect(env, ['/bin/sh', '-c', 'exit 3'])).end).toEqual({ kind: 'exited', exitCode: 3 });
    expect((await collect(env, ['/bin/sh', '-c', 'true'])).end).toEqual({ kind: 'exited', exitCode: 0 });
  });

  it('runs with the given environment in the given directory (created when missing)', async () => {
    const r = await collect(env, ['/bin/sh', '-c', 'echo "$FOO|$(pwd)|$HOME"; echo oops >&2'], {
      cwd: `${env.workingDirectory}/sub/dir`,
      env: { FOO: 'bar baz' },
    });
    expect(r.end).toEqual({ kind: 'exited', exitCode: 0 });
    expect(r.out).toBe(`bar baz|${env.workingDirectory}/sub/dir|${env.homeDirectory}\n`);
    expect(r.err).toBe('oops\n');
  });

  it('streams output while the process runs', async () => {
    const seen: { t: number; d: string }[] = [];
    const started = Date.now();
    const h = env.exec({
      argv: ['/bin/sh', '-c', 'echo one; sleep 0.6; echo two'],
      cwd: env.workingDirectory,
      env: env.jobEnvironment,
      onOutput: (_s, d) => {
        seen.push({ t: Date.now() - started, d });
      },
    });
    const end = await h.done;
    const total = Date.now() - started;
    expect(end).toEqual({ kind: 'exited', exitCode: 0 });
    expect(seen.map((s) => s.d).join('')).toBe('one\ntwo\n');
    expect(seen[0]?.t).toBeLessThan(total - 400);
  });

  it('waits while the consumer applies backpressure, losing nothing', async () => {
    // 16 MiB is more than every pipe and socket buffer between the process and us: while the first
    // piece of output is held, the process cannot finish
    const size = 16 * 1024 * 1024;
    let bytes = 0;
    let calls = 0;
    let ended = false;
    let endedWhileHeld = false;
    const h = env.exec({
      argv: ['/bin/sh', '-c', `head -c ${size} /dev/zero | tr '\\0' 'x'; echo; echo done`],
      cwd: env.workingDirectory,
      env: env.jobEnvironment,
      onOutput: (_s, d) => {
        bytes += d.length;
        if (calls++ > 0) return undefined;
        return new Promise<void>((resolve) =>
          setTimeout(() => {
            endedWhileHeld = ended;
            resolve();
          }, 1_500),
        );
      },
    });
    const end = await h.done.finally(() => (ended = true));
    expect(end).toEqual({ kind: 'exited', exitCode: 0 });
    expect(endedWhileHeld).toBe(false);
    expect(bytes).toBe(size + 'done\n'.length + 1);
  });

  it('times out a process with no output and kills it', async () => {
    const started = Date.now();
    const r = await collect(env, ['/bin/sh', '-c', 'echo start; sleep 51.337'], { noOutputTimeoutMs: 400 });
    expect(r.end).toEqual({ kind: 'timedout' });
    expect(r.out).toBe('start\n');
    expect(Date.now() - started).toBeLessThan(6_000);
    await waitFor(async () => (await kind.processes(env, 'sleep 51.337')) === 0, 5_000, 200);
  });

  it('kills a process and what it started', async () => {
    let out = '';
    const h = env.exec({
      argv: ['/bin/sh', '-c', 'echo started; (sleep 52.337; echo child) & sleep 52.337'],
      cwd: env.workingDirectory,
      env: env.jobEnvironment,
      onOutput: (_s, d) => {
        out += d;
      },
    });
    await waitFor(() => out.includes('started'), 10_000);
    await waitFor(async () => (await kind.processes(env, 'sleep 52.337')) >= 2, 5_000, 100);
    const started = Date.now();
    h.kill();
    expect(await h.done).toEqual({ kind: 'killed' });
    expect(Date.now() - started).toBeLessThan(5_000);
    await waitFor(async () => (await kind.processes(env, 'sleep 52.337')) === 0, 5_000, 200);
  });

  it('reports a command that cannot start', async () => {
    const r = await collect(env, ['/no/such/binary']);
    // spawn fails, or the sandbox / container runtime reports it as a non-zero exit (bwrap 1, runc 126/127)
    if (r.end.kind === 'exited') expect(r.end.exitCode).not.toBe(0);
    else expect(r.end.kind).toBe('spawn_error');
  });

  it('writes files, creating their directory, with their mode', async () => {
    const file = `${env.taskDirectory}/deep/er/script.sh`;
    await env.writeFile(file, '#!/bin/sh\necho "from the script $1"\n', 0o755);
    const r = await collect(env, [file, 'arg']);
    expect(r).toMatchObject({ end: { kind: 'exited', exitCode: 0 }, out: 'from the script arg\n' });
    await env.writeFile(`${env.homeDirectory}/plain.txt`, Buffer.from('bytes\n'));
    expect((await collect(env, ['cat', `${env.homeDirectory}/plain.txt`])).out).toBe('bytes\n');
  });

  it('reads and writes tar streams (round trip)', async () => {
    const made = await collect(env, [
      '/bin/sh',
      '-c',
      'mkdir -p data/sub && echo hi > data/a && echo there > data/sub/b && printf x > one.txt',
    ]);
    expect(made.end).toEqual({ kind: 'exited', exitCode: 0 });
    const names = await tarNames(await env.readTar(env.workingDirectory, ['data', 'one.txt']));
    expect(names).toEqual(['data', 'data/a', 'data/sub', 'data/sub/b', 'one.txt']);
    const abs = await tarNames(await env.readTar('/', [`${env.workingDirectory}/data/sub`]));
    expect(abs).toEqual([
      `${env.workingDirectory.slice(1)}/data/sub`,
      `${env.workingDirectory.slice(1)}/data/sub/b`,
    ]);

    const target = `${env.homeDirectory}/restored/here`;
    await env.writeTar(target, await env.readTar(env.workingDirectory, ['data']));
    const r = await collect(env, [
      '/bin/sh',
      '-c',
      `cat ${target}/data/a ${target}/data/sub/b; touch ${target}/data/writable`,
    ]);
    expect(r).toMatchObject({ end: { kind: 'exited', exitCode: 0 }, out: 'hi\nthere\n' });

    // a tar made outside (as a cache or workspace layer arrives)
    const pack = tar.pack();
    pack.entry({ name: 'outside/file.txt' }, 'made outside\n');
    pack.finalize();
    await env.writeTar(`${env.homeDirectory}/in`, pack);
    expect((await collect(env, ['cat', `${env.homeDirectory}/in/outside/file.txt`])).out).toBe(
      'made outside\n',
    );
  });

  it('fails the tar stream of a path that does not exist', async () => {
    const stream = await env.readTar(env.workingDirectory, ['no-such-path']);
    await expect(tarNames(stream)).rejects.toThrow(/no-such-path/);
  });

  it('rejects a corrupt tar stream', async () => {
    await expect(
      env.writeTar(`${env.homeDirectory}/corrupt`, Readable.from([Buffer.alloc(1024, 7)])),
    ).rejects.toThrow();
  });

  // the host executor joins GNU tar to zstd (the cache fast path); the Docker executor has no such path
  it.skipIf(!(kind.name === 'host' && hasGnuTar && hasZstd()))(
    'archives in the cache layout with tar joined straight to zstd, and fails clearly',
    async () => {
      const archive = env.homeArchive!;
      expect(archive).toBeDefined();
      const home = env.homeDirectory;
      const made = await collect(env, [
        '/bin/sh',
        '-c',
        'mkdir -p ~/c/d ~/project/w && echo hi > ~/c/d/a && ln ~/c/d/a ~/c/d/hard && ln -s a ~/c/d/soft && echo w > ~/project/w/f',
      ]);
      expect(made.end).toEqual({ kind: 'exited', exitCode: 0 });
      const zst = await buffer(compressedHomeArchive(archive, [`${home}/c`, `${home}/project/w/f`]));
      const names = await tarNames(decompress(Readable.from([zst]), 'zstd'));
      expect(names).toEqual(['~/c', '~/c/d', '~/c/d/a', '~/c/d/hard', '~/c/d/soft', '~/project/w/f']);

      // restored into the home of another task
      const other = await kind.executor().prepare(kind.spec(), () => undefined, new AbortController().signal);
      try {
        await extractHomeArchive(other.homeArchive!, Readable.from([zst]));
        const r = await collect(other, [
          '/bin/sh',
          '-c',
          'cat ~/c/d/a ~/project/w/f; readlink ~/c/d/soft; [ ~/c/d/a -ef ~/c/d/hard ] && echo linked; [ -L ~/.. ] || echo home-kept',
        ]);
        expect(r).toMatchObject({
          end: { kind: 'exited', exitCode: 0 },
          out: 'hi\nw\na\nlinked\nhome-kept\n',
        });

        // the same through files: tar into zstd into a file, zstd reading the file into tar
        const file = path.join(base, `archive-${Date.now()}.zst`);
        expect(await writeHomeArchive(archive, [`${home}/c`], file)).toBe(statSync(file).size);
        await collect(other, ['rm', '-rf', `${other.homeDirectory}/c`]);
        await extractHomeArchive(other.homeArchive!, { file });
        expect((await collect(other, ['cat', `${other.homeDirectory}/c/d/a`])).out).toBe('hi\n');
        await expect(writeHomeArchive(archive, [`${home}/no-such-path`], `${file}.2`)).rejects.toThrow(
          /tar failed.*no-such-path/s,
        );
        expect(existsSync(`${file}.2`)).toBe(false);

        // a path tar cannot read fails the stream with tar's message
        await expect(buffer(compressedHomeArchive(archive, [`${home}/no-such-path`]))).rejects.toThrow(
          /tar failed.*no-such-path/s,
        );
        // not zstd at all; zstd cut short (tar sees the archive end early)
        await expect(
          extractHomeArchive(other.homeArchive!, Readable.from([Buffer.from('garbage')])),
        ).rejects.toThrow(/zstd failed/);
        await expect(
          extractHomeArchive(
            other.homeArchive!,
            Readable.from([zst.subarray(0, Math.floor(zst.length / 2))]),
          ),
        ).rejects.toThrow(/zstd failed/);
        // a whole zstd frame holding a tar cut inside a file's contents
        const big = await collect(env, ['/bin/sh', '-c', 'head -c 5000 /dev/zero > ~/big']);
        expect(big.end).toEqual({ kind: 'exited', exitCode: 0 });
        const bigTar = await buffer(decompress(compressedHomeArchive(archive, [`${home}/big`]), 'zstd'));
        const truncatedTar = await buffer(compress(Readable.from([bigTar.subarray(0, 2000)]), 'zstd'));
        await expect(extractHomeArchive(other.homeArchive!, Readable.from([truncatedTar]))).rejects.toThrow(
          /tar failed/,
        );
        // the download failing midway
        const failing = new Readable({ read() {} });
        failing.push(zst.subarray(0, 100));
        setTimeout(() => failing.destroy(new Error('the connection was reset')), 50);
        await expect(extractHomeArchive(other.homeArchive!, failing)).rejects.toThrow(
          'the connection was reset',
        );
      } finally {
        await other.dispose();
      }
    },
  );

  it('dispose removes everything, also with a process still running', async () => {
    const s = kind.spec();
    const e = await kind.executor().prepare(s, () => undefined, new AbortController().signal);
    const h = e.exec({
      argv: ['/bin/sh', '-c', 'sleep 53.337'],
      cwd: e.workingDirectory,
      env: e.jobEnvironment,
      onOutput: () => undefined,
    });
    await e.writeFile(`${e.taskDirectory}/f`, 'x');
    expect((await kind.leftovers(e, s)).length).toBeGreaterThan(0);
    await e.dispose();
    h.kill();
    await h.done;
    expect(await kind.leftovers(e, s)).toEqual([]);
  });
});

describe.each(kinds.filter((k) => k.name !== 'host'))('$name executor with a service container', (kind) => {
  it('reaches the service container on localhost', async () => {
    const spec = taskSpec([], {
      executor: {
        type: 'docker',
        images: [
          { image: BUSYBOX_IMAGE, environment: {} },
          {
            image: BUSYBOX_IMAGE,
            environment: {},
            name: 'web',
            entrypoint: ['/bin/sh', '-c'],
            command: [
              'mkdir -p /www && echo served-by-service > /www/hostname && exec httpd -f -p 8080 -h /www',
            ],
          },
        ],
      },
      resourceClass: 'small',
    });
    const printed: string[] = [];
    const env = await kind.executor().prepare(spec, (t) => printed.push(t), new AbortController().signal);
    try {
      expect(printed.join('')).toContain(`Starting service container ${BUSYBOX_IMAGE} as web`);
      const r = await collect(env, [
        '/bin/sh',
        '-c',
        'for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/hostname 2>/dev/null && exit 0; sleep 0.1; done; exit 1',
      ]);
      expect(r).toMatchObject({ end: { kind: 'exited', exitCode: 0 }, out: 'served-by-service\n' });
    } finally {
      await env.dispose();
    }
    expect(await kind.leftovers(env, spec)).toEqual([]);
  });

  it('fails the job when a service image has no command, and removes the primary', async () => {
    const spec = taskSpec([], {
      executor: {
        type: 'docker',
        images: [
          { image: BUSYBOX_IMAGE, environment: {} },
          { image: BUSYBOX_IMAGE, environment: {}, name: 'db' },
        ],
      },
      resourceClass: 'small',
    });
    // dockerd answers 400 "No command specified", podman 500 "no command or entrypoint provided": both are the config's fault
    await expect(
      kind.executor().prepare(spec, () => undefined, new AbortController().signal),
    ).rejects.toMatchObject({
      status: 'failed',
      message: expect.stringMatching(/^Could not start container torus-test\/busybox:1: .*command/i),
    });
    expect(await kind.leftovers({} as Environment, spec)).toEqual([]);
  });
});
