// Pipelines compile with orbs from the registry, scoped to the project's organization: a project
// sees its organization's private orbs (in a trigger and in a continuation), another organization's
// project does not, and an orb the registry lacks errors the pipeline naming it and how to import it.
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds } from '../../test/harness/db.js';
import { requirePart } from '../../test/harness/parts.js';
import { openTestResources, type TestResources } from '../../test/api/resources.js';
import { createPipelineEngine, type PipelineEngine } from '../pipelines/index.js';
import { FakeScheduler, RepoFactory } from '../pipelines/testing.js';
import { createOrbRegistry, registryOrbResolver, type OrbRegistry } from './index.js';

const hasGit = requirePart('git', 'registry orbs in pipelines');
const repos = new RepoFactory('torus-orbs-pipelines-');

const ORB = `version: 2.1
description: the acme toolbox
jobs:
  lint:
    machine: true
    parameters:
      strict: {type: boolean, default: false}
    steps:
      - run: echo linting strict=<< parameters.strict >>
`;

const USES_ORB = `version: 2.1
orbs:
  tools: acme/tools@1
workflows:
  main:
    jobs:
      - tools/lint: {strict: true}
`;

const SETUP = `version: 2.1
setup: true
jobs:
  generate: {machine: true, steps: [run: "echo generating"]}
workflows:
  setup:
    jobs: [generate]
`;

describe.skipIf(!hasGit).each(hasGit ? databaseKinds() : ['pglite' as const])(
  'registry orbs in pipelines on %s',
  (kind) => {
    let res: TestResources;
    let registry: OrbRegistry;
    let scheduler: FakeScheduler;
    let engine: PipelineEngine;

    beforeAll(async () => {
      res = await openTestResources(kind);
      res.settings.dataDir = mkdtempSync(join(repos.root, 'data-'));
      registry = createOrbRegistry(res);
    });
    afterAll(async () => {
      await engine?.stop();
      await res?.close();
    });

    beforeEach(async () => {
      await engine?.stop();
      await res.db.query('TRUNCATE orb_namespaces, audit_events, organizations, projects, users CASCADE');
      scheduler = new FakeScheduler();
      engine = createPipelineEngine(res, { scheduler, orbResolver: registryOrbResolver(res) });
    });

    async function projectIn(org: string, yaml: string) {
      return engine.createProject({ orgName: org, vcsUrl: repos.make({ '.circleci/config.yml': yaml }) });
    }

    async function trigger(projectId: string) {
      const p = await engine.triggerPipeline({ projectId, triggerType: 'api' });
      await engine.settled(p.id);
      const { rows } = await res.db.query<{ state: string; errors: { message: string }[] }>(
        'SELECT state, errors FROM pipelines WHERE id = $1',
        [p.id],
      );
      return rows[0]!;
    }

    async function publishPrivateOrb(orgId: string) {
      await registry.createNamespace(orgId, 'acme', 'system');
      await registry.createOrb('acme', 'tools', { private: true }, 'system');
      await registry.publishVersion('acme/tools', '1.3.0', ORB, 'system');
    }

    it("resolves the project's organization's private orbs, and no other organization's", async () => {
      const mine = await projectIn('acme', USES_ORB);
      const theirs = await projectIn('other', USES_ORB);
      await publishPrivateOrb(mine.orgId);

      expect(await trigger(mine.id)).toMatchObject({ state: 'pending', errors: [] });
      expect(scheduler.job('tools/lint').specs[0]!.steps).toEqual(
        expect.arrayContaining([expect.objectContaining({ command: 'echo linting strict=true' })]),
      );

      const refused = await trigger(theirs.id);
      expect(refused.state).toBe('errored');
      expect(refused.errors[0]!.message).toMatch(/orb acme\/tools@1 \(alias "tools"\) was not found/);
      expect(refused.errors[0]!.message).toMatch(/torus admin import-orb acme\/tools@1/);
    });

    it('errors a pipeline whose orb the registry lacks, naming it and how to import it', async () => {
      const p = await projectIn('acme', USES_ORB.replace('acme/tools@1', 'circleci/node@5.2.0'));
      const row = await trigger(p.id);
      expect(row.state).toBe('errored');
      expect(row.errors[0]!.message).toMatch(
        /circleci\/node@5\.2\.0.*was not found\n.*torus admin import-orb circleci\/node@5\.2\.0/s,
      );
    });

    it("compiles a continuation config with the project's organization's orbs", async () => {
      const mine = await projectIn('acme', SETUP);
      await publishPrivateOrb(mine.orgId);
      expect(await trigger(mine.id)).toMatchObject({ state: 'setup-pending', errors: [] });
      const key = scheduler.job('generate').specs[0]!.environment.CIRCLE_CONTINUATION_KEY!;
      await engine.continuePipeline({ continuationKey: key, configuration: USES_ORB });
      expect(scheduler.job('tools/lint').specs[0]!.steps).toEqual(
        expect.arrayContaining([expect.objectContaining({ command: 'echo linting strict=true' })]),
      );
    });
  },
);
