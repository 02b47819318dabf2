// Dynamic configuration end to end on real git repositories and both databases: a `setup: true`
// config runs its setup workflow with CIRCLE_CONTINUATION_KEY, and continuePipeline compiles the
// continuation config into workflows — or refuses (bad/used/expired key, parameters) or errors the
// pipeline (config that does not compile). The scheduler is a recording fake.
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import { requirePart } from '../../test/harness/parts.js';
import { createLogger, defaultSettings, randomIds, type Resources } from '../ops/index.js';
import { FsObjectStore, type Database } from '../storage/index.js';
import { createPipelineEngine, type PipelineEngine } from './index.js';
import { FakeScheduler, RepoFactory } from './testing.js';

const hasGit = requirePart('git', 'continuation tests');

const repos = new RepoFactory('torus-continuation-');
const tmpRoot = repos.root;
const makeRepo = (files: Record<string, string>) => repos.make(files);

const SETUP = `version: 2.1
setup: true
parameters:
  from_trigger: {type: string, default: none}
jobs:
  generate: {machine: true, steps: [run: "echo generating"]}
workflows:
  setup:
    jobs: [generate]
`;

const CONTINUATION = `version: 2.1
parameters:
  from_trigger: {type: string, default: none}
  deploy: {type: boolean, default: false}
jobs:
  build: {machine: true, steps: [run: "echo build << pipeline.git.branch >> << pipeline.parameters.from_trigger >>"]}
  ship: {machine: true, steps: [run: "echo ship"]}
workflows:
  build:
    jobs: [build]
  deploy:
    when: << pipeline.parameters.deploy >>
    jobs: [ship]
`;

