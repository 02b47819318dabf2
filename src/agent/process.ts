// Running one step's process: in its own process group (so a cancel or timeout kills everything it
// started), inside bubblewrap when the task has the sandbox, with a no-output watchdog.
import { spawn } from 'node:child_process';
import type { TaskLayout } from './layout.js';
import type { Readable, Writable } from 'node:stream';
import { DEFAULT_SANDBOX_PATH } from './layout.js';
import { BWRAP_ARGS_FD, bwrapOptions } from './sandbox.js';

/** after SIGTERM, how long a step's processes get before SIGKILL */
const KILL_GRACE_MS = 1_000;
/** after the step's main process exits, how long its output pipes may stay open (a stray child holding them) */
const PIPE_DRAIN_MS = 300;

export type ProcessEnd =
  | { kind: 'exited'; exitCode: number }
  | { kind: 'timedout' }
  | { kind: 'killed' }
  | { kind: 'spawn_error'; message: string };

export interface StepProcess {
  done: Promise<ProcessEnd>;
  /** SIGTERM to the whole process group, SIGKILL after a grace period */
  kill(): void;
}

export interface StartOptions {
  command: string[];
  /** as the job sees it */
  cwd: string;
  env: Record<string, string>;
  layout: TaskLayout;
  /** extra host paths visible read-only in the sandbox */
  readOnly?: string[];
  noOutputTimeoutMs?: number;
  /** a returned promise pauses that stream until it settles (backpressure) */
  onOutput(stream: 'out' | 'err', data: Buffer): void | Promise<void>;
}

/**
 * Process groups of steps still running. Without the sandbox nothing ties a step's processes to the
 * agent's life (bubblewrap's --die-with-parent does with it), so an exiting agent kills them itself.
 */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const g of liveGroups) signalGroup(g, 'SIGKILL');
    });
  }
  liveGroups.add(pid);
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch (err) {
    // ESRCH: the group is already gone, which is what we wanted
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export function startStepProcess(opts: StartOptions): StepProcess {
  const { layout } = opts;
  const sandboxed = layout.sandbox === 'bwrap';
  const [file, ...args] = (
    sandboxed ? ['bwrap', '--args', String(BWRAP_ARGS_FD), '--', ...opts.command] : opts.command
  ) as [string, ...string[]];
  const child = spawn(file, args, {
    cwd: sandboxed ? layout.root : layout.toHost(opts.cwd),
    // inside bwrap the job's environment comes from --clearenv/--setenv; bwrap itself needs nothing of ours
    env: sandboxed ? { PATH: DEFAULT_SANDBOX_PATH } : opts.env,
    detached: true, // own process group: kill(-pid) reaches every process the step started
    stdio: sandboxed ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) trackGroup(child.pid);
  // both are pipes (stdio above); the union of stdio shapes hides that from the types
  const stdout = child.stdout as Readable;
  const stderr = child.stderr as Readable;
  if (sandboxed) {
    const options = bwrapOptions(
      { ...layout.mounts, readOnly: [...layout.mounts.readOnly, ...(opts.readOnly ?? [])] },
      opts.cwd,
      opts.env,
    );
    const pipe = child.stdio[BWRAP_ARGS_FD] as Writable;
    // EPIPE when bwrap failed before reading its options: its exit status and stderr tell the story
    pipe.on('error', () => undefined);
    pipe.end(options.map((a) => a + '\0').join(''));
  }

  let ending: 'timedout' | 'killed' | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  const kill = (why: 'timedout' | 'killed') => {
    if (ending) return;
    ending = why;
    signalGroup(child.pid, 'SIGTERM');
    killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS);
  };
  const armWatchdog = () => {
    if (!opts.noOutputTimeoutMs) return;
    // refresh(): a read of a loud step restarts the same timer rather than making a new one
    if (watchdog) watchdog.refresh();
    else watchdog = setTimeout(() => kill('timedout'), opts.noOutputTimeoutMs);
  };
  armWatchdog();
  for (const [name, stream] of [
    ['out', stdout],
    ['err', stderr],
  ] as const) {
    stream.on('data', (b: Buffer) => {
      armWatchdog();
      const wait = opts.onOutput(name, b);
      if (wait) {
        stream.pause();
        // the watchdog restarts on resume: time spent waiting on the server is not the step's silence
        void wait.finally(() => {
          armWatchdog();
          stream.resume();
        });
      }
    });
  }

  const done = new Promise<ProcessEnd>((resolve) => {
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    const finish = (end: ProcessEnd) => {
      if (settled) return;
      settled = true;
      if (watchdog) clearTimeout(watchdog);
      if (killTimer) clearTimeout(killTimer);
      // whatever the step left behind in its group does not outlive it
      signalGroup(child.pid, 'SIGKILL');
      if (child.pid !== undefined) liveGroups.delete(child.pid);
      resolve(end);
    };
    const fromExit = (): ProcessEnd => {
      if (ending) return { kind: ending };
      if (exit?.code !== null && exit?.code !== undefined) return { kind: 'exited', exitCode: exit.code };
      // killed by a signal nobody here sent: report it the way a shell does (128 + signal number)
      const signals: Record<string, number> = {
        SIGHUP: 1,
        SIGINT: 2,
        SIGQUIT: 3,
        SIGKILL: 9,
        SIGSEGV: 11,
        SIGPIPE: 13,
        SIGTERM: 15,
      };
      return { kind: 'exited', exitCode: 128 + (signals[exit?.signal ?? ''] ?? 0) };
    };
    child.once('error', (err) => finish({ kind: 'spawn_error', message: err.message }));
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      if (watchdog) clearTimeout(watchdog);
      setTimeout(() => {
        stdout.destroy();
        stderr.destroy();
        finish(fromExit());
      }, PIPE_DRAIN_MS);
    });
    child.once('close', () => {
      if (exit) finish(fromExit());
    });
  });

  return { done, kill: () => kill('killed') };
}
