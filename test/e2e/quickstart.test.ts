// The quick start as a new user meets it: `torus server --demo` (what `npm start` runs) creates the
// demo project, runs its pipeline to success, prints the URL and the admin token once, and a second
// start reuses the data directory and the project.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTorusServer, api, type TorusProcess } from '../harness/torus.js';

describe('quick start: torus server --demo', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'torus-quickstart-'));
  let server: TorusProcess | undefined;
  afterAll(async () => {
    await server?.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the demo pipeline to success and prints the URL and a one-time admin token', async () => {
    server = await startTorusServer({
      dataDir,
      args: ['--demo'],
      env: { TORUS_ADMIN_TOKEN: '' },
      readyText: /Demo pipeline (succeeded|did not succeed)/,
    });
    const out = server.output();
    expect(out).toContain('Demo pipeline succeeded');
    expect(out).toMatch(/Torus is serving at http:\/\/127\.0\.0\.1:\d+/);
    const token = /Admin API token \(shown once, keep it\): (\S+)/.exec(out)?.[1];
    expect(token).toBeTruthy();
    // the three jobs, build after lint and test
    expect(out).toMatch(/demo\/lint\s+success/);
    expect(out).toMatch(/demo\/test\s+success/);
    expect(out).toMatch(/demo\/build\s+success/);

    const me = await api<{ login: string }>(server.url, 'GET', '/api/v2/me', undefined, token);
    expect(me.status).toBe(200);
    expect(me.body.login).toBe('admin');
    const pipelines = await api<{ items: Array<{ number: number; state: string }> }>(
      server.url,
      'GET',
      '/api/v2/project/circleci/demo/hello-torus/pipeline',
      undefined,
      token,
    );
    expect(pipelines.body.items.map((p) => p.number)).toEqual([1]);
    await server.kill('SIGTERM');

    // Second start: same data, same project, no new token printed, the old token still works.
    server = await startTorusServer({
      dataDir,
      args: ['--demo'],
      env: { TORUS_ADMIN_TOKEN: '' },
      readyText: /Demo pipeline (succeeded|did not succeed)/,
    });
    expect(server.output()).toContain('Demo pipeline succeeded');
    expect(server.output()).not.toContain('shown once');
    const again = await api<{ items: Array<{ number: number }> }>(
      server.url,
      'GET',
      '/api/v2/project/circleci/demo/hello-torus/pipeline',
      undefined,
      token,
    );
    expect(again.body.items.map((p) => p.number).sort()).toEqual([1, 2]);
  });
});
