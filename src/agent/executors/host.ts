// The host executor: a task directory on the agent's machine (see ../layout.ts), every process run
// inside bubblewrap when the agent has it, or as a plain child process without.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from '../../ops/index.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import {
  ExecutorError,
  type Environment,
  type ExecHandle,
  type ExecRequest,
  type Executor,
  type HomeArchive,
} from '../executor.js';
import { buildJobEnvironment, createTaskLayout, DEFAULT_SANDBOX_PATH, type TaskLayout } from '../layout.js';
import { startStepProcess } from '../process.js';
import { BWRAP_ARGS_FD, bwrapOptions, detectSandbox, type SandboxMode } from '../sandbox.js';
import { localRepoPath } from '../steps.js';

export interface HostExecutorOptions {
  workRoot: string;
  sandbox: SandboxMode;
  logger?: Logger;
}

function executorLabel(spec: TaskSpec): string {
  const e = spec.executor;
  if (e.type === 'machine')
    return `machine${e.image ? ` (image ${e.image}, run on the host executor)` : ' (host executor)'}`;
  return `${e.type === 'none' ? 'self-hosted runner' : e.type} (host executor)`;
}

/** what a helper process's stdin or stdout is (a Writable: another process's stdin, handed over) */
type HelperIo = 'pipe' | 'ignore' | Writable;

let gnuTar: boolean | undefined;

/**
 * whether the host's tar is GNU tar 1.28 or later (what homeArchive runs: -P and
 * --keep-directory-symlink); the sandbox sees the host's /usr, so the same tar runs inside
 */
function hasGnuTar(): boolean {
  if (gnuTar === undefined) {
    const r = spawnSync('tar', ['--version'], { encoding: 'utf8' });
    const m = /^tar \(GNU tar\) (\d+)\.(\d+)/.exec(r.stdout ?? '');
    gnuTar = !!m && (Number(m[1]) > 1 || Number(m[2]) >= 28);
  }
  return gnuTar;
}

export class HostExecutor implements Executor {
  constructor(private readonly opts: HostExecutorOptions) {}

  async prepare(spec: TaskSpec, print: (text: string) => void): Promise<Environment> {
    let sandbox;
    let layout: TaskLayout;
    try {
      sandbox = detectSandbox(this.opts.sandbox);
      layout = await createTaskLayout(spec, this.opts.workRoot, sandbox.kind);
    } catch (err) {
      throw new ExecutorError(
        `Could not prepare the environment: ${(err as Error).message}`,
        'infrastructure_fail',
      );
    }
    // a local repository to clone from is visible (read-only) to the steps
    const local = localRepoPath(spec.checkout.repoUrl);
    if (local && existsSync(local)) layout.mounts.readOnly.push(local);
    print(
      [
        `Executor: ${executorLabel(spec)}`,
        `Resource class: ${spec.resourceClass}`,
        `Sandbox: ${sandbox.kind === 'bwrap' ? 'bubblewrap (system directories read-only, only the task directory writable)' : 'none'}`,
        ...(sandbox.warning ? [`Warning: ${sandbox.warning}`] : []),
        `Working directory: ${layout.workingDirectory}`,
        '',
      ].join('\n'),
    );
    return new HostEnvironment(layout, buildJobEnvironment(spec, layout), this.opts.logger);
  }
}

