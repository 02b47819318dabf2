// Legacy scheduled workflows end to end on real git repositories and both databases: the config on
// a branch sets that branch's schedules, a due schedule fires once (also with two engines racing,
// and once after downtime), its pipeline runs the scheduled workflow alone on the branch's newest
// commit, and a config without the trigger removes the schedule. The clock is the test's.
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import { requirePart } from '../../test/harness/parts.js';
import { createLogger, defaultSettings, randomIds, type Resources } from '../ops/index.js';
import { FsObjectStore, type Database } from '../storage/index.js';
import {
  createPipelineEngine,
  createPipelineSchedule,
  getPipelineSchedule,
  type PipelineEngine,
} from './index.js';
import { ScheduleLoop } from './schedules.js';
import { commit, config, FakeScheduler, git, RepoFactory } from './testing.js';

const hasGit = requirePart('git', 'workflow schedule tests');
const repos = new RepoFactory('torus-schedules-');

const NIGHTLY = `version: 2.1
jobs:
  build: {machine: true, steps: [checkout]}
  soak: {machine: true, steps: [run: echo << pipeline.trigger_source >>]}
workflows:
  ci:
    jobs: [build]
  nightly:
    triggers:
      - schedule:
          cron: "0 0 * * *"
          filters: {branches: {only: [main, /release-.*/]}}
    jobs: [soak]
  weekly:
    triggers:
      - schedule: {cron: "30 6 * * 1", filters: {branches: {only: main}}}
    jobs: [build]
`;

