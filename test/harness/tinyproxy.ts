// A real HTTP proxy for the proxy tests: Debian's tinyproxy with BasicAuth, on a free loopback port,
// in a temporary directory, stopped by its PID. Its log (LogLevel Info) records every request it
// serves: `Request (file descriptor N): GET http://… HTTP/1.1` or `CONNECT host:port HTTP/1.1`.
// tinyproxy answers a missing Proxy-Authorization with 407 and a wrong one with 401.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.js';
import { REQUIRE_ALL, hasCommand } from './parts.js';

/** True when tinyproxy is here; otherwise prints why the tests are skipped (or throws in CI). */
export function requireTinyproxy(what: string): boolean {
  if (hasCommand('tinyproxy')) return true;
  const line = `SKIP ${what}: needs tinyproxy (Debian's tinyproxy), which is not installed here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}

export interface TestTinyproxy {
  port: number;
  user: string;
  password: string;
  /** the proxy URL with these credentials (the right ones unless given) */
  url(credentials?: { user: string; password: string } | null): string;
  /** what tinyproxy has logged so far */
  log(): string;
  /** the request lines it has served (`GET http://… HTTP/1.1`, `CONNECT host:port HTTP/1.1`) */
  requests(): string[];
  stop(): Promise<void>;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts tinyproxy requiring `user`/`password` (BasicAuth) from 127.0.0.1 clients. */
export async function startTinyproxy(
  opts: { user?: string; password?: string } = {},
): Promise<TestTinyproxy> {
  const user = opts.user ?? 'torus';
  const password = opts.password ?? 'proxy-secret-1';
  const dir = mkdtempSync(join(tmpdir(), 'torus-tinyproxy-'));
  const port = await freePort();
  const logFile = join(dir, 'tinyproxy.log');
  writeFileSync(
    join(dir, 'tinyproxy.conf'),
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Allow 127.0.0.1',
      `BasicAuth ${user} ${password}`,
      'LogLevel Info',
      `LogFile "${logFile}"`,
      'MaxClients 50',
      'Timeout 30',
      '',
    ].join('\n'),
  );
  const child = spawn('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`tinyproxy exited (${child.exitCode}): ${stderr}`);
      return portOpen(port);
    }, 10_000);
  } catch (err) {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  return {
    port,
    user,
    password,
    url: (credentials) => {
      const c = credentials === undefined ? { user, password } : credentials;
      const auth = c ? `${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@` : '';
      return `http://${auth}127.0.0.1:${port}`;
    },
    log,
    requests: () => [...log().matchAll(/Request \(file descriptor \d+\): (.+)$/gm)].map((m) => m[1]!),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