describe.skipIf(!hasGit).each(hasGit ? databaseKinds() : ['pglite' as const])(
  'dynamic configuration on %s',
  (kind) => {
    let db: Database;
    let res: Resources;
    let scheduler: FakeScheduler;
    let engine: PipelineEngine;
    let clockOffsetMs = 0;

    beforeAll(async () => {
      db = await openTestDatabase(kind);
      const dataDir = mkdtempSync(join(tmpRoot, 'data-'));
      res = {
        db,
        store: new FsObjectStore(join(dataDir, 'objects')),
        clock: { now: () => new Date(Date.now() + clockOffsetMs) },
        ids: randomIds,
        logger: createLogger('silent'),
        settings: { ...defaultSettings(), dataDir, url: 'http://torus.test' },
      };
    });

    afterAll(async () => {
      await engine?.stop();
      await db?.close();
    });

    beforeEach(async () => {
      await engine?.stop();
      await db.query('TRUNCATE organizations, projects, pipelines, workflows, jobs, users CASCADE');
      clockOffsetMs = 0;
      scheduler = new FakeScheduler();
      engine = createPipelineEngine(res, { scheduler });
    });

    async function setupPipeline(yaml = SETUP, parameters?: Record<string, string | number | boolean>) {
      const project = await engine.createProject({
        orgName: 'acme',
        vcsUrl: makeRepo({ '.circleci/config.yml': yaml }),
      });
      const p = await engine.triggerPipeline({
        projectId: project.id,
        triggerType: 'api',
        ...(parameters ? { parameters } : {}),
      });
      await engine.settled(p.id);
      return p.id;
    }

    async function pipeline(id: string) {
      const { rows } = await db.query<{
        state: string;
        errors: { type: string; message: string }[];
        config_source: string | null;
        config_compiled: string | null;
        setup_config_source: string | null;
        setup_config_compiled: string | null;
        continued_at: Date | null;
        parameters: Record<string, unknown>;
      }>('SELECT * FROM pipelines WHERE id = $1', [id]);
      return rows[0]!;
    }

    async function workflowNames(pipelineId: string) {
      const { rows } = await db.query<{ name: string }>(
        'SELECT name FROM workflows WHERE pipeline_id = $1 ORDER BY created_at, name',
        [pipelineId],
      );
      return rows.map((r) => r.name);
    }

    function keyOf(jobName: string): string {
      const key = scheduler.job(jobName).specs[0]!.environment.CIRCLE_CONTINUATION_KEY;
      expect(key).toBeTypeOf('string');
      return key!;
    }

    it('runs a setup config as a setup workflow whose job gets a secret continuation key', async () => {
      const id = await setupPipeline();
      const row = await pipeline(id);
      expect(row.state).toBe('setup-pending');
      expect(row.errors).toEqual([]);
      expect(row.setup_config_source).toBe(SETUP);
      expect(row.setup_config_compiled).toContain('setup: true');
      expect(await workflowNames(id)).toEqual(['setup']);
      const tags = await db.query<{ tag: string | null }>(
        'SELECT tag FROM workflows WHERE pipeline_id = $1',
        [id],
      );
      expect(tags.rows).toEqual([{ tag: 'setup' }]);

      const generate = scheduler.job('generate');
      const key = keyOf('generate');
      expect(key).toMatch(/^[0-9a-f]{64}$/);
      // masked in the job's output; only its hash is stored
      expect(generate.specs[0]!.secrets).toContain(key);
      const stored = await db.query<{ key_hash: string }>('SELECT key_hash FROM continuation_keys');
      expect(stored.rows).toHaveLength(1);
      expect(stored.rows[0]!.key_hash).not.toBe(key);
      expect(JSON.stringify(stored.rows)).not.toContain(key);

      await engine.onTaskStarted(generate.jobId);
      expect((await pipeline(id)).state).toBe('setup');
    });

    it('continues with a config: its workflows are created, state pending, both configs kept; the key works once', async () => {
      const id = await setupPipeline();
      const key = keyOf('generate');
      await engine.onTaskStarted(scheduler.job('generate').jobId);

      await expect(
        engine.continuePipeline({ continuationKey: key, configuration: CONTINUATION }),
      ).resolves.toEqual({
        pipelineId: id,
      });
      const row = await pipeline(id);
      expect(row.state).toBe('pending');
      expect(row.continued_at).not.toBeNull();
      expect(row.config_source).toBe(CONTINUATION);
      expect(row.config_compiled).toContain('echo build main none');
      expect(row.setup_config_source).toBe(SETUP);
      expect(row.setup_config_compiled).toContain('echo generating');
      // the setup workflow stays; `deploy` is off by default
      expect(await workflowNames(id)).toEqual(['setup', 'build']);
      const tags = await db.query<{ name: string; tag: string | null }>(
        'SELECT name, tag FROM workflows WHERE pipeline_id = $1 ORDER BY created_at',
        [id],
      );
      expect(tags.rows).toEqual([
        { name: 'setup', tag: 'setup' },
        { name: 'build', tag: null },
      ]);
      const build = scheduler.job('build');
      expect(build.specs[0]!.environment.CIRCLE_CONTINUATION_KEY).toBeUndefined();
      expect(build.specs[0]!.secrets).toEqual([]);

      // a second continuation is refused, and nothing changes
      await expect(
        engine.continuePipeline({ continuationKey: key, configuration: CONTINUATION }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
        message: expect.stringMatching(/already been continued/),
      });
      expect(await workflowNames(id)).toEqual(['setup', 'build']);
    });

    it('refuses an unknown key and a request without key or configuration', async () => {
      const id = await setupPipeline();
      await expect(
        engine.continuePipeline({ continuationKey: 'f'.repeat(64), configuration: CONTINUATION }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_UNAUTHORIZED',
        message: expect.stringMatching(/Invalid continuation key/),
      });
      await expect(
        engine.continuePipeline({ continuationKey: '', configuration: CONTINUATION }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
      });
      expect((await pipeline(id)).state).toBe('setup-pending');
    });

    it('errors the pipeline on a continuation config that does not compile, and tells the caller where', async () => {
      const id = await setupPipeline();
      const key = keyOf('generate');
      const broken = `version: 2.1
jobs:
  build: {machine: true, steps: [run: "true"]}
workflows:
  main:
    jobs: [build, nope]
`;
      const err = await engine
        .continuePipeline({ continuationKey: key, configuration: broken })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'TORUS_E_CONFIG_INVALID', status: 400 });
      expect((err as Error).message).toMatch(/^continuation config:6:\d+: .*nope/m);
      const row = await pipeline(id);
      expect(row.state).toBe('errored');
      expect(row.errors[0]).toMatchObject({ type: 'config', message: expect.stringMatching(/nope/) });
      expect(row.config_source).toBe(broken);
      expect(row.config_compiled).toBeNull();
      expect(row.setup_config_source).toBe(SETUP);
      expect(await workflowNames(id)).toEqual(['setup']);
      // the key is spent with the pipeline
      await expect(
        engine.continuePipeline({ continuationKey: key, configuration: CONTINUATION }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
      });
    });

    it('refuses to continue with another setup configuration', async () => {
      const id = await setupPipeline();
      await expect(
        engine.continuePipeline({ continuationKey: keyOf('generate'), configuration: SETUP }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFIG_INVALID',
        message: expect.stringMatching(/another setup configuration/),
      });
      expect((await pipeline(id)).state).toBe('errored');
    });

    it('passes continuation parameters and the trigger ones through; undeclared and repeated ones are refused', async () => {
      const id = await setupPipeline(SETUP, { from_trigger: 'api' });
      const key = keyOf('generate');
      // given at trigger time already: refused, the pipeline untouched
      await expect(
        engine.continuePipeline({
          continuationKey: key,
          configuration: CONTINUATION,
          parameters: { from_trigger: 'again' },
        }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
        message: expect.stringMatching(/from_trigger/),
      });
      expect((await pipeline(id)).state).toBe('setup-pending');

      await engine.continuePipeline({
        continuationKey: key,
        configuration: CONTINUATION,
        parameters: { deploy: true },
      });
      const row = await pipeline(id);
      expect(row.state).toBe('pending');
      expect(row.parameters).toEqual({ from_trigger: 'api', deploy: true });
      expect(row.config_compiled).toContain('echo build main api');
      expect(await workflowNames(id)).toEqual(['setup', 'build', 'deploy']);

      // a parameter the continuation config does not declare
      const other = await setupPipeline();
      const err = await engine
        .continuePipeline({
          continuationKey: keyOf('generate'),
          configuration: CONTINUATION,
          parameters: { nope: 1 },
        })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'TORUS_E_CONFIG_INVALID',
        message: expect.stringMatching(/Unexpected argument.*nope/),
      });
      expect((await pipeline(other)).state).toBe('errored');
    });

    it('gives each setup job its own key; the empty config of continuation/finish ends the setup phase', async () => {
      const id = await setupPipeline(`version: 2.1
setup: true
jobs:
  a: {machine: true, steps: [run: "true"]}
  b: {machine: true, steps: [run: "true"]}
workflows:
  setup:
    jobs: [a, {b: {requires: [a]}}]
`);
      const a = keyOf('a');
      await engine.onTaskStarted(scheduler.job('a').jobId);
      await engine.onJobFinished(scheduler.job('a').jobId, 'success');
      const b = keyOf('b');
      expect(b).not.toBe(a);
      await engine.continuePipeline({
        continuationKey: b,
        configuration: '{version: 2, jobs: {}, workflows: {version: 2}}',
      });
      expect((await pipeline(id)).state).toBe('pending');
      expect(await workflowNames(id)).toEqual(['setup']);
      await expect(
        engine.continuePipeline({ continuationKey: a, configuration: CONTINUATION }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_CONFLICT',
      });
    });

    it('refuses a key more than 6 hours after the pipeline was created, erroring the pipeline', async () => {
      const id = await setupPipeline();
      clockOffsetMs = 6 * 60 * 60 * 1000 + 1000;
      await expect(
        engine.continuePipeline({ continuationKey: keyOf('generate'), configuration: CONTINUATION }),
      ).rejects.toMatchObject({
        code: 'TORUS_E_BAD_REQUEST',
        message: expect.stringMatching(/Key has expired/),
      });
      const row = await pipeline(id);
      expect(row.state).toBe('errored');
      expect(row.errors[0]!.type).toBe('timeout');
    });

    it('errors setup configs CircleCI cannot run: two workflows, version 2', async () => {
      const two = await setupPipeline(`version: 2.1
setup: true
jobs:
  a: {machine: true, steps: [run: "true"]}
workflows:
  one: {jobs: [a]}
  two: {jobs: [a]}
`);
      expect(await pipeline(two)).toMatchObject({
        state: 'errored',
        errors: [{ type: 'config', message: expect.stringMatching(/exactly one workflow/) }],
      });
      const v2 = await setupPipeline(`version: 2
setup: true
jobs:
  a: {machine: true, steps: [run: "true"]}
workflows:
  version: 2
  one: {jobs: [a]}
`);
      expect(await pipeline(v2)).toMatchObject({
        state: 'errored',
        errors: [{ type: 'config', message: expect.stringMatching(/needs version: 2.1/) }],
      });
      expect(scheduler.enqueued).toEqual([]);
    });
  },
);