/** Removes the task directory; a job may have left read-only directories (Go's module cache does), so retry after chmod. */
async function removeTaskDir(root: string, logger: Logger | undefined): Promise<void> {
  try {
    await rm(root, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    // most likely permissions: make everything writable and try once more
    spawnSync('chmod', ['-R', 'u+rwX', root], { stdio: 'ignore' });
    await rm(root, { recursive: true, force: true }).catch((err: unknown) =>
      logger?.warn({ err: (err as Error).message, dir: root }, 'could not remove the task directory'),
    );
  }
}

export class HostEnvironment implements Environment {
  readonly kind = 'host';
  readonly homeDirectory: string;
  readonly workingDirectory: string;
  readonly taskDirectory: string;
  readonly homeArchive?: HomeArchive;
  readonly defaultShell = existsSync('/bin/bash') ? '/bin/bash -eo pipefail' : '/bin/sh -eo pipefail';

  constructor(
    readonly layout: TaskLayout,
    readonly jobEnvironment: Record<string, string>,
    private readonly logger?: Logger,
  ) {
    this.homeDirectory = layout.home;
    this.workingDirectory = layout.workingDirectory;
    this.taskDirectory = layout.root;
    if (hasGnuTar()) this.homeArchive = this.archive();
  }

  exec(req: ExecRequest): ExecHandle {
    const decoders = { out: new StringDecoder('utf8'), err: new StringDecoder('utf8') };
    const mkdirDone = mkdir(this.layout.toHost(req.cwd), { recursive: true });
    let proc: ReturnType<typeof startStepProcess> | undefined;
    let killed = false;
    const done = mkdirDone.then(
      async () => {
        if (killed) return { kind: 'killed' } as const;
        proc = startStepProcess({
          command: req.argv,
          cwd: req.cwd,
          env: req.env,
          layout: this.layout,
          noOutputTimeoutMs: req.noOutputTimeoutMs,
          onOutput: (stream, data) => {
            const text = decoders[stream].write(data);
            return text ? req.onOutput(stream, text) : undefined;
          },
        });
        const end = await proc.done;
        for (const s of ['out', 'err'] as const) {
          const rest = decoders[s].end();
          if (rest) await req.onOutput(s, rest);
        }
        return end;
      },
      (err: Error) => ({ kind: 'spawn_error', message: `cannot create ${req.cwd}: ${err.message}` }) as const,
    );
    return {
      done,
      kill: () => {
        killed = true;
        proc?.kill();
      },
    };
  }

  async writeFile(pathInside: string, content: string | Buffer, mode?: number): Promise<void> {
    const file = this.layout.toHost(pathInside);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content, mode === undefined ? undefined : { mode });
    if (mode !== undefined) await chmod(file, mode);
  }

  /**
   * a helper process inside the task's sandbox (or plain): `stdin`/`stdout` are 'pipe' (a stream
   * here), 'ignore', or another process's pipe handed over (see Environment.homeArchive)
   */
  private spawnInside(argv: string[], stdin: HelperIo, stdout: HelperIo, signal?: AbortSignal) {
    const sandboxed = this.layout.sandbox === 'bwrap';
    const [file, ...args] = (
      sandboxed ? ['bwrap', '--args', String(BWRAP_ARGS_FD), '--', ...argv] : argv
    ) as [string, ...string[]];
    const env = { ...this.jobEnvironment, PATH: this.jobEnvironment.PATH ?? DEFAULT_SANDBOX_PATH };
    const child = spawn(file, args, {
      cwd: sandboxed ? this.layout.root : this.layout.toHost(this.layout.home),
      env: sandboxed ? { PATH: DEFAULT_SANDBOX_PATH } : env,
      signal,
      stdio: [stdin, stdout, 'pipe', ...(sandboxed ? ['pipe' as const] : [])],
    });
    if (sandboxed) {
      const pipe = child.stdio[BWRAP_ARGS_FD] as Writable;
      pipe.on('error', () => undefined); // bwrap failed early: its exit status and stderr say why
      pipe.end(
        bwrapOptions(this.layout.mounts, this.layout.home, env)
          .map((a) => a + '\0')
          .join(''),
      );
    }
    let stderr = '';
    (child.stderr as Readable).on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4_000);
    });
    const exit = new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`${argv[0]} failed (exit ${code}): ${stderr.trim()}`)),
      );
    });
    return { child, exit };
  }

  readTar(baseDir: string, paths: string[]): Promise<NodeJS.ReadableStream> {
    const { child, exit } = this.spawnInside(
      ['tar', '-C', baseDir, '-cf', '-', '--', ...paths],
      'ignore',
      'pipe',
    );
    const out = new PassThrough();
    (child.stdout as Readable).pipe(out, { end: false });
    // 'close' comes after stdout has ended, so everything was passed on by then
    exit.then(
      () => out.end(),
      (err: Error) => out.destroy(err),
    );
    return Promise.resolve(out);
  }

  async writeTar(dir: string, tar: NodeJS.ReadableStream): Promise<void> {
    const { child, exit } = this.spawnInside(
      ['/bin/sh', '-c', 'mkdir -p "$0" && exec tar -C "$0" -xf -', dir],
      'pipe',
      'ignore',
    );
    const stdin = child.stdin as Writable;
    stdin.on('error', () => undefined); // tar died early: exit says why
    tar.on('error', (err: Error) => stdin.destroy(err));
    tar.pipe(stdin);
    await exit;
  }

  /**
   * A directory holding only `~`, a symlink to the home directory: GNU tar run there names what it
   * archives through it `~/…` and extracts `~/…` entries into the home of this task.
   */
  private async archiveRoot(): Promise<string> {
    const root = path.join(this.layout.root, 'archive-root');
    await mkdir(this.layout.toHost(root), { recursive: true });
    await symlink(this.homeDirectory, path.join(this.layout.toHost(root), '~')).catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      },
    );
    return root;
  }

  private archive(): HomeArchive {
    const home = this.homeDirectory;
    return {
      create: async (paths, into, signal) => {
        const names = paths.map((p) => (p.startsWith(home + '/') ? `~/${p.slice(home.length + 1)}` : p));
        let exit: Promise<void>;
        try {
          // -P: absolute names kept as they are (GNU tar strips the leading '/' otherwise)
          const root = await this.archiveRoot();
          exit = this.spawnInside(
            ['tar', '-C', root, '-P', '-cf', '-', '--', ...names],
            'ignore',
            into,
            signal,
          ).exit;
        } finally {
          into.destroy(); // tar holds its own copy of the pipe: the reader sees the end when tar exits
        }
        await exit;
      },
      extract: async (signal) => {
        const root = await this.archiveRoot();
        // -P: absolute names extracted where they say; the `~` symlink is followed, not replaced.
        // No -v: listing every name costs tar a fifth of its time on a tree of small files.
        const { child, exit } = this.spawnInside(
          ['tar', '-C', root, '-P', '--keep-directory-symlink', '-xf', '-'],
          'pipe',
          'ignore',
          signal,
        );
        const input = child.stdin as Writable;
        input.on('error', () => undefined); // tar died early: its exit says why
        return { input, done: exit };
      },
    };
  }

  async dispose(): Promise<void> {
    await removeTaskDir(this.layout.root, this.logger);
  }
}
