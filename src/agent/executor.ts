// The executor interface: how runTask gets a prepared task environment (a task directory on the
// host, or a set of containers) and runs processes, files and tar streams inside it. Implementations
// live in ./executors/ (host, docker).
import type { TaskSpec } from '../scheduler/protocol.js';
import type { Writable } from 'node:stream';

export interface ExecRequest {
  /** run inside the environment (e.g. ['/bin/sh', '/tmp/.torus/steps/3.sh']) */
  argv: string[];
  /** path inside the environment; created when missing */
  cwd: string;
  /** the whole environment of the process (start from Environment.jobEnvironment) */
  env: Record<string, string>;
  noOutputTimeoutMs?: number;
  /**
   * Receives the process's output as it arrives. A returned promise is backpressure: the executor
   * reads no more of that stream until it settles (the process blocks on a full pipe meanwhile).
   */
  onOutput(stream: 'out' | 'err', data: string): void | Promise<void>;
}

/** as src/agent/process.ts ProcessEnd */
export type ExecEnd =
  | { kind: 'exited'; exitCode: number }
  | { kind: 'timedout' }
  | { kind: 'killed' }
  | { kind: 'spawn_error'; message: string };

export interface ExecHandle {
  done: Promise<ExecEnd>;
  /** stops the process and everything it started (SIGTERM, SIGKILL after a grace period) */
  kill(): void;
}

/** One prepared task environment (a bwrap'd task dir on the host, or a set of containers). */
export interface Environment {
  readonly kind: 'host' | 'docker';
  /** what `~` means inside */
  readonly homeDirectory: string;
  /** the job's working_directory, '~' expanded */
  readonly workingDirectory: string;
  /** a directory inside owned by the task (step scripts, staged files); gone with the environment */
  readonly taskDirectory: string;
  /** the job's environment for every step: spec.environment plus HOME, BASH_ENV, CIRCLE_WORKING_DIRECTORY… */
  readonly jobEnvironment: Record<string, string>;
  /** CircleCI's default shell for this environment: '/bin/bash -eo pipefail' where bash exists, else '/bin/sh -eo pipefail' */
  readonly defaultShell: string;
  exec(req: ExecRequest): ExecHandle;
  /** writes a file (parent directories created) */
  writeFile(pathInside: string, content: string | Buffer, mode?: number): Promise<void>;
  /**
   * an uncompressed tar stream of `paths` read inside the environment. Relative paths are relative
   * to baseDir and keep their names; absolute ones are named without the leading '/' (GNU tar's
   * `tar -C baseDir -c paths…`). A path that cannot be read makes the stream error.
   */
  readTar(baseDir: string, paths: string[]): Promise<NodeJS.ReadableStream>;
  /** unpacks an uncompressed tar stream at dir inside the environment (dir created) */
  writeTar(dir: string, tar: NodeJS.ReadableStream): Promise<void>;
  /**
   * Optional: archives in the cache layout written and read by the environment's own tar joined to
   * another process (the compressor) by an OS pipe, so the bytes never pass through the agent.
   * Present only where that tar can do it (the host executor with GNU tar).
   */
  readonly homeArchive?: HomeArchive;
  /** removes everything the task created (containers, volumes, networks, task dir), whatever happened */
  dispose(): Promise<void>;
}

/**
 * The cache archive layout: a path under the home directory is named `~/<path relative to home>`,
 * any other path by its absolute name (`/opt/x`); extracting puts `~/…` entries under the home of
 * the environment and absolute ones at their path.
 */
export interface HomeArchive {
  /**
   * `tar -c` of `paths` (absolute, as the job sees them) with the archive written to `into`, the
   * stdin pipe of a process the caller spawned; `into` is closed here once tar holds it. Resolves
   * when tar has exited, rejects with its message when it failed (a path it could not read).
   */
  create(paths: string[], into: Writable, signal?: AbortSignal): Promise<void>;
  /**
   * Starts `tar -x`: `input` is its stdin pipe, for the caller to hand to the process that writes
   * the archive (and then close); `done` resolves once tar has finished, or rejects with tar's
   * message (a corrupt or truncated archive).
   */
  extract(signal?: AbortSignal): Promise<{ input: Writable; done: Promise<void> }>;
}

export interface Executor {
  /** lines printed under "Spin up environment" go to `print`; throws ExecutorError on infrastructure failure */
  prepare(spec: TaskSpec, print: (text: string) => void, signal: AbortSignal): Promise<Environment>;
}

/** The environment could not be prepared: `status` is the task's outcome, `message` what the user reads. */
export class ExecutorError extends Error {
  constructor(
    message: string,
    readonly status: 'failed' | 'infrastructure_fail',
  ) {
    super(message);
    this.name = 'ExecutorError';
  }
}

/** the tilde expansion and relative-path rule every executor uses for paths written in config */
export function resolveJobPath(written: string | undefined, home: string, base?: string): string {
  const w = (written ?? '').trim();
  if (w === '' || w === '.') return base ?? home;
  if (w === '~') return home;
  if (w.startsWith('~/')) return joinPosix(home, w.slice(2));
  if (w.startsWith('/')) return normalizePosix(w);
  return joinPosix(base ?? home, w);
}

function joinPosix(a: string, b: string): string {
  return normalizePosix(`${a}/${b}`);
}

function normalizePosix(p: string): string {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return '/' + out.join('/');
}
