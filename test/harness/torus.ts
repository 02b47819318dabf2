// Starts real Torus processes for end-to-end tests: `torus server` and `torus agent` as child
// processes of the test, on free loopback ports in temporary data directories, stopped by PID;
// and one-shot `torus …` commands run to their end as a user runs them.
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './net.js';
import { NODE_FLAGS } from '../../src/ops/node-flags.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const TORUS_BIN = join(REPO_ROOT, 'bin/torus.js');

export interface TorusProcess {
  proc: ChildProcess;
  url: string;
  token: string;
  dataDir: string;
  /** everything the process printed so far (stdout and stderr) */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface StartOptions {
  dataDir?: string;
  port?: number;
  localAgents?: number;
  env?: Record<string, string>;
  args?: string[];
  /** resolve once this text appears in the output (default: the "serving at" line) */
  readyText?: string | RegExp;
}

function track(proc: ChildProcess): () => string {
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return () => out;
}

function killer(proc: ChildProcess) {
  return async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await exited;
  };
}

/** What a one-shot `torus` command left: its exit code and what it printed. */
export interface TorusRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `torus <args>` in a child process with only PATH, HOME and `env` in its environment, and
 * resolves when it ends (never rejects: a failure is a non-zero `code`, 1 when it was killed, e.g.
 * after `timeoutMs`).
 */
export function runTorus(args: string[], env: Record<string, string>, timeoutMs: number): Promise<TorusRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [TORUS_BIN, ...args],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
        timeout: timeoutMs,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

export const ADMIN_TOKEN = 'e2e0000000000000000000000000000000000000';

export async function startTorusServer(opts: StartOptions = {}): Promise<TorusProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'torus-e2e-'));
  const port = opts.port ?? (await freePort());
  const proc = spawn(process.execPath, [...NODE_FLAGS, TORUS_BIN, 'server', ...(opts.args ?? [])], {
    cwd: dataDir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      TORUS_DATA_DIR: dataDir,
      TORUS_PORT: String(port),
      TORUS_ADMIN_TOKEN: ADMIN_TOKEN,
      TORUS_LOCAL_AGENTS: String(opts.localAgents ?? 2),
      TORUS_LOG_LEVEL: 'warn',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = track(proc);
  const ready = opts.readyText ?? 'is serving at';
  await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`torus server exited (${proc.exitCode}):\n${output()}`);
      const o = output();
      return typeof ready === 'string' ? o.includes(ready) : ready.test(o);
    },
    120_000,
    50,
  ).catch((err: Error) => {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}\n--- server output ---\n${output()}`);
  });
  return { proc, url: `http://127.0.0.1:${port}`, token: ADMIN_TOKEN, dataDir, output, kill: killer(proc) };
}

export async function startTorusAgent(
  serverUrl: string,
  agentToken: string,
  opts: { resourceClasses?: string[]; env?: Record<string, string> } = {},
): Promise<Omit<TorusProcess, 'token' | 'dataDir' | 'url'>> {
  const classes = opts.resourceClasses ?? ['machine:*'];
  const proc = spawn(
    process.execPath,
    [TORUS_BIN, 'agent', '--server', serverUrl, ...classes.flatMap((c) => ['--resource-class', c])],
    {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/root',
        TORUS_AGENT_TOKEN: agentToken,
        TORUS_LOG_LEVEL: 'warn',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return { proc, output: track(proc), kill: killer(proc) };
}

/** Makes a git repository with the given files committed on `main`; returns its path. */
export function makeGitRepo(
  files: Record<string, string>,
  dir = mkdtempSync(join(tmpdir(), 'torus-repo-')),
): string {
  for (const [name, body] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), body);
  }
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=Test', '-c', 'user.email=test@torus.invalid', ...args], {
      cwd: dir,
      stdio: 'pipe',
    });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'initial');
  return dir;
}

/** A JSON API call with the admin token. */
export async function api<T = unknown>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  token = ADMIN_TOKEN,
): Promise<{ status: number; body: T }> {
  const res = await fetch(base + path, {
    method,
    headers: { 'circle-token': token, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** A job's whole output, every step of every parallel run, through the v1.1 output URLs: `## <step> [<run>]` then its text. */
export async function jobOutput(server: TorusProcess, slug: string, jobNumber: number): Promise<string> {
  const v1 = await api<{
    steps: Array<{ name: string; actions: Array<{ output_url: string; index: number }> }>;
  }>(server.url, 'GET', `/api/v1.1/project/${slug}/${jobNumber}`);
  const texts: string[] = [];
  for (const s of v1.body.steps)
    for (const a of s.actions) {
      const msgs = await fetch(a.output_url, { headers: { 'circle-token': server.token } }).then(
        (r) => r.json() as Promise<Array<{ message: string }>>,
      );
      texts.push(`## ${s.name} [${a.index}]\n` + msgs.map((m) => m.message).join(''));
    }
  return texts.join('\n');
}
