// Unit tests of the job and workflow state machines: transition tables, requirement decisions,
// derived workflow statuses, and the branch/tag filters.
import { describe, expect, it } from 'vitest';
import type { Requirement, WorkflowJob } from '../config/model.js';
import {
  JOB_STATUSES,
  JOB_TRANSITIONS,
  canTransitionJob,
  decideRequirements,
  isFinalJobStatus,
  readyStatusOf,
  requiredStatusOf,
  type JobStatus,
} from './job-state.js';
import {
  WORKFLOW_STATUSES,
  WORKFLOW_TRANSITIONS,
  canTransitionWorkflow,
  deriveWorkflowStatus,
  isFinalWorkflowStatus,
} from './workflow-state.js';
import { filtersAllow, matchesPattern, selectWorkflowJobs } from './filters.js';
import { queueKeyOf, buildTaskSpecs } from './task-spec.js';
import { classifyVcsUrl, vcsUrlProblem } from './vcs.js';
import { repoBaseName } from './projects.js';

const ALL: Requirement['statuses'] = ['success', 'failed', 'canceled', 'unauthorized', 'not_run'];

describe('job transition table', () => {
  it('lists every status and only known targets', () => {
    expect(Object.keys(JOB_TRANSITIONS).sort()).toEqual([...JOB_STATUSES].sort());
    for (const targets of Object.values(JOB_TRANSITIONS)) {
      for (const t of targets) expect(JOB_STATUSES).toContain(t);
    }
  });

  it('final statuses are exactly those with no way out', () => {
    const finals = JOB_STATUSES.filter(isFinalJobStatus);
    expect(finals.sort()).toEqual(
      [
        'success',
        'failed',
        'timedout',
        'infrastructure_fail',
        'canceled',
        'not_run',
        'retried',
        'unauthorized',
        'terminated-unknown',
      ].sort(),
    );
  });

  it('follows the CircleCI job lifecycle', () => {
    expect(canTransitionJob('blocked', 'queued')).toBe(true);
    expect(canTransitionJob('queued', 'running')).toBe(true);
    expect(canTransitionJob('running', 'success')).toBe(true);
    expect(canTransitionJob('on_hold', 'success')).toBe(true);
    expect(canTransitionJob('blocked', 'running')).toBe(false);
    expect(canTransitionJob('success', 'queued')).toBe(false);
    expect(canTransitionJob('on_hold', 'queued')).toBe(false);
    expect(canTransitionJob('canceled', 'success')).toBe(false);
  });

  it('a job becomes queued, on hold or succeeds at once by type', () => {
    expect(readyStatusOf('build')).toBe('queued');
    expect(readyStatusOf('approval')).toBe('on_hold');
    expect(readyStatusOf('no-op')).toBe('success');
  });

  it('maps final job statuses to requirement statuses (timeouts count as failed)', () => {
    expect(requiredStatusOf('success')).toBe('success');
    expect(requiredStatusOf('timedout')).toBe('failed');
    expect(requiredStatusOf('infrastructure_fail')).toBe('failed');
    expect(requiredStatusOf('canceled')).toBe('canceled');
    expect(requiredStatusOf('not_run')).toBe('not_run');
    expect(requiredStatusOf('running')).toBeNull();
    expect(requiredStatusOf('on_hold')).toBeNull();
  });
});

describe('requirement decisions', () => {
  const of = (m: Record<string, JobStatus>) => (n: string) => m[n];
  it('runs with no requirements', () => {
    expect(decideRequirements([], of({}))).toBe('ready');
  });
  it('waits while a requirement is not final', () => {
    const req = [
      { name: 'a', statuses: ['success'] },
      { name: 'b', statuses: ['success'] },
    ] satisfies Requirement[];
    expect(decideRequirements(req, of({ a: 'failed', b: 'running' }))).toBe('wait');
    expect(decideRequirements(req, of({ a: 'success', b: 'on_hold' }))).toBe('wait');
  });
  it('runs when every requirement ended in an accepted status', () => {
    const req = [
      { name: 'a', statuses: ['success'] },
      { name: 'b', statuses: ['failed'] },
    ] satisfies Requirement[];
    expect(decideRequirements(req, of({ a: 'success', b: 'failed' }))).toBe('ready');
    expect(decideRequirements(req, of({ a: 'success', b: 'timedout' }))).toBe('ready');
  });
  it('is not_run when a final requirement is not satisfied', () => {
    expect(decideRequirements([{ name: 'a', statuses: ['success'] }], of({ a: 'failed' }))).toBe('not_run');
    expect(decideRequirements([{ name: 'a', statuses: ['failed'] }], of({ a: 'success' }))).toBe('not_run');
    expect(decideRequirements([{ name: 'a', statuses: ['success'] }], of({ a: 'not_run' }))).toBe('not_run');
  });
  it('terminal accepts every final status', () => {
    for (const s of ['success', 'failed', 'canceled', 'not_run', 'unauthorized'] as const) {
      expect(decideRequirements([{ name: 'a', statuses: ALL }], of({ a: s }))).toBe('ready');
    }
  });
  it('ignores requirements on jobs that are not in the workflow', () => {
    expect(decideRequirements([{ name: 'gone', statuses: ['success'] }], of({}))).toBe('ready');
  });
});

