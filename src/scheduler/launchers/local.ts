// The local launcher: the embedded server's own agents, as child processes running
// `torus agent --local`. They talk to the server over HTTP like any agent; their environment is built
// from scratch (never the server's, which holds its secrets); a crashed one is restarted with backoff.
import { spawn, type ChildProcess } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../ops/index.js';
import { NODE_FLAGS } from '../../ops/node-flags.js';

export const TORUS_ENTRY = fileURLToPath(new URL('../../../bin/torus.js', import.meta.url));
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** A child that ran this long before exiting is "healthy": its next restart starts from the shortest delay. */
const HEALTHY_RUN_MS = 60_000;
const MAX_RESTART_DELAY_MS = 30_000;

export interface LocalAgentsOptions {
  count: number;
  serverUrl: string;
  token: string;
  /** resource classes or patterns each agent claims from ('machine:*') */
  classes: string[];
  sandbox: 'auto' | 'bwrap' | 'none' | (string & {});
  logger: Logger;
  /** each agent works in `<workRoot>/agent-<n>` (--work-dir) */
  workRoot?: string;
  /** the script run with node; default `<repo>/bin/torus.js` (tests use a stand-in) */
  entry?: string;
  /** the agents' log level (TORUS_LOG_LEVEL in their environment); default 'info' */
  logLevel?: string;
  /** first restart delay, doubled per crash in a row up to 30 s; default 1000 */
  restartDelayMs?: number;
  /** how long stop() waits after SIGTERM before SIGKILL; default 30 s */
  stopTimeoutMs?: number;
}

export interface LocalAgents {
  /** SIGTERM to every agent, then waits for them (SIGKILL after stopTimeoutMs). No restarts after. */
  stop(): Promise<void>;
  /** current child PIDs (diagnostics, tests) */
  pids(): number[];
}

interface Slot {
  n: number;
  child?: ChildProcess;
  exited?: Promise<void>;
  startedAt: number;
  crashes: number;
  restartTimer?: NodeJS.Timeout;
}

export function agentArgs(opts: LocalAgentsOptions, n: number): string[] {
  const args = ['agent', '--server', opts.serverUrl];
  for (const c of opts.classes) args.push('--resource-class', c);
  args.push('--sandbox', opts.sandbox, '--name', `local-${n}`);
  if (opts.workRoot) args.push('--work-dir', join(opts.workRoot, `agent-${n}`));
  args.push('--local');
  return args;
}

export function agentEnv(opts: LocalAgentsOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH || DEFAULT_PATH,
    HOME: process.env.HOME || homedir(),
    LANG: process.env.LANG || 'C.UTF-8',
    TORUS_AGENT_TOKEN: opts.token,
  };
  if (opts.logLevel) env.TORUS_LOG_LEVEL = opts.logLevel;
  // the Docker engine the agents' docker executor drives
  if (process.env.DOCKER_HOST) env.DOCKER_HOST = process.env.DOCKER_HOST;
  for (const k of ['TORUS_AGENT_REMOTE_DOCKER', 'TORUS_AGENT_REMOTE_DOCKER_DIR', 'TORUS_AGENT_CACHE_FILES'])
    if (process.env[k]) env[k] = process.env[k];
  return env;
}

export function startLocalAgents(opts: LocalAgentsOptions): LocalAgents {
  const entry = opts.entry ?? TORUS_ENTRY;
  const baseDelay = opts.restartDelayMs ?? 1_000;
  const log = opts.logger.child({ component: 'local-agents' });
  let stopping = false;
  const slots: Slot[] = Array.from({ length: opts.count }, (_, n) => ({ n, startedAt: 0, crashes: 0 }));

  const launch = (slot: Slot): void => {
    slot.restartTimer = undefined;
    if (stopping) return;
    const child = spawn(process.execPath, [...NODE_FLAGS, entry, ...agentArgs(opts, slot.n)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: agentEnv(opts),
    });
    slot.child = child;
    slot.startedAt = Date.now();
    slot.exited = new Promise<void>((resolve) => {
      let gone = false;
      const onGone = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (gone) return;
        gone = true;
        slot.child = undefined;
        resolve();
        if (stopping) return;
        slot.crashes = Date.now() - slot.startedAt >= HEALTHY_RUN_MS ? 1 : slot.crashes + 1;
        const delay = Math.min(MAX_RESTART_DELAY_MS, baseDelay * 2 ** (slot.crashes - 1));
        log.warn({ agent: slot.n, code, signal, restartInMs: delay }, 'local agent exited; restarting');
        slot.restartTimer = setTimeout(() => launch(slot), delay);
      };
      child.once('exit', onGone);
      child.on('error', (err) => {
        log.error({ err, agent: slot.n }, 'local agent process error');
        // a process that never started emits no 'exit'
        if (child.pid === undefined) onGone(null, null);
      });
    });
    log.info({ agent: slot.n, pid: child.pid }, 'local agent started');
  };

  for (const slot of slots) launch(slot);

  return {
    pids: () => slots.flatMap((s) => (s.child?.pid ? [s.child.pid] : [])),
    async stop() {
      stopping = true;
      const stopTimeoutMs = opts.stopTimeoutMs ?? 30_000;
      await Promise.all(
        slots.map(async (slot) => {
          if (slot.restartTimer) clearTimeout(slot.restartTimer);
          const child = slot.child;
          if (!child || !slot.exited) return;
          child.kill('SIGTERM');
          const killer = setTimeout(() => {
            log.warn({ agent: slot.n, pid: child.pid }, 'local agent did not stop after SIGTERM; killing');
            child.kill('SIGKILL');
          }, stopTimeoutMs);
          await slot.exited;
          clearTimeout(killer);
        }),
      );
    },
  };
}
