// Authenticated pulls against a real registry: Debian's docker-registry with htpasswd on loopback
// (dockerd trusts it as an insecure registry, see test/harness/docker.ts), with `auth` and with
// `aws_auth` exchanged through a fake ECR endpoint. No credential may appear in the job's output.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { BUSYBOX_IMAGE, requireDocker } from '../../../test/harness/docker.js';
import { waitFor } from '../../../test/harness/net.js';
import { hasCommand, REQUIRE_ALL } from '../../../test/harness/parts.js';
import { startFakeEcr, type FakeEcr } from '../../../test/fakes/ecr.js';
import type { DockerImage } from '../../config/model.js';
import { runTask } from '../task.js';
import { MemorySink, runStep, taskSpec } from '../testing.js';
import { TASK_LABEL, type DockerExecutorOptions } from './index.js';

function requireRegistry(): boolean {
  if (!requireDocker('registry pull tests')) return false;
  if (hasCommand('docker-registry') && hasCommand('htpasswd') && process.env.TORUS_TEST_REGISTRY_PORT)
    return true;
  const line = 'SKIP registry pull tests: needs docker-registry and htpasswd (apache2-utils)';
  if (REQUIRE_ALL) throw new Error(line);
  console.warn(line);
  return false;
}

const hasRegistry = requireRegistry();
const USER = 'torus-puller';
const PASSWORD = 'right-registry-pw-7731';
const WRONG = 'wrong-registry-pw-9912';
const AWS_KEY = 'AKIATORUSTEST0001';
const AWS_SECRET = 'aws-secret-key-value-5521';

describe.runIf(hasRegistry)('authenticated pulls', () => {
  const docker = new Docker();
  const registry = `127.0.0.1:${process.env.TORUS_TEST_REGISTRY_PORT}`;
  const image = `${registry}/torus/private:1`;
  let dir: string;
  let proc: ChildProcess;
  let ecr: FakeEcr;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'torus-registry-'));
    const hash = spawnSync('htpasswd', ['-Bbn', USER, PASSWORD], { encoding: 'utf8' });
    writeFileSync(path.join(dir, 'htpasswd'), hash.stdout);
    writeFileSync(
      path.join(dir, 'config.yml'),
      `version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: ${dir}/data
http:
  addr: ${registry}
auth:
  htpasswd:
    realm: torus-test
    path: ${dir}/htpasswd
`,
    );
    proc = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: 'ignore' });
    await waitFor(async () => (await fetch(`http://${registry}/v2/`)).status === 401, 15_000, 100);
    // the image the jobs pull: the local busybox, pushed with the right credentials, then untagged here
    await docker.getImage(BUSYBOX_IMAGE).tag({ repo: `${registry}/torus/private`, tag: '1' });
    const push = await docker
      .getImage(image)
      .push({ authconfig: { username: USER, password: PASSWORD, serveraddress: registry } });
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(push, (err: Error | null, events: { error?: string }[]) => {
        const failed = err?.message ?? events.find((e) => e.error)?.error;
        if (failed) reject(new Error(failed));
        else resolve();
      }),
    );
    await docker.getImage(image).remove();
    ecr = await startFakeEcr({
      accessKeyId: AWS_KEY,
      username: USER,
      password: PASSWORD,
      proxyEndpoint: `https://${registry}`,
    });
  });

  afterAll(async () => {
    await ecr?.close();
    proc?.kill('SIGTERM');
    await docker
      .getImage(image)
      .remove()
      .catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    const ours = { label: [TASK_LABEL], name: [`torus-task-${process.pid}-`] };
    expect(await docker.listContainers({ all: true, filters: ours })).toEqual([]);
    await docker
      .getImage(image)
      .remove()
      .catch(() => undefined); // the next test pulls again
  });

  async function run(img: Partial<DockerImage>, options: DockerExecutorOptions = {}) {
    const sink = new MemorySink();
    const spec = taskSpec([runStep('head -1 /etc/passwd')], {
      executor: { type: 'docker', images: [{ image, environment: {}, ...img }] },
      resourceClass: 'small',
    });
    const result = await runTask(spec, sink, {
      workRoot: '/nonexistent',
      sandbox: 'none',
      signal: new AbortController().signal,
      docker: options,
    });
    const everything = [...sink.steps.values()].map((s) => s.out + s.err).join('') + (result.message ?? '');
    return { sink, result, everything };
  }

  function expectNoCredentials(text: string): void {
    for (const secret of [PASSWORD, WRONG, AWS_SECRET, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')])
      expect(text).not.toContain(secret);
  }

  it('pulls with the right credentials once, then uses the local image', async () => {
    const first = await run({ auth: { username: USER, password: PASSWORD } });
    expect(first.sink.step(0).out).toContain(`Pulling image ${image} from ${registry}`);
    expect(first.sink.step(2)).toMatchObject({ out: 'root:x:0:0:root:/root:/bin/sh\n', err: '' });
    expect(first.result, first.everything).toEqual({ status: 'success' });
    expectNoCredentials(first.everything);
    const second = await run({ auth: { username: USER, password: PASSWORD } });
    expect(second.result, second.everything).toEqual({ status: 'success' });
    expect(second.sink.step(0).out).toContain(`Using local image ${image}`);
    expect(second.sink.step(0).out).not.toContain('Pulling image');
  });

  it('fails the job with wrong credentials, naming image and registry, printing no credential', async () => {
    const { result, sink, everything } = await run({ auth: { username: USER, password: WRONG } });
    expect(result.status).toBe('failed');
    expect(result.message).toMatch(
      new RegExp(
        `^Failed to pull image ${image} from registry ${registry}: .*(unauthorized|authentication required)`,
      ),
    );
    expect(sink.step(0).status).toBe('failed');
    expect(sink.steps.has(2)).toBe(false);
    expectNoCredentials(everything);
  });

  it('fails the job for an image the registry does not have', async () => {
    const { result } = await run({
      image: `${registry}/torus/missing:1`,
      auth: { username: USER, password: PASSWORD },
    });
    expect(result.status).toBe('failed');
    expect(result.message).toMatch(
      new RegExp(
        `^Failed to pull image ${registry}/torus/missing:1 from registry ${registry}: .*(not found|manifest unknown)`,
      ),
    );
  });

  it('exchanges aws_auth keys for an ECR token and pulls with it', async () => {
    const before = ecr.calls.length;
    const ok = await run(
      { awsAuth: { accessKeyId: AWS_KEY, secretAccessKey: AWS_SECRET } },
      { ecrEndpoint: ecr.endpoint },
    );
    expect(ok.result, ok.everything).toEqual({ status: 'success' });
    expect(ecr.calls.slice(before)).toEqual(['AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken']);
    expectNoCredentials(ok.everything);

    await docker.getImage(image).remove();
    const bad = await run(
      { awsAuth: { accessKeyId: 'AKIAWRONGKEY00000', secretAccessKey: AWS_SECRET } },
      { ecrEndpoint: ecr.endpoint },
    );
    expect(bad.result.status).toBe('failed');
    expect(bad.result.message).toMatch(
      new RegExp(
        `^Failed to pull image ${image} from registry ${registry}: the ECR authorization token request .* failed: The security token included in the request is invalid`,
      ),
    );
    expectNoCredentials(bad.everything);
  });
});