describe('workflow statuses', () => {
  it('transition table lists every status; finals have no way out', () => {
    expect(Object.keys(WORKFLOW_TRANSITIONS).sort()).toEqual([...WORKFLOW_STATUSES].sort());
    expect(WORKFLOW_STATUSES.filter(isFinalWorkflowStatus).sort()).toEqual(
      ['success', 'failed', 'error', 'canceled', 'not_run', 'unauthorized'].sort(),
    );
    expect(canTransitionWorkflow('success', 'running')).toBe(false);
    expect(canTransitionWorkflow('failing', 'running')).toBe(false);
    expect(canTransitionWorkflow('on_hold', 'running')).toBe(true);
  });
  it.each<[JobStatus[], string]>([
    [['queued', 'blocked'], 'running'],
    [['running', 'success'], 'running'],
    [['running', 'failed'], 'failing'],
    [['on_hold', 'blocked', 'success'], 'on_hold'],
    [['success', 'success'], 'success'],
    [['success', 'not_run'], 'success'],
    [['failed', 'not_run'], 'failed'],
    [['failed', 'success'], 'failed'],
    [['timedout'], 'failed'],
    [['infrastructure_fail', 'canceled'], 'failed'],
    [['canceled', 'success'], 'canceled'],
    [['unauthorized', 'success'], 'unauthorized'],
  ])('%j → %s', (jobs, status) => {
    expect(deriveWorkflowStatus(jobs)).toBe(status);
  });
});

describe('filters', () => {
  it('matches strings exactly and /regex/ against the whole name', () => {
    expect(matchesPattern('main', 'main')).toBe(true);
    expect(matchesPattern('main', 'main2')).toBe(false);
    expect(matchesPattern('/release-.*/', 'release-1.2')).toBe(true);
    expect(matchesPattern('/release/', 'release-1.2')).toBe(false);
    expect(matchesPattern('/v\\d+/', 'v12')).toBe(true);
  });

  it('branch only/ignore, only before ignore', () => {
    const f = { branches: { only: ['/feature-.*/'], ignore: ['feature-skip'] } };
    expect(filtersAllow(f, { branch: 'feature-x' })).toBe(true);
    expect(filtersAllow(f, { branch: 'feature-skip' })).toBe(false);
    expect(filtersAllow(f, { branch: 'main' })).toBe(false);
    expect(filtersAllow({}, { branch: 'anything' })).toBe(true);
    expect(filtersAllow({ branches: { ignore: ['main'] } }, { branch: 'main' })).toBe(false);
  });

  it('tags run only with a matching tags filter; branch filters do not apply to tags', () => {
    expect(filtersAllow({}, { tag: 'v1' })).toBe(false);
    expect(filtersAllow({ tags: {} }, { tag: 'v1' })).toBe(false);
    expect(filtersAllow({ tags: { only: ['/v.*/'] } }, { tag: 'v1' })).toBe(true);
    expect(filtersAllow({ tags: { only: ['/v.*/'] }, branches: { ignore: ['/.*/'] } }, { tag: 'v1' })).toBe(
      true,
    );
    expect(
      filtersAllow({ tags: { only: ['/v.*/'] }, branches: { ignore: ['/.*/'] } }, { branch: 'main' }),
    ).toBe(false);
    expect(filtersAllow({ tags: { ignore: ['/beta.*/'] } }, { tag: 'beta1' })).toBe(false);
    expect(filtersAllow({ tags: { ignore: ['/beta.*/'] } }, { tag: 'v2' })).toBe(true);
  });

  const job = (name: string, requires: string[] = [], filters: WorkflowJob['filters'] = {}): WorkflowJob => ({
    name,
    job: name,
    type: 'build',
    requires: requires.map((r) => ({ name: r, statuses: ['success'] })),
    filters,
    context: [],
  });

  it('drops requirements on filtered jobs; a job whose requirements all went does not run', () => {
    const jobs = [
      job('build'),
      job('lint', [], { branches: { only: ['main'] } }),
      job('test', ['build', 'lint']),
      job('docs', ['lint']),
      job('publish', ['docs']),
    ];
    const kept = selectWorkflowJobs(jobs, { branch: 'dev' });
    expect(kept.map((j) => j.name)).toEqual(['build', 'test']);
    expect(kept.find((j) => j.name === 'test')?.requires.map((r) => r.name)).toEqual(['build']);
  });

  it('a tag job requiring an untagged job does not run', () => {
    const tags = { tags: { only: ['/v.*/'] } };
    const jobs = [job('build'), job('deploy', ['build'], tags), job('release', [], tags)];
    expect(selectWorkflowJobs(jobs, { tag: 'v1' }).map((j) => j.name)).toEqual(['release']);
  });
});

