// store_artifacts and store_test_results on real environments (the host executor, and a busybox
// container on the test harness's dockerd), uploading to a BlobClient that records what it is given.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { requirePart } from '../../../test/harness/parts.js';
import type { Step } from '../../config/model.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import type { Environment, Executor } from '../executor.js';
import { DockerExecutor, HostExecutor } from '../executors/index.js';
import { processesMatching, taskSpec } from '../testing.js';
import { waitFor } from '../../../test/harness/net.js';
import { ARTIFACT_STEP_HANDLERS, artifactDestination } from './artifacts.js';
import { execCollect } from './artifacts.js';
import type { StepResult } from './context.js';
import { recordingBlobClient, type RecordingBlobClient } from './testing-blobs.js';

const hasBwrap = requirePart('bwrap', 'store_artifacts in the host sandbox');
const hasDocker = requireDocker('store_artifacts in a busybox container');

let base: string;
beforeAll(() => {
  base = mkdtempSync(path.join(tmpdir(), 'torus-artifacts-'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const kinds: Array<{ name: string; executor: () => Executor; spec: () => TaskSpec }> = [
  {
    name: 'host',
    executor: () =>
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: hasBwrap ? 'bwrap' : 'none' }),
    spec: () => taskSpec([]),
  },
  {
    name: 'docker',
    executor: () => new DockerExecutor({ docker: new Docker() }),
    spec: () =>
      taskSpec([], {
        executor: { type: 'docker', images: [{ image: BUSYBOX_IMAGE, environment: {} }] },
        resourceClass: 'small',
      }),
  },
];

const JUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="math" tests="2">
    <testcase classname="math.Add" name="adds" file="test/add.test.js" time="1.5"/>
    <testcase classname="math.Sub" name="subtracts" file="test/sub.test.js" time="0.25">
      <failure message="expected 1">expected 1 to equal 2</failure>
    </testcase>
  </testsuite>
</testsuites>
`;

function step(type: string, args: Record<string, unknown>): Step {
  return { type, name: type, when: 'always', args };
}

describe.each(kinds.filter((k) => k.name === 'host' || hasDocker))('$name environment', (kind) => {
  let env: Environment;
  let blobs: RecordingBlobClient;
  let printed: string;

  beforeAll(async () => {
    env = await kind.executor().prepare(kind.spec(), () => undefined, new AbortController().signal);
  }, 60_000);
  afterAll(async () => {
    await env?.dispose();
  });
  beforeEach(() => {
    blobs = recordingBlobClient();
    printed = '';
  });

  async function sh(script: string): Promise<void> {
    const r = await execCollect(env, env.jobEnvironment, ['/bin/sh', '-c', script]);
    expect(r.err).toBe('');
    expect(r.exitCode).toBe(0);
  }

  function run(
    type: string,
    args: Record<string, unknown>,
    signal = new AbortController().signal,
  ): Promise<StepResult> {
    const handler = ARTIFACT_STEP_HANDLERS[type];
    if (!handler) throw new Error(`no handler for ${type}`);
    return handler(step(type, args), {
      spec: kind.spec(),
      environment: env,
      env: env.jobEnvironment,
      index: 2,
      print: (t) => (printed += t),
      signal,
      blobs,
    });
  }

  it('uploads every file of a directory under the destination, links resolved to their files', async () => {
    const dir = `${env.workingDirectory}/out`;
    await sh(
      `mkdir -p ${dir}/nested/deeper && printf 'hello' > ${dir}/a.txt && printf 'deep' > ${dir}/nested/deeper/b.log` +
        ` && ln -s a.txt ${dir}/link-to-a && ln ${dir}/nested/deeper/b.log ${dir}/hard.log && ln -s nested ${dir}/dirlink` +
        ` && head -c 3000000 /dev/urandom > ${dir}/big.bin`,
    );
    const result = await run('store_artifacts', { path: 'out', destination: 'reports' });
    expect(result.status).toBe('success');
    expect([...blobs.artifacts.keys()].sort()).toEqual([
      'reports/a.txt',
      'reports/big.bin',
      'reports/hard.log',
      'reports/link-to-a',
      'reports/nested/deeper/b.log',
    ]);
    expect(blobs.artifacts.get('reports/a.txt')?.toString()).toBe('hello');
    expect(blobs.artifacts.get('reports/link-to-a')?.toString()).toBe('hello');
    expect(blobs.artifacts.get('reports/hard.log')?.toString()).toBe('deep');
    expect(blobs.artifacts.get('reports/nested/deeper/b.log')?.toString()).toBe('deep');
    expect(blobs.artifacts.get('reports/big.bin')?.length).toBe(3_000_000);
    expect(printed).toContain(`Uploading ${dir} to reports\n`);
    expect(printed).toContain(`  ${dir}/nested/deeper/b.log (4 B)\n`);
    expect(printed).toContain('Uploaded 5 artifacts');
  });

  it('fails the step when an upload fails, without leaving the reading process behind', async () => {
    const dir = `${env.workingDirectory}/upload-fails-marker`;
    await sh(`mkdir -p ${dir} && for i in 1 2 3; do head -c 400000 /dev/urandom > ${dir}/f$i; done`);
    blobs.putArtifact = async (_path, body) => {
      body.destroy();
      throw new Error('the server said 507: no space left for artifacts');
    };
    await expect(run('store_artifacts', { path: dir, destination: 'x' })).rejects.toThrow(/507/);
    if (kind.name === 'host') {
      await waitFor(() => processesMatching('upload-fails-marker').length === 0, 5_000, 50);
    }
    // the environment still works
    await sh('true');
  });

  it('stops between files when the task is canceled', async () => {
    const dir = `${env.workingDirectory}/cancel-me`;
    await sh(`mkdir -p ${dir} && printf 1 > ${dir}/a && printf 2 > ${dir}/b`);
    const ac = new AbortController();
    const upload = blobs.putArtifact.bind(blobs);
    blobs.putArtifact = async (p, body) => {
      const r = await upload(p, body);
      ac.abort();
      return r;
    };
    const result = await run('store_artifacts', { path: dir, destination: 'c' }, ac.signal);
    expect(result.status).toBe('canceled');
    expect(blobs.artifacts.size).toBe(1);
  });

  it('names a single file by its destination, and by its own path without one', async () => {
    await sh(`mkdir -p /tmp/single && printf 'x1' > /tmp/single/artifact-1`);
    expect(
      (await run('store_artifacts', { path: '/tmp/single/artifact-1', destination: 'artifact-file' })).status,
    ).toBe('success');
    expect((await run('store_artifacts', { path: '/tmp/single' })).status).toBe('success');
    expect(Object.fromEntries([...blobs.artifacts].map(([k, v]) => [k, v.toString()]))).toEqual({
      'artifact-file': 'x1',
      'tmp/single/artifact-1': 'x1',
    });
    expect(printed).toContain('Uploading /tmp/single to tmp/single\n');
  });

  it('warns and succeeds when the path does not exist, as CircleCI does', async () => {
    const result = await run('store_artifacts', { path: 'no-such-dir', destination: 'x' });
    expect(result.status).toBe('success');
    expect(printed).toContain(`No artifact files found at ${env.workingDirectory}/no-such-dir`);
    expect(blobs.artifacts.size).toBe(0);
  });

  it('refuses a destination that climbs out of the artifacts', async () => {
    await sh(`mkdir -p /tmp/esc && printf 'e' > /tmp/esc/f`);
    const result = await run('store_artifacts', { path: '/tmp/esc', destination: '../../etc' });
    expect(result.status).toBe('failed');
    expect(printed).toContain("has a '..' segment");
    expect(blobs.artifacts.size).toBe(0);
  });

  it('parses the JUnit reports of a directory and uploads their test cases', async () => {
    const dir = `${env.workingDirectory}/test-results`;
    await env.writeFile(`${dir}/jest/junit.xml`, JUNIT);
    await env.writeFile(`${dir}/notes.txt`, 'not a report');
    await env.writeFile(`${dir}/coverage.xml`, '<coverage line-rate="1"/>');
    const result = await run('store_test_results', { path: 'test-results' });
    expect(result.status).toBe('success');
    expect(blobs.testResults).toHaveLength(1);
    expect(blobs.testResults[0]).toEqual([
      { name: 'adds', classname: 'math.Add', file: 'test/add.test.js', result: 'success', runTime: 1.5 },
      {
        name: 'subtracts',
        classname: 'math.Sub',
        file: 'test/sub.test.js',
        result: 'failure',
        message: 'expected 1 to equal 2',
        runTime: 0.25,
      },
    ]);
    expect(printed).toContain(`  ${dir}/jest/junit.xml (2 tests)\n`);
    expect(printed).toContain(`${dir}/coverage.xml: not a JUnit report`);
    expect(printed).toContain('Uploaded 2 test results');
  });

  it('fails naming the file when a report is not XML', async () => {
    const dir = `${env.workingDirectory}/broken-results`;
    await env.writeFile(`${dir}/good.xml`, JUNIT);
    await env.writeFile(`${dir}/bad.xml`, 'Tests passed: 12\n');
    const result = await run('store_test_results', { path: dir });
    expect(result.status).toBe('failed');
    expect(printed).toContain(`${dir}/bad.xml is not a valid JUnit XML file`);
    expect(blobs.testResults).toHaveLength(0);
  });

  it('succeeds with a note when there are no results', async () => {
    const result = await run('store_test_results', { path: '/tmp/nothing-here' });
    expect(result.status).toBe('success');
    expect(printed).toContain('No test results found at /tmp/nothing-here');
    expect(blobs.testResults).toHaveLength(0);
  });
});

describe('artifactDestination', () => {
  it('normalizes the prefix and refuses path traversal', () => {
    expect(artifactDestination('/reports//./coverage/')).toBe('reports/coverage');
    expect(artifactDestination('.')).toBe('');
    expect(() => artifactDestination('a/../../b')).toThrow(/'\.\.' segment/);
  });
});
