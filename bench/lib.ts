// Helpers shared by the benchmarks: percentiles, an in-process server on a temp data dir, and git
// repositories made on the fly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSettings } from '../src/ops/index.js';
import { startServer, type RunningServer } from '../src/cli/server.js';
import { makeGitRepo } from '../test/harness/torus.js';

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export function fmt(ms: number): string {
  return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

export async function withServer<T>(
  env: Record<string, string>,
  fn: (server: RunningServer) => Promise<T>,
): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'torus-bench-'));
  const settings = loadSettings({
    TORUS_DATA_DIR: dataDir,
    TORUS_PORT: '0',
    TORUS_LOG_LEVEL: 'warn',
    TORUS_ADMIN_TOKEN: 'bench',
    ...env,
  });
  const server = await startServer(settings);
  try {
    return await fn(server);
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export { makeGitRepo };
