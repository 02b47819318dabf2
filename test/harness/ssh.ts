// OpenSSH for the add_ssh_keys tests: key pairs made by the host's ssh-keygen, and a test image
// (`torus-test/ssh:1`: the busybox image plus ssh-keygen and the libraries it links, copied from
// the host) for docker jobs to check installed keys with `ssh-keygen -y`. Nothing is pulled.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { busyboxRootfs } from './docker.js';
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
