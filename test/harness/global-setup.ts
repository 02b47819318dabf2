// Vitest global setup: starts the real parts that many test files share (PostgreSQL 15, dockerd, podman),
// once per run, on a free loopback port / socket in a temporary directory, and stops them by PID at the end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.js';
import { startDockerd, type TestDockerd } from './docker.js';
import { startPodman, type TestPodman } from './podman.js';
import { hasCommand } from './parts.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';
let postgres: ChildProcess | undefined;
let pgDir: string | undefined;

async function startPostgres(): Promise<string | undefined> {
  if (process.env.TORUS_TEST_DATABASE_URL) return process.env.TORUS_TEST_DATABASE_URL;
  if (!existsSync(`${PG_BIN}/postgres`)) return undefined;
  pgDir = mkdtempSync(join(tmpdir(), 'torus-pg-'));
  chmodSync(pgDir, 0o777);
  const asPostgres = process.getuid?.() === 0;
  const run = (cmd: string) =>
    asPostgres
      ? spawnSync('su', ['postgres', '-c', cmd], { encoding: 'utf8' })
      : spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  const init = run(`${PG_BIN}/initdb -D ${pgDir}/data -U torus --auth=trust -E UTF8 -N >/dev/null`);
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  const cmd = `exec ${PG_BIN}/postgres -D ${pgDir}/data -p ${port} -k ${pgDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300`;
  postgres = asPostgres
    ? spawn('su', ['postgres', '-c', cmd], { stdio: 'ignore' })
    : spawn('sh', ['-c', cmd], { stdio: 'ignore' });
  const url = `postgres://torus@127.0.0.1:${port}/postgres`;
  const pg = (await import('pg')).default;
  await waitFor(async () => {
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      await c.end();
      return true;
    } catch {
      return false; // not accepting connections yet; waitFor retries
    }
  }, 20_000);
  return url;
}

let dockerd: TestDockerd | undefined;

/** one dockerd for the run (root only); tests find it as TORUS_TEST_DOCKER_HOST (and DOCKER_HOST) */
async function startDocker(): Promise<void> {
  if (process.env.TORUS_TEST_DOCKER_HOST) return;
  if (process.getuid?.() !== 0 || !hasCommand('dockerd') || !hasCommand('docker')) return;
  try {
    dockerd = await startDockerd();
  } catch (err) {
    console.warn(`dockerd could not start; Docker tests will be skipped: ${(err as Error).message}`);
    return;
  }
  process.env.TORUS_TEST_DOCKER_HOST = dockerd.host;
  process.env.DOCKER_HOST = dockerd.host;
  process.env.TORUS_TEST_REGISTRY_PORT = String(dockerd.registryPort);
}

let podman: TestPodman | undefined;

/** one podman Docker API service for the run (root only); tests find it as TORUS_TEST_PODMAN_HOST */
async function startPodmanService(): Promise<void> {
  if (process.env.TORUS_TEST_PODMAN_HOST) return;
  if (process.getuid?.() !== 0 || !hasCommand('podman') || !hasCommand('runc')) return;
  try {
    podman = await startPodman();
  } catch (err) {
    console.warn(`podman could not start; podman tests will be skipped: ${(err as Error).message}`);
    return;
  }
  process.env.TORUS_TEST_PODMAN_HOST = podman.host;
}

export async function setup(): Promise<void> {
  const [url] = await Promise.all([startPostgres(), startDocker(), startPodmanService()]);
  if (url) process.env.TORUS_TEST_DATABASE_URL = url;
}

export async function teardown(): Promise<void> {
  await Promise.all([dockerd?.stop(), podman?.stop()]);
  if (postgres?.pid) {
    // `su` forwards SIGINT to postgres: a fast shutdown.
    postgres.kill('SIGINT');
    await new Promise((r) => postgres?.once('exit', r));
  }
  if (pgDir) rmSync(pgDir, { recursive: true, force: true });
}