describe.skipIf(!hasGit).each(hasGit ? databaseKinds() : ['pglite' as const])(
  'workflow schedules on %s',
  (kind) => {
    let db: Database;
    let res: Resources;
    let now = new Date('2026-11-28T10:00:00Z');
    let scheduler: FakeScheduler;
    let engine: PipelineEngine;

    beforeAll(async () => {
      db = await openTestDatabase(kind);
      const dataDir = mkdtempSync(join(repos.root, 'data-'));
      res = {
        db,
        store: new FsObjectStore(join(dataDir, 'objects')),
        clock: { now: () => now },
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
      now = new Date('2026-11-28T10:00:00Z');
      scheduler = new FakeScheduler();
      engine = createPipelineEngine(res, { scheduler });
    });

    async function push(projectId: string, branch: string) {
      const p = await engine.triggerPipeline({ projectId, branch, triggerType: 'webhook' });
      await engine.settled(p.id);
      return p;
    }

    async function fire(): Promise<string[]> {
      const ids = await engine.fireSchedules();
      for (const id of ids) await engine.settled(id);
      return ids;
    }

    async function pipeline(id: string) {
      const { rows } = await db.query<{
        branch: string;
        trigger_type: string;
        state: string;
        revision: string;
        pipeline_values: Record<string, unknown>;
      }>('SELECT branch, trigger_type, state, revision, pipeline_values FROM pipelines WHERE id = $1', [id]);
      const { rows: wfs } = await db.query<{ name: string }>(
        'SELECT name FROM workflows WHERE pipeline_id = $1 ORDER BY name',
        [id],
      );
      return { ...rows[0]!, workflows: wfs.map((w) => w.name) };
    }

    const schedules = async (projectId: string) =>
      (await engine.listWorkflowSchedules(projectId)).map(
        (s) => `${s.branch} ${s.workflow} ${s.cron} ${s.nextRunAt.toISOString()}`,
      );

    it("takes a branch's schedules from its config and fires each due one once, alone", async () => {
      const repo = repos.make(config(NIGHTLY));
      git(repo, 'branch', 'release-1');
      git(repo, 'branch', 'feature');
      const project = await engine.createProject({ orgName: 'acme', vcsUrl: repo });

      // a push runs the unscheduled workflow only, and records the branch's schedules
      const main = await push(project.id, 'main');
      expect((await pipeline(main.id)).workflows).toEqual(['ci']);
      await push(project.id, 'release-1');
      await push(project.id, 'feature');
      expect(await schedules(project.id)).toEqual([
        // 2026-11-30 is a Monday
        'main nightly 0 0 * * * 2026-11-29T00:00:00.000Z',
        'main weekly 30 6 * * 1 2026-11-30T06:30:00.000Z',
        'release-1 nightly 0 0 * * * 2026-11-29T00:00:00.000Z',
      ]);

      now = new Date('2026-11-28T23:59:59Z');
      expect(await fire()).toEqual([]);

      // a commit lands on main before the schedule fires: the scheduled run builds it
      const head = commit(repo, { 'NEWS.md': 'news' }, 'second');
      now = new Date('2026-11-29T00:00:20Z');
      const fired = await fire();
      expect(fired).toHaveLength(2);
      const runs = await Promise.all(fired.map(pipeline));
      const onMain = runs.find((r) => r.branch === 'main')!;
      expect(onMain).toMatchObject({ trigger_type: 'scheduled_pipeline', state: 'pending', revision: head });
      expect(onMain.workflows).toEqual(['nightly']);
      expect(onMain.pipeline_values['pipeline.trigger_source']).toBe('schedule');
      expect(runs.find((r) => r.branch === 'release-1')!.workflows).toEqual(['nightly']);
      expect(await schedules(project.id)).toContain('main nightly 0 0 * * * 2026-11-30T00:00:00.000Z');
      // fired already: a second look in the same minute finds nothing
      expect(await fire()).toEqual([]);

      // the server was down for days: one run each, then the next time after now
      now = new Date('2026-12-03T05:00:00Z');
      const late = await Promise.all((await fire()).map(pipeline));
      expect(late.map((r) => `${r.branch} ${r.workflows.join()}`).sort()).toEqual([
        'main nightly',
        'main weekly',
        'release-1 nightly',
      ]);
      expect(await schedules(project.id)).toEqual([
        'main nightly 0 0 * * * 2026-12-04T00:00:00.000Z',
        'main weekly 30 6 * * 1 2026-12-07T06:30:00.000Z',
        'release-1 nightly 0 0 * * * 2026-12-04T00:00:00.000Z',
      ]);
    });

    it("drops the schedules a branch's newer config no longer has", async () => {
      const repo = repos.make(config(NIGHTLY));
      const project = await engine.createProject({ orgName: 'acme', vcsUrl: repo });
      await push(project.id, 'main');
      expect(await schedules(project.id)).toHaveLength(2);
      commit(repo, config(NIGHTLY.replace(/ {2}weekly:[\s\S]*$/, '')), 'no weekly');
      await push(project.id, 'main');
      expect(await schedules(project.id)).toEqual(['main nightly 0 0 * * * 2026-11-29T00:00:00.000Z']);
      commit(repo, config(NIGHTLY.replace(/ {2}nightly:[\s\S]*$/, '')), 'no schedules');
      await push(project.id, 'main');
      expect(await schedules(project.id)).toEqual([]);
      now = new Date('2026-12-01T00:00:00Z');
      expect(await fire()).toEqual([]);
    });

    it('triggers a scheduled pipeline from the API on its timetable, with its parameters and actor', async () => {
      const repo = repos.make(
        config(`version: 2.1
parameters:
  run_soak: {type: boolean, default: false}
jobs:
  build: {machine: true, steps: [checkout]}
  soak: {machine: true, steps: [run: echo << pipeline.schedule.name >>]}
workflows:
  ci:
    when:
      not:
        equal: [scheduled_pipeline, << pipeline.trigger_source >>]
    jobs: [build]
  soak:
    when: << pipeline.parameters.run_soak >>
    jobs: [soak]
`),
      );
      git(repo, 'branch', 'release');
      const project = await engine.createProject({ orgName: 'acme', vcsUrl: repo });
      const userId = randomUUID();
      await db.query(`INSERT INTO users (id, login, name) VALUES ($1, 'ada', 'Ada')`, [userId]);
      const timetable = { 'per-hour': 2, 'hours-of-day': [10, 11], 'days-of-week': ['SAT'] };
      const soak = await createPipelineSchedule(res, project.id, userId, {
        name: 'nightly soak',
        timetable,
        'attribution-actor': 'current',
        parameters: { branch: 'release', run_soak: true },
      });
      // 2026-11-28 (a Saturday) 10:00: fires at 10:30, 11:00, 11:30, then next Saturday 10:00
      expect(soak.nextRunAt?.toISOString()).toBe('2026-11-28T10:30:00.000Z');
      await createPipelineSchedule(res, project.id, userId, {
        name: 'system',
        timetable,
        'attribution-actor': 'system',
        parameters: { branch: 'main' },
      });

      now = new Date('2026-11-28T10:30:10Z');
      const fired = await fire();
      expect(fired).toHaveLength(2);
      const { rows } = await db.query<{
        branch: string;
        actor_id: string | null;
        parameters: Record<string, unknown>;
        trigger_type: string;
        pipeline_values: Record<string, unknown>;
        id: string;
      }>(
        'SELECT id, branch, actor_id, parameters, trigger_type, pipeline_values FROM pipelines WHERE id = ANY($1::uuid[]) ORDER BY branch',
        [fired],
      );
      const [onMain, onRelease] = rows;
      expect(onRelease).toMatchObject({
        branch: 'release',
        actor_id: userId,
        parameters: { run_soak: true },
        trigger_type: 'scheduled_pipeline',
      });
      expect(onRelease!.pipeline_values).toMatchObject({
        'pipeline.trigger_source': 'scheduled_pipeline',
        'pipeline.schedule.name': 'nightly soak',
        'pipeline.schedule.id': soak.id,
      });
      expect((await pipeline(onRelease!.id)).workflows).toEqual(['soak']);
      expect(onMain).toMatchObject({ branch: 'main', actor_id: null });
      expect((await pipeline(onMain!.id)).workflows).toEqual([]);
      expect((await getPipelineSchedule(db, soak.id))?.nextRunAt?.toISOString()).toBe(
        '2026-11-28T11:00:00.000Z',
      );
      now = new Date('2026-11-28T11:45:00Z');
      expect(await fire()).toHaveLength(2);
      expect((await getPipelineSchedule(db, soak.id))?.nextRunAt?.toISOString()).toBe(
        '2026-12-05T10:00:00.000Z',
      );
    });

    it('fires a due schedule once when two servers look at the same moment', async () => {
      const repo = repos.make(config(NIGHTLY));
      const project = await engine.createProject({ orgName: 'acme', vcsUrl: repo });
      await push(project.id, 'main');
      const other = createPipelineEngine(res, { scheduler });
      try {
        now = new Date('2026-11-29T00:00:05Z');
        const [a, b] = await Promise.all([engine.fireSchedules(), other.fireSchedules()]);
        for (const id of a) await engine.settled(id);
        for (const id of b) await other.settled(id);
        expect(a.length + b.length).toBe(1);
      } finally {
        await other.stop();
      }
    });
  },
);

describe('the schedule loop', () => {
  it('ticks, drains a burst batch by batch, survives a failing tick and stops', async () => {
    const calls: string[] = [];
    let burst = 2;
    let fail = true;
    const loop = new ScheduleLoop(
      { logger: createLogger('silent') } as Resources,
      () => {
        if (fail) {
          fail = false;
          calls.push('error');
          return Promise.reject(new Error('database went away'));
        }
        calls.push(burst > 0 ? 'batch' : 'idle');
        return Promise.resolve(burst-- > 0 ? ['p'] : []);
      },
      20,
    );
    loop.start();
    await expect.poll(() => calls.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(5);
    await loop.stop();
    const seen = calls.length;
    expect(calls.slice(0, 5)).toEqual(['error', 'batch', 'batch', 'idle', 'idle']);
    await new Promise((r) => setTimeout(r, 100));
    expect(calls.length).toBe(seen);
  });
});
