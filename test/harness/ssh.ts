// OpenSSH for the add_ssh_keys tests: key pairs made by the host's ssh-keygen, a test image
// (`torus-test/ssh:1`: the busybox image plus ssh-keygen and the libraries it links, copied from
// the host) for docker jobs to check installed keys with `ssh-keygen -y`, and a real sshd (Debian's
// openssh-server) in the foreground on a loopback port that lets in the keys it is given. Nothing is pulled.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { busyboxRootfs } from './docker.js';
import { freePort, waitFor } from './net.js';
import { REQUIRE_ALL, hasCommand } from './parts.js';

export const SSH_IMAGE = 'torus-test/ssh:1';

/** True when ssh-keygen, ssh-agent and ssh-add are here; otherwise prints why the tests are skipped (or throws in CI). */
export function requireSshTools(what: string): boolean {
  if (hasCommand('ssh-keygen') && hasCommand('ssh-agent') && hasCommand('ssh-add')) return true;
  const line = `SKIP ${what}: needs ssh-keygen, ssh-agent and ssh-add (Debian's openssh-client), which are not installed here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}

/** A new private key without passphrase (`type`: ssh-keygen's -t and -b/-m arguments), as its file's text. */
export function generateSshKey(type: string[], comment = 'test@torus'): string {
  const dir = mkdtempSync(join(tmpdir(), 'torus-sshkey-'));
  try {
    const file = join(dir, 'key');
    const r = spawnSync('ssh-keygen', ['-q', ...type, '-N', '', '-C', comment, '-f', file]);
    if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
    return readFileSync(file, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Imports SSH_IMAGE into the Docker engine at `dockerHost` unless it has it. */
export function ensureSshImage(dockerHost: string): void {
  const env = { ...process.env, DOCKER_HOST: dockerHost };
  if (spawnSync('docker', ['image', 'inspect', SSH_IMAGE], { env }).status === 0) return;
  const dir = mkdtempSync(join(tmpdir(), 'torus-sshimage-'));
  try {
    const root = join(dir, 'r');
    busyboxRootfs(root);
    const ldd = spawnSync('ldd', ['/usr/bin/ssh-keygen'], { encoding: 'utf8' }).stdout;
    const libs = [...ldd.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
    for (const file of ['/usr/bin/ssh-keygen', ...libs]) {
      mkdirSync(join(root, dirname(file)), { recursive: true });
      copyFileSync(file, join(root, file));
    }
    const tar = spawnSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 256 << 20 });
    if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr.toString()}`);
    const r = spawnSync('docker', ['import', '-c', 'ENV PATH=/usr/bin:/bin', '-', SSH_IMAGE], {
      env,
      input: tar.stdout,
    });
    if (r.status !== 0) throw new Error(`docker import failed: ${r.stderr.toString()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** sshd must be started by its absolute path (it re-executes itself) */
function sshdPath(): string | undefined {
  const dirs = ['/usr/sbin', '/usr/local/sbin', '/sbin', ...(process.env.PATH ?? '').split(':')];
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, 'sshd'), constants.X_OK);
      return join(dir, 'sshd');
    } catch {
      // not in this directory: the next one
    }
  }
  return undefined;
}

/** True when an sshd is here; otherwise prints why the tests are skipped (or throws in CI). */
export function requireSshd(what: string): boolean {
  if (sshdPath() && hasCommand('ssh') && hasCommand('ssh-keyscan')) return true;
  const line = `SKIP ${what}: needs sshd (Debian's openssh-server) and ssh, which are not installed here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}

export interface TestSshd {
  port: number;
  /** the user to log in as: this process's (sshd lets in no other without root) */
  user: string;
  stop(): Promise<void>;
}

/** An sshd on 127.0.0.1 that lets `user` in with the given public keys only (no passwords). */
export async function startSshd(authorizedKeys: string[]): Promise<TestSshd> {
  const sshd = sshdPath();
  if (!sshd) throw new Error('no sshd here');
  const dir = mkdtempSync(join(tmpdir(), 'torus-sshd-'));
  const user = userInfo().username;
  const hostKey = join(dir, 'host_ed25519');
  const keygen = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  if (keygen.status !== 0) throw new Error(`ssh-keygen failed: ${keygen.stderr.toString()}`);
  writeFileSync(join(dir, 'authorized_keys'), authorizedKeys.map((k) => k.trim() + '\n').join(''));
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      'PidFile none',
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      `AllowUsers ${user}`,
      'PrintMotd no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  // a root sshd insists on its privilege separation directory, which Debian makes at boot
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const child: ChildProcess = spawn(sshd, ['-D', '-e', '-f', join(dir, 'sshd_config')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-4_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`sshd exited: ${log}`);
        return new Promise<boolean>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
        });
      },
      10_000,
      50,
    );
  } catch (err) {
    await stop();
    throw new Error(`sshd did not start: ${(err as Error).message}; its log: ${log}`);
  }
  return { port, user, stop };
}

/**
 * ssh-agent processes whose working directory is under `dir` (where the host executor starts a
 * task's agent); zombies and processes that end while we look are not counted.
 */
export function sshAgentsUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'ssh-agent') continue;
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue;
      if (readlinkSync(`/proc/${entry}/cwd`).startsWith(dir)) pids.push(Number(entry));
    } catch {
      // gone while we looked, or not ours to read: not a live agent of the task
    }
  }
  return pids;
}
