// POST /api/v2/pipeline/continue through Fastify's inject, on a real pipelines engine (PGlite, a
// real git repository, a recording scheduler): the continuation key alone authenticates, and every
// refusal is CircleCI's {message} with a 4xx status.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/harness/db.js';
import { requirePart } from '../../test/harness/parts.js';
import { createLogger, defaultSettings, randomIds, systemClock } from '../ops/index.js';
import { createPipelineEngine, type EngineScheduler, type PipelineEngine } from '../pipelines/index.js';
import type { TaskSpec } from '../scheduler/protocol.js';
import { FsObjectStore, type Database, type Queryable } from '../storage/index.js';
import { CONTINUE_PATH, continueRoutes } from './routes-continue.js';

const hasGit = requirePart('git', 'continue route tests');

const SETUP = `version: 2.1
setup: true
jobs:
  generate: {machine: true, steps: [run: "true"]}
workflows:
  setup: {jobs: [generate]}
`;

const NEXT = `version: 2.1
parameters:
  target: {type: string, default: staging}
jobs:
  deploy: {machine: true, steps: [run: "echo << pipeline.parameters.target >>"]}
workflows:
  deploy: {jobs: [deploy]}
`;

describe.skipIf(!hasGit)('POST /api/v2/pipeline/continue', () => {
  const keys: string[] = [];
  let db: Database;
  let engine: PipelineEngine;
  let app: FastifyInstance;
  let projectId: string;

  const scheduler: EngineScheduler = {
    enqueue(_tx: Queryable, job: { specs: Omit<TaskSpec, 'taskId'>[] }) {
      const key = job.specs[0]?.environment.CIRCLE_CONTINUATION_KEY;
      if (key) keys.push(key);
      return Promise.resolve(job.specs.map(() => randomUUID()));
    },
    cancelJob: () => Promise.resolve({ runningTasks: 0 }),
  };

  beforeAll(async () => {
    const root = mkdtempSync(join(tmpdir(), 'torus-continue-route-'));
    const repo = join(root, 'repo');
    mkdirSync(join(repo, '.circleci'), { recursive: true });
    writeFileSync(join(repo, '.circleci/config.yml'), SETUP);
    const env = {
      ...process.env,
      GIT_AUTHOR_NAME: 'A',
      GIT_AUTHOR_EMAIL: 'a@x',
      GIT_COMMITTER_NAME: 'A',
      GIT_COMMITTER_EMAIL: 'a@x',
    };
    for (const args of [
      ['init', '-q', '-b', 'main'],
      ['add', '-A'],
      ['commit', '-q', '-m', 'setup'],
    ]) {
      execFileSync('git', args, { cwd: repo, env });
    }
    db = await openTestDatabase('pglite');
    engine = createPipelineEngine(
      {
        db,
        store: new FsObjectStore(join(root, 'objects')),
        clock: systemClock,
        ids: randomIds,
        logger: createLogger('silent'),
        settings: { ...defaultSettings(), dataDir: root },
      },
      { scheduler },
    );
    projectId = (await engine.createProject({ orgName: 'acme', vcsUrl: repo })).id;
    app = Fastify();
    await app.register(continueRoutes({ engine }));
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
    await engine?.stop();
    await db?.close();
  });

  async function setupKey(): Promise<{ pipelineId: string; key: string }> {
    const p = await engine.triggerPipeline({ projectId, triggerType: 'api' });
    await engine.settled(p.id);
    const key = keys.pop();
    if (!key) throw new Error('the setup job got no continuation key');
    return { pipelineId: p.id, key };
  }

  const post = (payload: unknown) =>
    app.inject({ method: 'POST', url: CONTINUE_PATH, payload: payload as object });

  it('continues with the key alone (no API token) and refuses the key a second time', async () => {
    const { pipelineId, key } = await setupKey();
    const ok = await post({ 'continuation-key': key, configuration: NEXT, parameters: { target: 'prod' } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ message: 'Pipeline continued.' });
    const row = await db.query<{ state: string; config_compiled: string }>(
      'SELECT state, config_compiled FROM pipelines WHERE id = $1',
      [pipelineId],
    );
    expect(row.rows[0]).toMatchObject({
      state: 'pending',
      config_compiled: expect.stringContaining('echo prod'),
    });

    const again = await post({ 'continuation-key': key, configuration: NEXT });
    expect(again.statusCode).toBe(409);
    expect(again.json().message).toMatch(/already been continued/);
  });

  it('answers {message} with 4xx for a bad key, a bad body and a config that does not compile', async () => {
    const bad = await post({ 'continuation-key': 'nope', configuration: NEXT });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().message).toMatch(/Invalid continuation key/);

    const { pipelineId, key } = await setupKey();
    const noConfig = await post({ 'continuation-key': key });
    expect(noConfig.statusCode).toBe(400);
    expect(noConfig.json().message).toMatch(/configuration is required/);
    const badParam = await post({
      'continuation-key': key,
      configuration: NEXT,
      parameters: { target: ['x'] },
    });
    expect(badParam.statusCode).toBe(400);
    expect(badParam.json().message).toMatch(/target.*an array/);

    const broken = await post({ 'continuation-key': key, configuration: 'version: 2.1\nworkflows: [\n' });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().message).toMatch(/^continuation config:\d+:\d+: /);
    const row = await db.query<{ state: string }>('SELECT state FROM pipelines WHERE id = $1', [pipelineId]);
    expect(row.rows[0]!.state).toBe('errored');
  });
});
