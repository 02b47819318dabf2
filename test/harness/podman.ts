// podman's Docker-compatible API for the tests: one `podman system service` per test run (started
// from global-setup, in the foreground, with runc, cgroupfs and lower ulimits as this machine needs,
// and its own storage, run and config directories in a temporary directory so the machine's global
// podman state is never touched), exported as TORUS_TEST_PODMAN_HOST, with the same busybox test
// image as dockerd (`torus-test/busybox:1`) imported through the API (nothing is pulled).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { BUSYBOX_IMAGE, busyboxRootfs } from './docker.js';
import { waitFor } from './net.js';
import { hasCommand, REQUIRE_ALL } from './parts.js';

export interface TestPodman {
  host: string;
  stop(): Promise<void>;
}

/** a dockerode client for a `unix://` host */
export function dockerAt(host: string): Docker {
  return new Docker({ socketPath: host.replace(/^unix:\/\//, '') });
}

function configure(dir: string): NodeJS.ProcessEnv {
  for (const d of ['root', 'run', 'tmp', 'net']) mkdirSync(join(dir, d), { recursive: true });
  // crun fails here (rlimits, hybrid cgroups): runc, cgroupfs, ulimits below the hard limit
  writeFileSync(
    join(dir, 'containers.conf'),
    [
      '[containers]',
      'default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      // conmon waits this long after an exec ends before cleaning up (default 300 s): processes nobody tracks
      'exit_command_delay = 5',
      'events_logger = "file"',
      `events_logfile_path = "${dir}/events.log"`,
      `tmp_dir = "${dir}/tmp"`,
      '[network]',
      `network_config_dir = "${dir}/net"`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'storage.conf'),
    `[storage]\ndriver = "overlay"\ngraphroot = "${dir}/root"\nrunroot = "${dir}/run"\n`,
  );
  return {
    ...process.env,
    CONTAINERS_CONF: join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
  };
}

/** imports the busybox test image (same root filesystem as dockerd's) through the Docker API */
async function importBusybox(docker: Docker, dir: string): Promise<void> {
  const rootfs = busyboxRootfs(join(dir, 'busybox'));
  rmSync(join(dir, 'busybox'), { recursive: true, force: true });
  const stream = (await docker.importImage(Readable.from([rootfs]), {
    repo: BUSYBOX_IMAGE,
    changes: 'ENV PATH=/bin',
  })) as NodeJS.ReadableStream;
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, events: { error?: string }[]) => {
      const reason = err?.message ?? events.find((e) => e.error)?.error;
      if (reason) reject(new Error(`podman import failed: ${reason}`));
      else resolve();
    }),
  );
  await docker.getImage(BUSYBOX_IMAGE).inspect();
}

/** unmounts whatever podman left mounted under dir (its overlay storage) */
function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

export async function startPodman(): Promise<TestPodman> {
  const dir = mkdtempSync(join(tmpdir(), 'torus-podman-'));
  const host = `unix://${dir}/podman.sock`;
  const env = configure(dir);
  const args = ['system', 'service', '--time=0', host];
  // a test run killed before its teardown must not leave podman behind: it gets SIGTERM when we die
  const proc: ChildProcess = hasCommand('setpriv')
    ? spawn('setpriv', ['--pdeathsig', 'SIGTERM', '--', 'podman', ...args], {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn('podman', args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (b: Buffer) => {
    log = (log + b.toString()).slice(-8_000);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const docker = dockerAt(host);
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      // whatever a test left behind goes first, so podman unmounts cleanly
      const left = await docker.listContainers({ all: true }).catch(() => []);
      for (const c of left)
        await docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .catch(() => {});
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
  };
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return `exited: ${log}`;
        return (await docker.ping().then(() => true)) && 'up';
      },
      30_000,
      100,
    ).then((state) => {
      if (state !== 'up') throw new Error(`podman system service ${state}`);
    });
    await importBusybox(docker, dir);
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, stop };
}

/**
 * True when the test run has podman's Docker API (TORUS_TEST_PODMAN_HOST, set by global-setup);
 * otherwise prints why the tests are skipped (or throws under TORUS_TEST_REQUIRE_ALL=1).
 */
export function requirePodman(what: string): boolean {
  if (process.env.TORUS_TEST_PODMAN_HOST) return true;
  const line = `SKIP ${what}: needs podman (podman system service, started by the test harness as root), which is not available here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}
