// Caches through real processes: the server's own agent (`--local`, host executor) saves and
// restores a cache by writing and reading the archive file in the server's filesystem store itself,
// and with TORUS_AGENT_CACHE_FILES=0 sends and fetches it over HTTP; both restore the same tree.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, jobOutput, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const CONFIG = `version: 2.1
jobs:
  save:
    machine: true
    steps:
      - run: mkdir -p ~/deps/sub && echo one > ~/deps/a.txt && echo two > ~/deps/sub/b.txt && ln -s a.txt ~/deps/link
      - save_cache:
          key: deps-{{ .Branch }}
          paths: [~/deps]
  restore:
    machine: true
    steps:
      - restore_cache:
          keys: [deps-]
      - run: cat ~/deps/a.txt ~/deps/sub/b.txt && readlink ~/deps/link
workflows:
  w:
    jobs: [save, { restore: { requires: [save] } }]
`;

const servers: TorusProcess[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const s of servers) await s.kill('SIGTERM');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.each<{ how: string; env: Record<string, string>; saved: string }>([
  { how: "as the store's files", env: {}, saved: 'Storing cache archive...' },
  { how: 'over HTTP', env: { TORUS_AGENT_CACHE_FILES: '0' }, saved: 'Uploading cache archive...' },
])('a local agent saves and restores a cache $how', ({ env, saved }) => {
  it('restores what the previous job saved', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'torus-e2e-cache-'));
    dirs.push(dataDir);
    const server = await startTorusServer({ localAgents: 1, dataDir, env });
    servers.push(server);
    const repo = makeGitRepo({ '.circleci/config.yml': CONFIG });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/caches/project', {
      name: 'caches',
      vcs_url: repo,
    });
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${p.body.slug}/pipeline`, {});
    const wf = await waitFor(async () => {
      const r = await api<{ items: Array<{ id: string; status: string }> }>(
        server.url,
        'GET',
        `/api/v2/pipeline/${trig.body.id}/workflow`,
      );
      const w = r.body.items[0];
      return w && !['running', 'not_run', 'on_hold'].includes(w.status) ? w : false;
    }, 90_000);
    const jobs = await api<{ items: Array<{ name: string; job_number: number }> }>(
      server.url,
      'GET',
      `/api/v2/workflow/${wf.id}/job`,
    );
    const number = (name: string) => jobs.body.items.find((j) => j.name === name)!.job_number;
    const saveOut = await jobOutput(server, p.body.slug, number('save'));
    const restoreOut = await jobOutput(server, p.body.slug, number('restore'));
    expect(wf.status, `${saveOut}\n${restoreOut}`).toBe('success');
    expect(saveOut).toContain(saved);
    expect(saveOut).toMatch(/Stored Cache to deps-main/);
    expect(restoreOut).toContain('Found a cache at deps-main');
    expect(restoreOut).toContain('one\ntwo\na.txt\n');
    // one archive in the store, nothing left staged
    const projects = readdirSync(join(dataDir, 'objects', 'caches'));
    expect(projects).toHaveLength(1);
    expect(readdirSync(join(dataDir, 'objects', 'caches', projects[0]!))).toHaveLength(1);
    const staging = join(dataDir, 'objects', '.staging');
    expect(existsSync(staging) ? readdirSync(staging) : []).toEqual([]);
  }, 120_000);
});
