// SSH for host-executor jobs, set up as CircleCI's machine jobs have it: an ssh-agent per task
// (SSH_AUTH_SOCK in every step; add_ssh_keys adds its keys to it), so `ssh host` and
// `git clone git@host:…` use the project's keys without `-i`; and, in the sandbox, an /etc/passwd
// whose home for the job's user is the job's HOME, so OpenSSH (which takes `~` from the passwd
// entry, not from $HOME) reads the job's ~/.ssh/config and ~/.ssh/known_hosts.
//
// The agent is `ssh-agent -D` (foreground: this process owns and reaps it) with its socket in the
// task directory, which the sandbox shows at the same path. It is stopped when the task ends,
// whatever the outcome; if the agent process itself dies first, the kernel stops it (a parent-death
// signal set through util-linux's setpriv, with no_new_privs so that Debian's setgid ssh-agent keeps
// it), and an exiting agent process stops the ones still running.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../ops/index.js';
import type { TaskLayout } from './layout.js';
import { writeSandboxPasswd } from './sandbox.js';

/** the longest socket path a client can connect to (sun_path: 108 bytes on Linux, 104 on the BSDs) */
const MAX_SOCKET_PATH_BYTES = 100;
const AGENT_START_TIMEOUT_MS = 5_000;
/** after SIGTERM, how long the ssh-agent gets before SIGKILL */
const AGENT_STOP_GRACE_MS = 2_000;
const SOCKET_NAME = 'ssh-agent.sock';

export interface JobSsh {
  /** variables for every step: SSH_AUTH_SOCK when an agent runs */
  env: Record<string, string>;
  /** lines for the job's "Spin up environment" output */
  notes: string[];
  /** stops the agent (its socket goes with it); safe to call more than once */
  stop(): Promise<void>;
}

/** ssh-agents still running, stopped if this process exits before their tasks end */
const liveAgents = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveAgents) c.kill('SIGTERM');
    });
  }
  liveAgents.add(child);
  child.once('exit', () => liveAgents.delete(child));
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const file = path.join(dir, command);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory: the next one
    }
  }
  return undefined;
}

/**
 * Where the socket goes: the task directory (same path inside the sandbox and out); the task's /tmp
 * inside the sandbox when the task directory's path is too long for a socket; none when neither fits.
 */
function socketPlace(layout: TaskLayout): { host: string; job: string } | undefined {
  const fits = (p: string) => Buffer.byteLength(p) <= MAX_SOCKET_PATH_BYTES;
  const inRoot = path.join(layout.root, SOCKET_NAME);
  if (fits(inRoot)) return { host: inRoot, job: inRoot };
  if (layout.sandbox === 'bwrap')
    return { host: path.join(layout.tmp, SOCKET_NAME), job: `/tmp/${SOCKET_NAME}` };
  return undefined;
}

const exitOf = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

/** starts `ssh-agent -D` listening at `place.host`; resolves once the socket accepts connections */
async function startAgent(sshAgent: string, place: { host: string }): Promise<ChildProcess> {
  const setpriv = onPath('setpriv');
  // ssh-agent binds the socket relative to its working directory: the host path's length does not matter
  const agentArgv = [sshAgent, '-D', '-a', path.basename(place.host)];
  const [file, ...args] = (
    setpriv ? [setpriv, '--no-new-privs', '--pdeathsig', 'TERM', '--', ...agentArgv] : agentArgv
  ) as [string, ...string[]];
  const child = spawn(file, args, {
    cwd: path.dirname(place.host),
    // nothing of the agent process's own environment (it may hold the server's secrets)
    env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let out = '';
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2_000)));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`it did not start within ${AGENT_START_TIMEOUT_MS} ms`)),
        AGENT_START_TIMEOUT_MS,
      );
      const settle = (error?: Error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      // `-D` prints the shell lines of `eval $(ssh-agent)` once the socket listens
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('Agent pid')) settle();
      });
      child.once('error', (e) => settle(e));
      child.once('exit', (code, signal) =>
        settle(new Error(`it exited (${signal ?? `exit ${code}`}): ${err.trim() || 'no message'}`)),
      );
    });
  } catch (e) {
    child.kill('SIGKILL');
    await exitOf(child);
    throw e;
  }
  child.stdout?.resume();
  return child;
}

async function stopAgent(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM'); // ssh-agent removes its socket on SIGTERM
  const exited = exitOf(child);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), AGENT_STOP_GRACE_MS);
  });
  if ((await Promise.race([exited, late])) === 'late') child.kill('SIGKILL');
  clearTimeout(timer);
  await exited;
}

/**
 * Sets up SSH for a host-executor task: the sandbox's /etc/passwd (see writeSandboxPasswd), and an
 * ssh-agent unless the job names its own (SSH_AUTH_SOCK in its environment) or the host has none.
 */
export async function prepareHostSsh(
  layout: TaskLayout,
  jobEnvironment: Record<string, string>,
  logger?: Logger,
): Promise<JobSsh> {
  const notes: string[] = [];
  const none: JobSsh = { env: {}, notes, stop: () => Promise.resolve() };
  if (layout.sandbox === 'bwrap') {
    const file = path.join(layout.root, 'passwd');
    try {
      if (await writeSandboxPasswd(file, layout.home)) layout.mounts.passwd = file;
    } catch (err) {
      // the job still runs, with the host's passwd: ssh reads its config from the agent user's home then
      notes.push(`Warning: could not write the sandbox's /etc/passwd: ${(err as Error).message}`);
    }
  }
  if (jobEnvironment.SSH_AUTH_SOCK) return none;
  const sshAgent = onPath('ssh-agent');
  if (!sshAgent) {
    notes.push(
      "SSH agent: none (this host has no ssh-agent; install OpenSSH's client): add_ssh_keys installs keys in ~/.ssh only",
    );
    return none;
  }
  const place = socketPlace(layout);
  if (!place) {
    notes.push(
      `SSH agent: none (the task directory's path is too long for a Unix socket: use a shorter --work-dir): add_ssh_keys installs keys in ~/.ssh only`,
    );
    return none;
  }
  let child: ChildProcess;
  try {
    child = await startAgent(sshAgent, place);
  } catch (err) {
    logger?.warn({ err: (err as Error).message }, 'could not start the job ssh-agent');
    notes.push(`Warning: the job's ssh-agent could not start: ${(err as Error).message}`);
    return none;
  }
  notes.push(`SSH agent: SSH_AUTH_SOCK=${place.job} (add_ssh_keys adds the project's keys to it)`);
  return { env: { SSH_AUTH_SOCK: place.job }, notes, stop: () => stopAgent(child) };
}
