// A real Docker engine for the tests: one `dockerd` per test run (started from global-setup, in the
// foreground with its own data root in a temporary directory, no iptables, no bridge), exported to
// the test files as DOCKER_HOST / TORUS_TEST_DOCKER_HOST, and the local test image
// `torus-test/busybox:1` imported from a busybox-static root filesystem (nothing is pulled).
// `TORUS_TEST_REGISTRY_PORT` is a loopback port dockerd trusts as an insecure registry, for the
// authenticated-pull test to run `docker-registry` on.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.js';
import { hasCommand, REQUIRE_ALL } from './parts.js';

export const BUSYBOX_IMAGE = 'torus-test/busybox:1';
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

export interface TestDockerd {
  host: string;
  registryPort: number;
  stop(): Promise<void>;
}

function docker(host: string, args: string[], input?: Buffer): { status: number | null; out: string } {
  const r = spawnSync('docker', args, {
    env: { ...process.env, DOCKER_HOST: host },
    input,
    encoding: 'buffer',
    timeout: 60_000,
  });
  return { status: r.status, out: `${r.stdout?.toString() ?? ''}${r.stderr?.toString() ?? ''}` };
}

/** a tar of a busybox root filesystem: every applet linked, /tmp, /root, a `circleci` user */
export function busyboxRootfs(dir: string): Buffer {
  if (!BUSYBOX) throw new Error('busybox-static is not installed');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  for (const d of ['tmp', 'root', 'etc', 'home/circleci', 'proc', 'sys', 'dev'])
    mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX, join(dir, 'bin/busybox'));
  const list = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const applet of list) if (applet !== 'busybox') symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(
    join(dir, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\ncircleci:x:3434:3434:circleci:/home/circleci:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  );
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\ncircleci:x:3434:\nnogroup:x:65534:\n');
  spawnSync('chmod', ['1777', join(dir, 'tmp')]);
  spawnSync('chown', ['3434:3434', join(dir, 'home/circleci')]);
  const tar = spawnSync('tar', ['-C', dir, '-c', '.'], { maxBuffer: 64 << 20 });
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr.toString()}`);
  return tar.stdout;
}

/** imports the busybox test image unless the daemon has it */
export function ensureBusyboxImage(host: string): void {
  if (docker(host, ['image', 'inspect', BUSYBOX_IMAGE]).status === 0) return;
  const dir = mkdtempSync(join(tmpdir(), 'torus-busybox-'));
  try {
    const rootfs = busyboxRootfs(join(dir, 'r'));
    const r = docker(host, ['import', '-c', 'ENV PATH=/bin', '-', BUSYBOX_IMAGE], rootfs);
    if (r.status !== 0) throw new Error(`docker import failed: ${r.out}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startDockerd(): Promise<TestDockerd> {
  const dir = mkdtempSync(join(tmpdir(), 'torus-dockerd-'));
  const host = `unix://${dir}/docker.sock`;
  const registryPort = await freePort();
  const args = [
    '--data-root',
    join(dir, 'data'),
    '--exec-root',
    join(dir, 'exec'),
    '--pidfile',
    join(dir, 'dockerd.pid'),
    '-H',
    host,
    '--iptables=false',
    '--bridge=none',
    '--containerd-namespace',
    `torus-test-${process.pid}`,
    '--containerd-plugins-namespace',
    `torus-test-${process.pid}-plugins`,
    '--insecure-registry',
    `127.0.0.1:${registryPort}`,
  ];
  // a test run killed before its teardown must not leave dockerd behind: it gets SIGTERM when we die
  const proc: ChildProcess = hasCommand('setpriv')
    ? spawn('setpriv', ['--pdeathsig', 'SIGTERM', '--', 'dockerd', ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn('dockerd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (b: Buffer) => {
    log = (log + b.toString()).slice(-8_000);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      // whatever a test left behind goes first, so dockerd unmounts cleanly
      const ids = docker(host, ['ps', '-aq'])
        .out.split('\n')
        .filter((l) => /^[0-9a-f]+$/.test(l));
      if (ids.length) docker(host, ['rm', '-f', '-v', ...ids]);
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
  };
  try {
    await waitFor(
      () => {
        if (proc.exitCode !== null) throw new Error(`dockerd exited: ${log}`);
        return docker(host, ['version', '--format', '{{.Server.Version}}']).status === 0;
      },
      30_000,
      100,
    );
    ensureBusyboxImage(host);
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, registryPort, stop };
}

/**
 * True when the test run has a Docker engine (TORUS_TEST_DOCKER_HOST, set by global-setup);
 * otherwise prints why the tests are skipped (or throws under TORUS_TEST_REQUIRE_ALL=1).
 */
export function requireDocker(what: string): boolean {
  if (process.env.TORUS_TEST_DOCKER_HOST) return true;
  const line = `SKIP ${what}: needs docker (dockerd from docker.io, started by the test harness as root), which is not available here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}
