// `checkout` for Docker environments: the repository is cloned on the agent host (CircleCI's
// checkout script, ../steps.ts, run by the host's git into a temporary directory under the agent's
// work root) and the tree, `.git` included, is written into the container with
// Environment.writeTar, so images without git (busybox) can check out too.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { TaskSpec } from '../../scheduler/protocol.js';
import type { Environment } from '../executor.js';
import { checkoutScript } from '../steps.js';
import { execCollect } from './artifacts.js';
import type { StepResult } from './context.js';

export interface CheckoutOptions {
  /** where the temporary clone goes (the agent's work root); the system temp directory without it */
  workRoot?: string;
  /** abort = cancel: the clone is stopped */
  signal?: AbortSignal;
}

/** Checks out spec.checkout at `dir` (a path inside the environment, '~' expanded). */
export async function checkoutInto(
  environment: Environment,
  spec: TaskSpec,
  dir: string,
  print: (text: string) => void,
  opts: CheckoutOptions = {},
): Promise<StepResult> {
  const probe = await execCollect(environment, environment.jobEnvironment, [
    '/bin/sh',
    '-c',
    'if [ -e "$0/.git" ]; then echo git; elif [ -n "$(ls -A "$0" 2>/dev/null)" ]; then echo full; else echo empty; fi',
    dir,
  ]);
  const state = probe.out.trim();
  if (!probe.ok) throw new Error(`cannot look at ${dir} in the container: ${probe.err.trim()}`);
  if (state === 'full') {
    print(`Directory (${dir}) you are trying to checkout to is not empty and not a git repository\n`);
    return { status: 'failed', exitCode: 1 };
  }
  if (state === 'git') print(`Updating the existing repository in ${dir}\n`);

  const root = opts.workRoot ?? tmpdir();
  await mkdir(root, { recursive: true });
  const work = await mkdtemp(path.join(root, `${spec.taskId}-checkout-`));
  try {
    const repo = path.join(work, 'repo');
    const script = path.join(work, 'checkout.sh');
    await writeFile(script, checkoutScript(spec.checkout, repo), { mode: 0o700 });
    const clone = await runOnHost(['/bin/sh', script], work, print, opts.signal);
    if (clone !== 0) {
      if (opts.signal?.aborted) return { status: 'canceled', exitCode: null };
      print(`\nExited with code exit status ${clone ?? 1}\n`);
      return { status: 'failed', exitCode: clone };
    }
    print(`Copying the checkout into ${dir}\n`);
    const packer = spawn('tar', ['-C', repo, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const packed = exitOf(packer, 'tar');
    packed.catch(() => undefined); // awaited below, after the copy; this only keeps an early failure from going unhandled meanwhile
    try {
      await environment.writeTar(dir, packer.stdout as Readable);
    } finally {
      if (packer.exitCode === null) packer.kill('SIGKILL');
    }
    await packed;
    return { status: 'success', exitCode: 0 };
  } finally {
    await rm(work, { recursive: true, force: true, maxRetries: 2 });
  }
}

/** the environment git runs with on the host: never the agent's own (it may hold the server's secrets) */
function gitEnvironment(work: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? work,
    GIT_TERMINAL_PROMPT: '0',
  };
  // ssh clones use the agent host's ssh setup, as a CircleCI runner does
  for (const k of ['SSH_AUTH_SOCK', 'GIT_SSH_COMMAND', 'LANG']) {
    const v = process.env[k];
    if (v) env[k] = v;
  }
  return env;
}

async function runOnHost(
  argv: [string, ...string[]],
  cwd: string,
  print: (text: string) => void,
  signal: AbortSignal | undefined,
): Promise<number | null> {
  const [file, ...args] = argv;
  const child = spawn(file, args, { cwd, env: gitEnvironment(cwd), stdio: ['ignore', 'pipe', 'pipe'] });
  const onAbort = () => child.kill('SIGTERM');
  signal?.addEventListener('abort', onAbort);
  if (signal?.aborted) onAbort();
  child.stdout.setEncoding('utf8').on('data', (t: string) => print(t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => print(t));
  try {
    return await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve(code));
    });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function exitOf(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-2_000);
  });
  return new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${what} failed (exit ${code}): ${stderr.trim()}`)),
    );
  });
}
