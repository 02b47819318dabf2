// The engine wired to the real scheduler as the server does it (CONTRACTS.md): an agent's claims
// and completions drive the workflow DAG through the hooks, and a cancel reaches running tasks.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/harness/db.js';
import { waitFor } from '../../test/harness/net.js';
import { requirePart } from '../../test/harness/parts.js';
import { createLogger, defaultSettings, randomIds, systemClock, type Resources } from '../ops/index.js';
import { createScheduler, type AuthenticatedAgent, type Scheduler } from '../scheduler/index.js';
import { FsObjectStore, type Database } from '../storage/index.js';
import { createPipelineEngine, type PipelineEngine } from './index.js';

const hasGit = requirePart('git', 'pipelines ⇄ scheduler wiring tests');
const agent: AuthenticatedAgent = { tokenId: 't', resourceClass: 'machine:*' };
const never = new AbortController().signal;

const CONFIG = `version: 2.1
jobs:
  a: {machine: true, steps: [run: "true"]}
  b: {machine: true, steps: [run: "true"]}
workflows:
  w:
    jobs: [a, {b: {requires: [a]}}]
`;

describe.skipIf(!hasGit)('pipelines engine with the real scheduler', () => {
  let db: Database;
  let dir: string;
  let scheduler: Scheduler;
  let engine: PipelineEngine;
  let projectId: string;
  const userId = randomUUID();

  beforeAll(async () => {
    db = await openTestDatabase('pglite');
    dir = mkdtempSync(join(tmpdir(), 'torus-wiring-'));
    const repo = join(dir, 'repo');
    mkdirSync(join(repo, '.circleci'), { recursive: true });
    writeFileSync(join(repo, '.circleci', 'config.yml'), CONFIG);
    const env = {
      ...process.env,
      GIT_AUTHOR_NAME: 'a',
      GIT_AUTHOR_EMAIL: 'a@x',
      GIT_COMMITTER_NAME: 'a',
      GIT_COMMITTER_EMAIL: 'a@x',
    };
    for (const args of [
      ['init', '-q', '-b', 'main'],
      ['add', '-A'],
      ['commit', '-q', '-m', 'ci'],
    ]) {
      execFileSync('git', args, { cwd: repo, env });
    }
    const settings = {
      ...defaultSettings(),
      dataDir: join(dir, 'data'),
      url: 'http://torus.test',
      leaseMs: 5_000,
      heartbeatMs: 1_000,
    };
    const res: Resources = {
      db,
      store: new FsObjectStore(join(dir, 'objects')),
      clock: systemClock,
      ids: randomIds,
      logger: createLogger('silent'),
      settings,
    };
    scheduler = createScheduler(res, {
      onTaskStarted: (jobId) => engine.onTaskStarted(jobId),
      onJobFinished: (jobId, outcome) => engine.onJobFinished(jobId, outcome),
    });
    engine = createPipelineEngine(res, { scheduler });
    await db.query(`INSERT INTO users (id, login) VALUES ($1, 'ada')`, [userId]);
    await engine.recover();
    scheduler.start();
    projectId = (await engine.createProject({ orgName: 'acme', vcsUrl: repo })).id;
  });

  afterAll(async () => {
    await scheduler?.stop();
    await engine?.stop();
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function trigger(): Promise<string> {
    const p = await engine.triggerPipeline({ projectId, triggerType: 'api' });
    await engine.settled(p.id);
    const { rows } = await db.query<{ id: string }>('SELECT id FROM workflows WHERE pipeline_id = $1', [
      p.id,
    ]);
    return rows[0]!.id;
  }

  async function statuses(workflowId: string): Promise<Record<string, string>> {
    const { rows } = await db.query<{ name: string; status: string }>(
      'SELECT name, status FROM jobs WHERE workflow_id = $1 ORDER BY position',
      [workflowId],
    );
    const wf = await db.query<{ status: string }>('SELECT status FROM workflows WHERE id = $1', [workflowId]);
    return { workflow: wf.rows[0]!.status, ...Object.fromEntries(rows.map((r) => [r.name, r.status])) };
  }

  async function claim() {
    const got = await scheduler.claim(
      agent,
      { agentId: 'agent-1', resourceClasses: ['machine:medium'], waitMs: 0 },
      never,
    );
    expect(got).not.toBeNull();
    return got!;
  }

  it('claims and completions drive the DAG to the end', async () => {
    const wf = await trigger();
    const a = await claim();
    expect(a.task.jobName).toBe('a');
    await waitFor(async () => (await statuses(wf)).a === 'running');
    await scheduler.complete(a.task.taskId, { leaseId: a.leaseId, status: 'success' });
    await waitFor(async () => (await statuses(wf)).b === 'queued');
    const b = await claim();
    expect(b.task.jobName).toBe('b');
    expect(b.task.jobNumber).toBe(2);
    await scheduler.complete(b.task.taskId, { leaseId: b.leaseId, status: 'failed' });
    await waitFor(async () => (await statuses(wf)).workflow === 'failed');
    expect(await statuses(wf)).toEqual({ workflow: 'failed', a: 'success', b: 'failed' });
  });

  it('a cancel reaches the running task; the job ends canceled when the agent stops', async () => {
    const wf = await trigger();
    const a = await claim();
    await waitFor(async () => (await statuses(wf)).a === 'running');
    await engine.cancelWorkflow(wf, userId);
    expect(await statuses(wf)).toEqual({ workflow: 'canceled', a: 'running', b: 'canceled' });
    expect((await scheduler.heartbeat(a.task.taskId, a.leaseId)).cancel).toBe(true);
    await scheduler.complete(a.task.taskId, { leaseId: a.leaseId, status: 'canceled' });
    await waitFor(async () => (await statuses(wf)).a === 'canceled');
    expect(await statuses(wf)).toEqual({ workflow: 'canceled', a: 'canceled', b: 'canceled' });
  });
});