describe('task specs', () => {
  it('queue keys by executor; self-hosted classes as written', () => {
    expect(queueKeyOf({ type: 'docker', images: [] }, 'large')).toBe('docker:large');
    expect(queueKeyOf({ type: 'machine' }, 'medium')).toBe('machine:medium');
    expect(queueKeyOf({ type: 'macos', xcode: '15' }, 'm2pro.medium')).toBe('macos:m2pro.medium');
    expect(queueKeyOf({ type: 'machine' }, 'acme/runner')).toBe('acme/runner');
    expect(queueKeyOf({ type: 'none' }, 'acme/runner')).toBe('acme/runner');
  });

  it('one spec per parallel run with built-ins; the job environment wins', () => {
    const { resourceClass, specs } = buildTaskSpecs({
      job: { id: 'j1', name: 'test', number: 7 },
      compiled: {
        executor: { type: 'machine' },
        resourceClass: 'medium',
        workingDirectory: '~/project',
        parallelism: 2,
        environment: { CIRCLE_JOB: 'overridden', FOO: 'bar' },
        steps: [],
      },
      workflow: { id: 'w1', workspaceId: 'ws1' },
      pipeline: { id: 'p1', number: 3, branch: 'main', tag: null, revision: 'a'.repeat(40) },
      project: {
        id: 'pr1',
        slug: 'circleci/acme/app',
        name: 'app',
        orgId: 'o1',
        orgName: 'acme',
        vcsUrl: '/repo',
      },
      checkoutUrl: 'file:///repo',
      serverUrl: 'http://torus',
      previousBuildNum: 5,
    });
    expect(resourceClass).toBe('machine:medium');
    expect(specs).toHaveLength(2);
    expect(specs.map((s) => s.environment.CIRCLE_NODE_INDEX)).toEqual(['0', '1']);
    const env = specs[1]!.environment;
    expect(env).toMatchObject({
      CI: 'true',
      CIRCLECI: 'true',
      CIRCLE_BRANCH: 'main',
      CIRCLE_SHA1: 'a'.repeat(40),
      CIRCLE_BUILD_NUM: '7',
      CIRCLE_BUILD_URL: 'http://torus/pipelines/circleci/acme/app/3/workflows/w1/jobs/7',
      CIRCLE_NODE_TOTAL: '2',
      CIRCLE_JOB: 'overridden',
      CIRCLE_PREVIOUS_BUILD_NUM: '5',
      CIRCLE_WORKFLOW_WORKSPACE_ID: 'ws1',
      FOO: 'bar',
    });
    expect(env.CIRCLE_TAG).toBeUndefined();
    expect(specs[0]!.checkout).toEqual({ repoUrl: 'file:///repo', revision: 'a'.repeat(40), branch: 'main' });
  });
});

describe('repository URLs', () => {
  it('tells local paths from remote URLs and refuses command transports', () => {
    expect(classifyVcsUrl('/srv/repo')).toEqual({ local: true, path: '/srv/repo' });
    expect(classifyVcsUrl('file:///srv/repo')).toEqual({ local: true, path: '/srv/repo' });
    expect(classifyVcsUrl('https://git.example.com/acme/app.git')).toEqual({
      local: false,
      url: 'https://git.example.com/acme/app.git',
    });
    expect(classifyVcsUrl('git@github.com:acme/app.git')).toEqual({
      local: false,
      url: 'git@github.com:acme/app.git',
    });
    expect(vcsUrlProblem('ssh://git@host/acme/app.git')).toBeNull();
    expect(vcsUrlProblem('ext::sh -c id')).toMatch(/not supported/);
    expect(vcsUrlProblem('ftp://host/repo')).toMatch(/not supported/);
    expect(repoBaseName('git@github.com:acme/app.git')).toBe('app');
    expect(repoBaseName('/srv/repos/widget/')).toBe('widget');
  });
});
