// The local launcher: with a stand-in agent script (arguments, a from-scratch environment, an IPC
// channel, restart after a crash, SIGTERM on stop) and with the real `torus agent` claiming a task.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import Fastify from 'fastify';
import { waitFor } from '../../../test/harness/net.js';
import { openTestDatabase } from '../../../test/harness/db.js';
import { agentRoutes } from '../../api/agent-routes.js';
import { AGENT_API_PREFIX, createScheduler } from '../index.js';
import { enqueueJob, recordingHooks, testResources } from '../test-fixtures.js';
import { startLocalAgents, TORUS_ENTRY } from './local.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const STAND_IN = `
import { appendFileSync, existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
const dir = dirname(new URL(import.meta.url).pathname);
const log = (o) => appendFileSync(join(dir, 'log.jsonl'), JSON.stringify({ pid: process.pid, ...o }) + '\\n');
const name = process.argv[process.argv.indexOf('--name') + 1];
log({ event: 'start', argv: process.argv.slice(2), env: process.env, connected: process.connected });
const crash = join(dir, 'crash-' + name);
if (existsSync(crash)) { rmSync(crash); setTimeout(() => process.exit(3), 20); }
process.on('SIGTERM', () => { log({ event: 'sigterm' }); process.exit(0); });
setInterval(() => {}, 1000);
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('local agents launcher', () => {
  it('starts agents with their arguments and a clean environment, restarts a crashed one, and stops them all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'torus-launcher-'));
    dirs.push(dir);
    const entry = join(dir, 'stand-in.mjs');
    writeFileSync(entry, STAND_IN);
    writeFileSync(join(dir, 'crash-local-0'), '');
    process.env.TORUS_TEST_SERVER_SECRET = 'must-not-leak';
    const events = () =>
      existsSync(join(dir, 'log.jsonl'))
        ? readFileSync(join(dir, 'log.jsonl'), 'utf8')
            .trim()
            .split('\n')
            .map(
              (l) =>
                JSON.parse(l) as {
                  pid: number;
                  event: string;
                  argv: string[];
                  env: Record<string, string>;
                  connected: boolean;
                },
            )
        : [];
    const agents = startLocalAgents({
      count: 2,
      serverUrl: 'http://127.0.0.1:9',
      token: 'torus_agent_abc',
      classes: ['machine:*', 'myns/x'],
      sandbox: 'none',
      logger: pino({ level: 'silent' }),
      workRoot: join(dir, 'work'),
      entry,
      restartDelayMs: 50,
    });
    try {
      // 2 starts, then local-0 crashes and comes back
      await waitFor(() => events().filter((e) => e.event === 'start').length === 3, 10_000);
      const starts = events().filter((e) => e.event === 'start');
      const first = starts[0]!;
      expect(first.argv.slice(0, 10)).toEqual([
        'agent',
        '--server',
        'http://127.0.0.1:9',
        '--resource-class',
        'machine:*',
        '--resource-class',
        'myns/x',
        '--sandbox',
        'none',
        '--name',
      ]);
      expect(first.argv).toContain('--local');
      expect(first.argv).toContain(join(dir, 'work', `agent-${first.argv[10] === 'local-0' ? 0 : 1}`));
      // nothing of the server's environment but the Docker engine's address, when there is one
      expect(Object.keys(first.env).sort()).toEqual(
        [
          'HOME',
          'LANG',
          'PATH',
          'TORUS_AGENT_TOKEN',
          ...(process.env.DOCKER_HOST ? ['DOCKER_HOST'] : []),
        ].sort(),
      );
      expect(first.env.TORUS_AGENT_TOKEN).toBe('torus_agent_abc');
      expect(first.connected).toBe(true);
      const names = starts.map((s) => s.argv[s.argv.indexOf('--name') + 1]);
      expect(names.filter((n) => n === 'local-0')).toHaveLength(2);
      await waitFor(() => agents.pids().length === 2, 5_000);
    } finally {
      delete process.env.TORUS_TEST_SERVER_SECRET;
    }
    const pids = agents.pids();
    await agents.stop();
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(
      events()
        .filter((e) => e.event === 'sigterm')
        .map((e) => e.pid)
        .sort(),
    ).toEqual([...pids].sort());
    // nothing comes back after stop
    await new Promise((r) => setTimeout(r, 200));
    expect(events().filter((e) => e.event === 'start')).toHaveLength(3);
  });

  it.runIf(existsSync(TORUS_ENTRY))(
    'runs the real `torus agent`, which claims a queued task and reports its output',
    async () => {
      const db = await openTestDatabase('pglite');
      const t = testResources(db, { leaseMs: 5_000, heartbeatMs: 500 });
      const scheduler = createScheduler(t.res, recordingHooks());
      const app = Fastify({ logger: false });
      await app.register(agentRoutes(scheduler), { prefix: AGENT_API_PREFIX });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const addr = app.server.address();
      const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
      const work = mkdtempSync(join(tmpdir(), 'torus-launcher-work-'));
      dirs.push(work);
      const { token } = await scheduler.createAgentToken('machine:*', 'local agents');
      const agents = startLocalAgents({
        count: 1,
        serverUrl: url,
        token,
        classes: ['machine:*'],
        sandbox: 'none',
        logger: pino({ level: 'silent' }),
        workRoot: work,
      });
      try {
        const { taskIds } = await enqueueJob(db, scheduler.enqueue, { resourceClass: 'machine:medium' });
        // the agent asked for work under its classes and took the task
        await waitFor(async () => {
          const r = await db.query<{ status: string }>('SELECT status FROM tasks WHERE id = $1', [
            taskIds[0],
          ]);
          return r.rows[0]?.status !== 'queued' && r.rows[0]?.status !== 'running';
        }, 30_000);
        const final = await db.query<{ status: string; message: string | null }>(
          'SELECT status, message FROM tasks WHERE id = $1',
          [taskIds[0]],
        );
        expect(final.rows[0]).toEqual({ status: 'success', message: null });
        const out = await scheduler.readStepOutput(taskIds[0]!, 2);
        expect(out.done).toBe(true);
        expect(out.chunks.map((c) => c.data).join('')).toContain('hi');
        const seen = await db.query<{ name: string; resource_classes: string[] }>(
          'SELECT name, resource_classes FROM agents',
        );
        expect(seen.rows).toEqual([
          expect.objectContaining({ name: 'local-0', resource_classes: ['machine:*'] }),
        ]);
      } finally {
        const pids = agents.pids();
        await agents.stop();
        for (const pid of pids) expect(alive(pid)).toBe(false);
        await app.close();
        await scheduler.stop();
        await db.close();
        t.cleanup();
      }
    },
  );
});
