// The bubblewrap sandbox for the host executor: deciding whether there is one, and the `bwrap`
// command line that runs one step with only the system directories (read-only) and the task's
// own directory (writable) visible; and the sandbox's own /etc/passwd, whose entry for the job's
// user has the job's HOME as its home directory.
import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { spawnSync } from 'node:child_process';
import { TorusError } from '../ops/index.js';

export type SandboxMode = 'auto' | 'bwrap' | 'none';
export type SandboxKind = 'bwrap' | 'none';

/** system directories a job may read (never write); absent ones are skipped */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt'];

const NO_SANDBOX_WARNING =
  'Jobs run WITHOUT a sandbox: each step is a plain process of the agent user and can read every file that user can ' +
  '(install bubblewrap, `apt-get install bubblewrap`, and use --sandbox auto to isolate them)';

let bwrapWorks: boolean | undefined;

function probeBwrap(): boolean {
  if (bwrapWorks === undefined) {
    const r = spawnSync(
      'bwrap',
      ['--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--unshare-pid', 'true'],
      {
        stdio: 'ignore',
        timeout: 10_000,
      },
    );
    bwrapWorks = r.status === 0;
  }
  return bwrapWorks;
}

/** Which sandbox jobs get. 'bwrap' insists (throws when bubblewrap cannot run); 'auto' falls back with a warning. */
export function detectSandbox(mode: SandboxMode): { kind: SandboxKind; warning?: string } {
  switch (mode) {
    case 'none':
      return { kind: 'none', warning: NO_SANDBOX_WARNING };
    case 'bwrap':
      if (!probeBwrap()) {
        throw new TorusError(
          'TORUS_E_SETTINGS',
          'The bubblewrap sandbox was required (--sandbox bwrap) but `bwrap` is missing or cannot create namespaces here',
          'install bubblewrap or choose --sandbox auto',
        );
      }
      return { kind: 'bwrap' };
    case 'auto':
      return probeBwrap() ? { kind: 'bwrap' } : { kind: 'none', warning: NO_SANDBOX_WARNING };
    default: {
      const never: never = mode;
      throw new TorusError('TORUS_E_SETTINGS', `unknown sandbox mode ${String(never)}`);
    }
  }
}

export interface SandboxMounts {
  /** the task's directory, bound writable at the same path */
  taskDir: string;
  /** host directory bound at /tmp */
  tmpDir: string;
  /** task-owned host directories bound writable at other absolute paths (working directories outside the task dir) */
  binds: { host: string; path: string }[];
  /** host paths visible read-only at the same path (a local repository to clone) */
  readOnly: string[];
  /** a host file bound read-only at /etc/passwd (see writeSandboxPasswd) */
  passwd?: string;
}

/**
 * Writes the sandbox's /etc/passwd to `file`: the host's, with the home directory of the job's user
 * (this process's uid, which bubblewrap keeps) set to `home`, or an entry added for it. OpenSSH
 * takes `~` from the passwd entry, not from $HOME: with this, `ssh` and `git` over ssh read the
 * job's ~/.ssh/config and ~/.ssh/known_hosts (where add_ssh_keys writes) as on CircleCI, not the
 * agent user's. False (nothing written) when the host's /etc/passwd is not a plain file or `home`
 * cannot be written in one.
 */
export async function writeSandboxPasswd(file: string, home: string): Promise<boolean> {
  const uid = process.getuid?.();
  if (uid === undefined || /[:\n]/.test(home)) return false;
  let host: string;
  try {
    if (!lstatSync('/etc').isDirectory() || !lstatSync('/etc/passwd').isFile()) return false;
    host = await readFile('/etc/passwd', 'utf8');
  } catch {
    // no readable /etc/passwd: the sandbox keeps whatever the host has (nothing to replace)
    return false;
  }
  let found = false;
  const lines = host.split('\n').map((line) => {
    const fields = line.split(':');
    if (fields.length < 7 || fields[2] !== String(uid)) return line;
    found = true;
    fields[5] = home;
    return fields.join(':');
  });
  if (!found) {
    let name = 'torus';
    try {
      name = userInfo().username;
    } catch {
      // the uid has no name anywhere (a container's arbitrary uid): the entry gets one
    }
    const gid = process.getgid?.() ?? uid;
    if (lines.at(-1) === '') lines.pop();
    lines.push(`${name}:x:${uid}:${gid}:Torus job:${home}:/bin/sh`, '');
  }
  await writeFile(file, lines.join('\n'), { mode: 0o644 });
  return true;
}

function resolvConfTarget(): string | null {
  try {
    const real = realpathSync('/etc/resolv.conf');
    return SYSTEM_DIRS.some((d) => real === d || real.startsWith(d + '/')) ? null : real;
  } catch {
    // no resolv.conf (or a dangling link): the job gets no DNS configuration, as on the host
    return null;
  }
}

/**
 * bubblewrap's options for one step, to be passed through `--args FD` (NUL-separated) rather than
 * on the command line: the job's environment values (secrets among them) must not show in `ps`.
 * `--clearenv` drops whatever bwrap itself inherited; the job sees exactly `env`.
 */
export function bwrapOptions(mounts: SandboxMounts, cwd: string, env: Record<string, string>): string[] {
  const args = [
    '--die-with-parent',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
  ];
  for (const dir of SYSTEM_DIRS) {
    if (!existsSync(dir)) continue;
    if (lstatSync(dir).isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
    else args.push('--ro-bind', dir, dir);
  }
  // systemd-resolved hosts link /etc/resolv.conf into /run, which is not in the sandbox: bring the one file
  const resolv = resolvConfTarget();
  if (resolv) args.push('--ro-bind', resolv, resolv);
  if (mounts.passwd) args.push('--ro-bind', mounts.passwd, '/etc/passwd');
  args.push('--proc', '/proc', '--dev', '/dev', '--bind', mounts.tmpDir, '/tmp', '--dir', '/var/tmp');
  for (const b of mounts.binds) args.push('--bind', b.host, b.path);
  args.push('--bind', mounts.taskDir, mounts.taskDir);
  for (const p of mounts.readOnly) args.push('--ro-bind', p, p);
  args.push('--clearenv');
  for (const [name, value] of Object.entries(env)) {
    if (name && !name.includes('=') && !name.includes('\0'))
      args.push('--setenv', name, value.replace(/\0/g, ''));
  }
  args.push('--chdir', cwd);
  return args;
}

/** the fd number bwrap reads its options from (see bwrapOptions) */
export const BWRAP_ARGS_FD = 3;
