// The `torus` CLI against a real server: add a project, trigger and watch a pipeline, list
// pipelines, and a git hook that triggers a pipeline on commit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTorusServer, api, makeGitRepo, TORUS_BIN, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const run = promisify(execFile);
const CONFIG = `version: 2
jobs:
  hello:
    machine: true
    steps:
      - checkout
      - run:
          name: Say hello
          command: echo "hello from the cli test"
workflows:
  version: 2
  w:
    jobs: [hello]
`;

describe('torus CLI', () => {
  let server: TorusProcess;
  let repo: string;
  const torus = (...args: string[]) =>
    run(process.execPath, [TORUS_BIN, ...args], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TORUS_SERVER: server.url,
        TORUS_TOKEN: server.token,
      },
    });

  beforeAll(async () => {
    server = await startTorusServer({ localAgents: 1 });
    repo = makeGitRepo({ '.circleci/config.yml': CONFIG, 'a.txt': 'a' });
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('adds a project, triggers and watches a pipeline to success, and lists it', async () => {
    const add = await torus('project', 'add', repo, '--org', 'cli', '--name', 'demo');
    expect(add.stdout.trim()).toBe('circleci/cli/demo');
    const list = await torus('project', 'list');
    expect(list.stdout).toContain('circleci/cli/demo');

    const trig = await torus(
      'pipeline',
      'trigger',
      '--project',
      'circleci/cli/demo',
      '--branch',
      'main',
      '--watch',
    );
    expect(trig.stdout).toMatch(/pipeline #1 /);
    expect(trig.stdout).toMatch(/\[w\/hello\] running/);
    expect(trig.stdout).toContain('hello from the cli test');
    expect(trig.stdout).toMatch(/Workflow w: success/);

    const pipelines = await torus('pipeline', 'list', '--project', 'circleci/cli/demo');
    expect(pipelines.stdout).toMatch(/^#1\tpending\tbranch main/m);
  });

  it('exits non-zero with a clear message for an unknown project or a bad token', async () => {
    await expect(torus('pipeline', 'trigger', '--project', 'circleci/cli/nope')).rejects.toMatchObject({
      stderr: expect.stringMatching(/404/),
    });
    await expect(
      run(process.execPath, [TORUS_BIN, 'project', 'list'], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          TORUS_SERVER: server.url,
          TORUS_TOKEN: 'wrong',
        },
      }),
    ).rejects.toMatchObject({ stderr: expect.stringMatching(/401/) });
  });

  it('says in `pipeline watch` why a job stays queued', async () => {
    const dockerRepo = makeGitRepo({
      '.circleci/config.yml': `version: 2.1
jobs:
  in-docker:
    docker:
      - image: cimg/base:stable
    steps:
      - run: echo hi
workflows:
  w:
    jobs: [in-docker]
`,
    });
    await torus('project', 'add', dockerRepo, '--org', 'cli', '--name', 'docker');
    const trig = await torus('pipeline', 'trigger', '--project', 'circleci/cli/docker');
    const id = /pipeline #\d+ (\S+)/.exec(trig.stdout)![1]!;
    const watch = spawn(process.execPath, [TORUS_BIN, 'pipeline', 'watch', id], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TORUS_SERVER: server.url,
        TORUS_TOKEN: server.token,
      },
    });
    let out = '';
    watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => /waiting: .*docker/.test(out), 30_000);
    } finally {
      watch.kill();
    }
    expect(out).toMatch(/\[w\/in-docker\] queued/);
    expect(out).toMatch(/waiting: .*"docker:medium"/);
  });

  it('installs a git hook that triggers a pipeline for the committed branch', async () => {
    await torus('project', 'hook', 'install', repo, '--project', 'circleci/cli/demo');
    const git = (...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=T', '-c', 'user.email=t@torus.invalid', ...args], {
        cwd: repo,
        stdio: 'pipe',
      });
    git('checkout', '-q', '-b', 'feature/hooked');
    writeFileSync(join(repo, 'b.txt'), 'b');
    git('add', '-A');
    git('commit', '-q', '-m', 'hooked commit');
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
    const p = await waitFor(async () => {
      const r = await api<{ items: Array<{ vcs: { branch?: string; revision?: string } }> }>(
        server.url,
        'GET',
        '/api/v2/project/circleci/cli/demo/pipeline?branch=feature%2Fhooked',
      );
      // the revision is filled in once the pipeline's config is fetched, after the row appears
      const first = r.body.items[0];
      return first?.vcs.revision ? first : undefined;
    }, 20_000);
    expect(p.vcs.branch).toBe('feature/hooked');
    expect(p.vcs.revision).toBe(sha);
  });
});
