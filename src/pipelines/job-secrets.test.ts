// The claim hook on a real database: a job with `add_ssh_keys` steps gets the project keys they name
// (every key when one names none) with their private keys among the secrets to mask, other jobs get
// none; a job of a "rerun failed tests" workflow gets the failed tests of its previous run (also
// when that run was carried over from an earlier workflow), other jobs get nothing of the kind.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import { randomIds, systemClock } from '../ops/index.js';
import type { Step } from '../config/model.js';
import type { TaskSpec } from '../scheduler/index.js';
import { createSecretStore, openKeyring, type SecretStore, type SshKey } from '../secrets/index.js';
import type { Database } from '../storage/index.js';
import { anyFailedTests } from './failed-tests.js';
import { secretsPreparer } from './job-secrets.js';

function pem(type: 'rsa' | 'ed25519'): string {
  const { privateKey } =
    type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function sshStep(fingerprints?: string[]): Step {
  return {
    type: 'add_ssh_keys',
    name: 'Add SSH keys',
    when: 'on_success',
    args: fingerprints ? { fingerprints } : {},
  };
}

function spec(steps: Step[]): TaskSpec {
  return {
    taskId: randomUUID(),
    jobId: randomUUID(),
    jobNumber: 1,
    jobName: 'test',
    projectSlug: 'circleci/acme/app',
    nodeIndex: 0,
    nodeTotal: 1,
    executor: { type: 'machine' },
    resourceClass: 'machine:medium',
    workingDirectory: '~/project',
    environment: { CIRCLE_JOB: 'test' },
    steps,
    checkout: { repoUrl: 'file:///x', revision: '0'.repeat(40) },
    secrets: [],
  };
}

describe.each(databaseKinds())('prepareTask on %s', (kind) => {
  let db: Database;
  let dir: string;
  let store: SecretStore;
  let prepare: ReturnType<typeof secretsPreparer>;
  const projectId = randomUUID();
  const pipelineId = randomUUID();
  const keys: { rsa: string; ed: string; rsaKey?: SshKey; edKey?: SshKey } = {
    rsa: pem('rsa'),
    ed: pem('ed25519'),
  };

  const workflow = async (opts: { rerunOf?: string; failedTests?: boolean } = {}) => {
    const id = randomUUID();
    await db.query(
      `INSERT INTO workflows (id, pipeline_id, project_id, name, status, workspace_id, rerun_of, rerun_failed_tests)
       VALUES ($1, $2, $3, 'w', 'failed', $4, $5, $6)`,
      [id, pipelineId, projectId, opts.rerunOf ?? id, opts.rerunOf ?? null, opts.failedTests ?? false],
    );
    return id;
  };
  const job = async (workflowId: string, name: string, copiedFrom?: string) => {
    const id = randomUUID();
    await db.query(
      `INSERT INTO jobs (id, workflow_id, project_id, name, type, status, copied_from)
       VALUES ($1, $2, $3, $4, 'build', 'failed', $5)`,
      [id, workflowId, projectId, name, copiedFrom ?? null],
    );
    return id;
  };
  const results = async (jobId: string, tests: Array<[string, string, string | null, string, number?]>) => {
    let seq = 0;
    for (const [name, classname, file, result, node] of tests) {
      await db.query(
        `INSERT INTO test_results (job_id, node_index, seq, name, classname, file, result, run_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1)`,
        [jobId, node ?? 0, seq++, name, classname, file, result],
      );
    }
  };

  beforeAll(async () => {
    db = await openTestDatabase(kind);
    dir = mkdtempSync(join(tmpdir(), 'torus-prepare-'));
    store = createSecretStore({ db, clock: systemClock, ids: randomIds }, openKeyring({ dataDir: dir }));
    prepare = secretsPreparer(db, store);
    const orgId = randomUUID();
    await db.query(`INSERT INTO organizations (id, name, slug) VALUES ($1, 'acme', 'circleci/acme')`, [
      orgId,
    ]);
    await db.query(
      `INSERT INTO projects (id, org_id, name, slug, vcs_url, default_branch)
       VALUES ($1, $2, 'app', 'circleci/acme/app', 'file:///x', 'main')`,
      [projectId, orgId],
    );
    await db.query(
      `INSERT INTO pipelines (id, project_id, number, state, trigger_type) VALUES ($1, $2, 1, 'pending', 'api')`,
      [pipelineId, projectId],
    );
    keys.rsaKey = await store.addSshKey(projectId, { privateKey: keys.rsa, hostname: 'git.example.com' });
    keys.edKey = await store.addSshKey(projectId, { privateKey: keys.ed });
  });
  afterAll(async () => {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives SSH keys only to jobs with add_ssh_keys, only those named, masked', async () => {
    const wf = await workflow();
    const jobId = await job(wf, 'deploy');

    const plain = await prepare(jobId, spec([]));
    expect('refuse' in plain).toBe(false);
    expect((plain as TaskSpec).sshKeys).toBeUndefined();
    expect((plain as TaskSpec).secrets).toEqual([]);

    const one = (await prepare(jobId, spec([sshStep([keys.edKey!.fingerprintSha256, 'ff:ff'])]))) as TaskSpec;
    expect(one.sshKeys).toEqual([
      {
        fingerprint: keys.edKey!.fingerprint,
        fingerprintSha256: keys.edKey!.fingerprintSha256,
        hostname: '',
        privateKey: keys.ed,
      },
    ]);
    expect(one.secrets).toEqual([keys.ed.trim()]);

    const all = (await prepare(jobId, spec([sshStep([keys.rsaKey!.fingerprint]), sshStep()]))) as TaskSpec;
    expect(all.sshKeys?.map((k) => k.hostname).sort()).toEqual(['', 'git.example.com']);
    expect([...all.secrets].sort()).toEqual([keys.ed.trim(), keys.rsa.trim()].sort());
  });

  it('gives a job of a failed-tests rerun the failed tests of its previous run, each once', async () => {
    const first = await workflow();
    const firstTest = await job(first, 'test');
    await job(first, 'lint');
    await results(firstTest, [
      ['a1', 'A', 'spec/a_spec.rb', 'success'],
      ['b1', 'B', 'spec/b_spec.rb', 'failure'],
      ['b1', 'B', 'spec/b_spec.rb', 'failure', 1],
      ['c1', 'C', null, 'error', 1],
      ['d1', 'D', 'spec/d_spec.rb', 'skipped'],
    ]);
    expect(await anyFailedTests(db, [firstTest])).toBe(true);

    const plainRerun = await workflow({ rerunOf: first });
    const plainJob = await job(plainRerun, 'test');
    expect(((await prepare(plainJob, spec([]))) as TaskSpec).rerunFailedTests).toBeUndefined();

    const rerun = await workflow({ rerunOf: first, failedTests: true });
    const rerunJob = await job(rerun, 'test');
    const prepared = (await prepare(rerunJob, spec([]))) as TaskSpec;
    expect(prepared.rerunFailedTests).toEqual({
      workflowId: first,
      totalTests: 5,
      failed: [
        { name: 'b1', classname: 'B', file: 'spec/b_spec.rb' },
        { name: 'c1', classname: 'C' },
      ],
    });

    // the lint job's previous run stored no test results: nothing failed, every test runs
    const rerunLint = await job(rerun, 'lint');
    expect(((await prepare(rerunLint, spec([]))) as TaskSpec).rerunFailedTests).toEqual({
      workflowId: first,
      totalTests: 0,
      failed: [],
    });

    // a rerun of a workflow whose `test` was carried over: the results are the original's
    const middle = await workflow({ rerunOf: first });
    await job(middle, 'test', firstTest);
    expect(await anyFailedTests(db, [firstTest, randomUUID()])).toBe(true);
    const third = await workflow({ rerunOf: middle, failedTests: true });
    const thirdJob = await job(third, 'test');
    expect(((await prepare(thirdJob, spec([]))) as TaskSpec).rerunFailedTests?.failed).toHaveLength(2);
    expect(await anyFailedTests(db, [plainJob])).toBe(false);
  });
});
