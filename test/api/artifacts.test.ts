// Artifacts, test results, caches and workspaces end to end over HTTP: an agent uploads through the
// agent blob routes (agent token + lease), a user reads through API v2 (checked against the spec)
// and downloads artifacts with safe content types. Also: one artifact round trip on S3 (s3rver).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance, FastifyRequest, InjectOptions } from 'fastify';
import { buildApp } from '../../src/api/index.js';
import { agentBlobRoutes } from '../../src/api/agent-blobs.js';
import { registerArtifactRoutes } from '../../src/api/routes-artifacts.js';
import { requestToken, setUser } from '../../src/api/http.js';
import { createAccounts, type Accounts } from '../../src/accounts/index.js';
import { createBlobs, type Blobs, type TestCase } from '../../src/blobs/index.js';
import { AGENT_API_PREFIX, createScheduler, type Scheduler } from '../../src/scheduler/index.js';
import { readObjectText } from '../../src/storage/index.js';
import { startTestS3Server } from '../../src/storage/s3-test-server.js';
import { TorusError } from '../../src/ops/index.js';
import { databaseKinds } from '../harness/db.js';
import { loadOpenApi } from '../harness/openapi.js';
import { fakeEngine, seedPipeline, type Seeded } from './fakes.js';
import { openTestResources, truncateAll, type TestResources } from './resources.js';

const openapi = loadOpenApi();
const ADMIN_TOKEN = 'admin-token-for-artifact-tests';
const SLUG = 'circleci/acme/widget';

/** Mounts the blob routes as src/api/index.ts is to (unless it already does). */
async function mount(app: FastifyInstance, res: TestResources, scheduler: Scheduler, accounts: Accounts) {
  const blobs = createBlobs(res);
  if (!app.hasRoute({ method: 'GET', url: '/api/v2/project/:vcs/:org/:repo/:number/artifacts' })) {
    await app.register(agentBlobRoutes({ scheduler, blobs }), { prefix: AGENT_API_PREFIX });
    await app.register(async (api) => {
      api.addHook('onRequest', async (req: FastifyRequest) => {
        const token = requestToken(req);
        const user = token ? await accounts.authenticate(token) : null;
        if (!user) throw new TorusError('TORUS_E_UNAUTHORIZED', 'You must log in first.');
        setUser(req, user);
      });
      registerArtifactRoutes(api, { res, blobs });
    });
  }
  return blobs;
}

describe.each(databaseKinds())('artifacts, tests, caches and workspaces on %s', (kind) => {
  let res: TestResources;
  let app: FastifyInstance;
  let scheduler: Scheduler;
  let agentToken: string;
  let seeded: Seeded;
  let lease: string;

  beforeAll(async () => {
    res = await openTestResources(kind);
    const accounts = createAccounts(res);
    scheduler = createScheduler(res, { onTaskStarted: async () => {}, onJobFinished: async () => {} });
    app = await buildApp(res, { engine: fakeEngine(res), scheduler, accounts });
    await mount(app, res, scheduler, accounts);
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await scheduler?.stop();
    await res?.close();
  });
  beforeEach(async () => {
    res.settings.unsafeArtifacts = false;
    await truncateAll(res);
    await createAccounts(res).bootstrapAdmin(ADMIN_TOKEN);
    agentToken = (await scheduler.createAgentToken('*', 'blob tests')).token;
    seeded = await seedPipeline(res, null);
    lease = await holdLease(seeded.taskId);
  });

  /** Gives a running task a live lease, as a claim does. */
  async function holdLease(taskId: string): Promise<string> {
    const leaseId = res.ids.uuid();
    await res.db.query(
      `UPDATE tasks SET status = 'running', lease_id = $2, lease_expires_at = now() + interval '1 hour' WHERE id = $1`,
      [taskId, leaseId],
    );
    return leaseId;
  }

  /** A job `name` (with a running, leased task) in a new pipeline on `branch`; requires as given. */
  async function jobOn(
    branch: string,
    name: string,
    opts: { workflowId?: string; requires?: string[]; position?: number } = {},
  ) {
    const { db, ids } = res;
    let workflowId = opts.workflowId;
    if (!workflowId) {
      const pipelineId = ids.uuid();
      workflowId = ids.uuid();
      const n = await db.query<{ n: number }>(
        'UPDATE projects SET next_pipeline_number = next_pipeline_number + 1 WHERE id = $1 RETURNING next_pipeline_number - 1 AS n',
        [seeded.projectId],
      );
      await db.query(
        `INSERT INTO pipelines (id, project_id, number, state, trigger_type, branch) VALUES ($1, $2, $3, 'created', 'api', $4)`,
        [pipelineId, seeded.projectId, n.rows[0]!.n, branch],
      );
      await db.query(
        `INSERT INTO workflows (id, pipeline_id, project_id, name, status, workspace_id) VALUES ($1, $2, $3, 'w', 'running', $1)`,
        [workflowId, pipelineId, seeded.projectId],
      );
    }
    const jobId = ids.uuid();
    const taskId = ids.uuid();
    const num = await db.query<{ n: number }>(
      'UPDATE projects SET next_job_number = next_job_number + 1 WHERE id = $1 RETURNING next_job_number - 1 AS n',
      [seeded.projectId],
    );
    await db.query(
      `INSERT INTO jobs (id, workflow_id, project_id, name, type, number, status, requires, position, created_at)
       VALUES ($1, $2, $3, $4, 'build', $5, 'running', $6, $7, now())`,
      [
        jobId,
        workflowId,
        seeded.projectId,
        name,
        num.rows[0]!.n,
        JSON.stringify((opts.requires ?? []).map((r) => ({ name: r, statuses: ['success'] }))),
        opts.position ?? 0,
      ],
    );
    await db.query(
      `INSERT INTO tasks (id, job_id, node_index, resource_class, status, spec) VALUES ($1, $2, 0, 'machine:medium', 'running', '{}')`,
      [taskId, jobId],
    );
    return { jobId, taskId, workflowId, number: num.rows[0]!.n, lease: await holdLease(taskId) };
  }

  async function finishJob(jobId: string, status = 'success') {
    await res.db.query(`UPDATE jobs SET status = $2, stopped_at = now() WHERE id = $1`, [jobId, status]);
  }

  function agent(
    method: InjectOptions['method'],
    path: string,
    opts: {
      body?: unknown;
      raw?: string | Buffer;
      lease?: string | null;
      taskId?: string;
      headers?: Record<string, string>;
    } = {},
  ) {
    const headers: Record<string, string> = { authorization: `Bearer ${agentToken}`, ...opts.headers };
    const l = opts.lease === undefined ? lease : opts.lease;
    if (l) headers['x-torus-lease'] = l;
    let payload: string | Buffer | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(opts.body);
    } else if (opts.raw !== undefined) {
      headers['content-type'] = 'application/octet-stream';
      payload = opts.raw;
    }
    return app.inject({
      method,
      url: `${AGENT_API_PREFIX}/tasks/${opts.taskId ?? seeded.taskId}${path}`,
      headers,
      ...(payload !== undefined ? { payload } : {}),
    });
  }

  let port: number | undefined;
  async function listening(): Promise<number> {
    port ??= Number(new URL(await app.listen({ port: 0, host: '127.0.0.1' })).port);
    return port;
  }

  /** A GET over a real socket with the path sent exactly as written; resolves to the status. */
  async function rawGet(path: string): Promise<number> {
    const p = await listening();
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: p, path, headers: { 'circle-token': ADMIN_TOKEN } },
        (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  function user(url: string, token: string | null = ADMIN_TOKEN) {
    return app.inject({ method: 'GET', url, headers: token ? { 'circle-token': token } : {} });
  }

  describe('artifacts', () => {
    it('stores uploads and lists them with download URLs in the spec shape', async () => {
      const put = await agent('PUT', '/artifacts?path=reports/junit.xml', { raw: '<testsuite/>' });
      expect(put.statusCode).toBe(201);
      expect(put.json()).toEqual({ path: 'reports/junit.xml', size: 12 });
      expect(
        (
          await agent('PUT', `/artifacts?path=${encodeURIComponent('/coverage/my report.html')}`, {
            raw: '<h1>hi</h1>',
          })
        ).json(),
      ).toEqual({ path: 'coverage/my report.html', size: 11 });
      // re-uploading a path replaces it
      await agent('PUT', '/artifacts?path=reports/junit.xml', { raw: '<testsuite tests="1"/>' });

      const r = await user(`/api/v2/project/${SLUG}/1/artifacts`);
      expect(r.statusCode).toBe(200);
      openapi.assertResponse('getJobArtifacts', 200, r.json());
      expect(r.json()).toEqual({
        items: [
          {
            path: 'coverage/my report.html',
            node_index: 0,
            url: `http://torus.test/api/v2/project/${SLUG}/1/artifacts/0/coverage/my%20report.html`,
          },
          {
            path: 'reports/junit.xml',
            node_index: 0,
            url: `http://torus.test/api/v2/project/${SLUG}/1/artifacts/0/reports/junit.xml`,
          },
        ],
        next_page_token: null,
      });
      const dl = await user(new URL(r.json().items[1].url).pathname);
      expect(dl.statusCode).toBe(200);
      expect(dl.body).toBe('<testsuite tests="1"/>');
      const spaced = await user(new URL(r.json().items[0].url).pathname);
      expect(spaced.body).toBe('<h1>hi</h1>');
      expect(spaced.headers['content-type']).toBe('text/plain; charset=utf-8');
      // bigger than the API's JSON body limit: uploads stream, they are not parsed
      const big = Buffer.alloc(9 * 1024 * 1024, 1);
      expect((await agent('PUT', '/artifacts?path=big.bin', { raw: big })).json()).toEqual({
        path: 'big.bin',
        size: big.length,
      });
      // an empty job lists nothing
      expect((await user(`/api/v2/project/${SLUG}/2/artifacts`)).json()).toEqual({
        items: [],
        next_page_token: null,
      });
    });

    it('serves the allow-list by extension, unsafe types as text/plain, always nosniff and sandboxed', async () => {
      const files: Array<[string, string]> = [
        ['a.txt', 'text/plain; charset=utf-8'],
        ['a.json', 'application/json; charset=utf-8'],
        ['a.png', 'image/png'],
        ['a.JPG', 'image/jpeg'],
        ['a.gif', 'image/gif'],
        ['a.bmp', 'image/bmp'],
        ['a.webm', 'video/webm'],
        ['a.ogg', 'video/ogg'],
        ['a.mp4', 'video/mp4'],
        ['a.aac', 'audio/aac'],
        ['a.mp3', 'audio/mpeg'],
        ['a.wav', 'audio/wav'],
        ['a.html', 'text/plain; charset=utf-8'],
        ['a.css', 'text/plain; charset=utf-8'],
        ['a.js', 'text/plain; charset=utf-8'],
        ['a.xml', 'text/plain; charset=utf-8'],
        ['a.svg', 'text/plain; charset=utf-8'],
        ['a.exe', 'application/octet-stream'],
        ['Makefile', 'application/octet-stream'],
      ];
      for (const [name] of files)
        expect((await agent('PUT', `/artifacts?path=t/${name}`, { raw: 'x' })).statusCode).toBe(201);
      for (const [name, type] of files) {
        const r = await user(`/api/v2/project/${SLUG}/1/artifacts/0/t/${name}`);
        expect(r.statusCode, name).toBe(200);
        expect(r.headers['content-type'], name).toBe(type);
        expect(r.headers['x-content-type-options']).toBe('nosniff');
        expect(String(r.headers['content-security-policy'])).toMatch(/^sandbox[;\s]/);
        expect(String(r.headers['content-security-policy'])).toContain("default-src 'none'");
      }
      res.settings.unsafeArtifacts = true;
      const html = await user(`/api/v2/project/${SLUG}/1/artifacts/0/t/a.html`);
      expect(html.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(html.headers['x-content-type-options']).toBe('nosniff');
      expect(String(html.headers['content-security-policy'])).toMatch(/^sandbox/);
    });

    it('needs an API token to download, and refuses path traversal on upload and download', async () => {
      await agent('PUT', '/artifacts?path=ok.txt', { raw: 'fine' });
      expect((await user(`/api/v2/project/${SLUG}/1/artifacts/0/ok.txt`, null)).statusCode).toBe(401);
      expect((await user(`/api/v2/project/${SLUG}/1/artifacts`, null)).statusCode).toBe(401);
      expect(
        (await user(`/api/v2/project/${SLUG}/1/artifacts/0/ok.txt?circle-token=${ADMIN_TOKEN}`, null)).body,
      ).toBe('fine');

      for (const p of ['../../etc/passwd', 'a/../../b', '..', 'a/\u0000b']) {
        const r = await agent('PUT', `/artifacts?path=${encodeURIComponent(p)}`, { raw: 'x' });
        expect(r.statusCode, p).toBe(400);
        expect(r.json().message).toMatch(/artifact path/);
      }
      // over a real socket: an HTTP client may send '..' as is (inject would normalise the URL)
      for (const p of ['a/%2e%2e/%2e%2e/ok.txt', '%2E%2E/x', 'a/../../ok.txt', 'x/%2e%2e%2fok.txt']) {
        const status = await rawGet(`/api/v2/project/${SLUG}/1/artifacts/0/${p}`);
        expect(status, p).toBe(400);
      }
      expect((await user(`/api/v2/project/${SLUG}/1/artifacts/0/missing.txt`)).statusCode).toBe(404);
      expect((await user(`/api/v2/project/${SLUG}/1/artifacts/1/ok.txt`)).statusCode).toBe(404);
      const rows = await res.db.query('SELECT path FROM artifacts');
      expect(rows.rows).toEqual([{ path: 'ok.txt' }]);
    });

    it('refuses uploads without an agent token (401), without a lease (400) or with a stale lease (409)', async () => {
      const noToken = await app.inject({
        method: 'PUT',
        url: `${AGENT_API_PREFIX}/tasks/${seeded.taskId}/artifacts?path=a.txt`,
        headers: { 'x-torus-lease': lease },
        payload: 'x',
      });
      expect(noToken.statusCode).toBe(401);
      expect((await agent('PUT', '/artifacts?path=a.txt', { raw: 'x', lease: null })).statusCode).toBe(400);
      const stale = await agent('PUT', '/artifacts?path=a.txt', { raw: 'x', lease: res.ids.uuid() });
      expect(stale.statusCode).toBe(409);
      expect(stale.json().message).toMatch(/lease/);
      // the lease moved on (re-queued and claimed again): the old one is refused
      await holdLease(seeded.taskId);
      expect((await agent('PUT', '/artifacts?path=a.txt', { raw: 'x' })).statusCode).toBe(409);
      expect((await res.db.query('SELECT 1 FROM artifacts')).rows).toEqual([]);
    });

    it('leaves no row and no object when an upload is cut off midway', async () => {
      const port = await listening();
      await new Promise<void>((resolve) => {
        const req = httpRequest({
          host: '127.0.0.1',
          port,
          method: 'PUT',
          path: `${AGENT_API_PREFIX}/tasks/${seeded.taskId}/artifacts?path=big.bin`,
          headers: {
            authorization: `Bearer ${agentToken}`,
            'x-torus-lease': lease,
            'content-type': 'application/octet-stream',
            'content-length': String(10 * 1024 * 1024),
          },
        });
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.write(Buffer.alloc(256 * 1024, 1), () => setTimeout(() => req.destroy(), 100));
      });
      // the server notices the cut and gives up on the upload
      const deadline = Date.now() + 5000;
      let objects: string[] = [];
      for (;;) {
        objects = [];
        for await (const o of res.store.list(`artifacts/${seeded.buildJobId}/`)) objects.push(o.key);
        if (objects.length === 0 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(objects).toEqual([]);
      expect((await res.db.query('SELECT 1 FROM artifacts')).rows).toEqual([]);
      expect((await user(`/api/v2/project/${SLUG}/1/artifacts`)).json().items).toEqual([]);
    });
  });

  describe('test results', () => {
    const tests: TestCase[] = [
      { name: 'adds', classname: 'math.Add', file: 'math/add.test.js', result: 'success', runTime: 0.25 },
      {
        name: 'divides',
        classname: 'math.Div',
        result: 'failure',
        message: 'expected 2, got 3',
        runTime: 1.5,
      },
      { name: 'skips', classname: 'math.Skip', result: 'skipped', runTime: 0, source: 'jest' },
    ];

    it('stores what the agent parsed and serves it as GET /tests in the spec shape', async () => {
      const put = await agent('PUT', '/test-results', { body: { tests: tests.slice(0, 2) } });
      expect(put.statusCode).toBe(201);
      expect(put.json()).toEqual({ count: 2 });
      // a second store_test_results step adds to the first
      expect((await agent('PUT', '/test-results', { body: { tests: tests.slice(2) } })).json()).toEqual({
        count: 1,
      });
      const r = await user(`/api/v2/project/${SLUG}/1/tests`);
      expect(r.statusCode).toBe(200);
      openapi.assertResponse('getTests', 200, r.json());
      expect(r.json()).toEqual({
        items: [
          {
            message: null,
            source: 'unknown',
            run_time: 0.25,
            file: 'math/add.test.js',
            result: 'success',
            name: 'adds',
            classname: 'math.Add',
          },
          {
            message: 'expected 2, got 3',
            source: 'unknown',
            run_time: 1.5,
            file: '',
            result: 'failure',
            name: 'divides',
            classname: 'math.Div',
          },
          {
            message: null,
            source: 'jest',
            run_time: 0,
            file: '',
            result: 'skipped',
            name: 'skips',
            classname: 'math.Skip',
          },
        ],
        next_page_token: null,
      });
      const bad = await agent('PUT', '/test-results', { body: { tests: [{ name: 'x', result: 'passed' }] } });
      expect(bad.statusCode).toBe(400);
      expect(
        (
          await agent('PUT', '/test-results', {
            raw: '{"tests": [',
            headers: { 'content-type': 'application/json' },
          })
        ).statusCode,
      ).toBe(400);
    });

    it('hands out timings of the latest run of the job: same branch first, then the default branch', async () => {
      // no earlier run at all
      const first = await jobOn('feature', 'build');
      expect(
        (await agent('GET', '/test-timings', { taskId: first.taskId, lease: first.lease })).json(),
      ).toEqual({ source: 'none', tests: [] });

      // `build` #1 on main (the default branch) stored results and finished
      await agent('PUT', '/test-results', { body: { tests } });
      await finishJob(seeded.buildJobId, 'failed');
      const onFeature = await jobOn('feature', 'build');
      const t1 = (
        await agent('GET', '/test-timings', { taskId: onFeature.taskId, lease: onFeature.lease })
      ).json();
      expect(t1.source).toBe('default-branch');
      expect(t1.tests.map((t: TestCase) => [t.name, t.runTime])).toEqual([
        ['adds', 0.25],
        ['divides', 1.5],
        ['skips', 0],
      ]);

      // a finished run on the feature branch wins over main
      await agent('PUT', '/test-results', {
        taskId: onFeature.taskId,
        lease: onFeature.lease,
        body: { tests: [{ name: 'slow', classname: 'c', result: 'success', runTime: 9 }] },
      });
      await finishJob(onFeature.jobId);
      const again = await jobOn('feature', 'build');
      const t2 = (await agent('GET', '/test-timings', { taskId: again.taskId, lease: again.lease })).json();
      expect(t2).toEqual({
        source: 'branch',
        tests: [{ name: 'slow', classname: 'c', result: 'success', runTime: 9 }],
      });
      // another job name has no timings from `build`
      const other = await jobOn('feature', 'lint');
      expect(
        (await agent('GET', '/test-timings', { taskId: other.taskId, lease: other.lease })).json().source,
      ).toBe('none');
    });
  });

  describe('caches', () => {
    it('saves once per key (immutable), restores by exact key, then by the newest prefix match', async () => {
      const put = (key: string, body: string, encoding = 'zstd') =>
        agent('PUT', `/caches/blob?key=${encodeURIComponent(key)}`, {
          raw: body,
          headers: { 'x-torus-encoding': encoding },
        });
      expect((await put('v1-deps-aaa', 'archive A')).statusCode).toBe(201);
      const again = await put('v1-deps-aaa', 'archive A2');
      expect(again.statusCode).toBe(409);
      expect(again.json()).toEqual({ message: 'cache key exists; caches are immutable' });
      res.setNow(new Date(Date.now() + 60_000));
      expect((await put('v1-deps-bbb', 'archive B', 'gzip')).statusCode).toBe(201);
      res.setNow(null);

      const lookup = (keys: string[]) => agent('POST', '/caches/lookup', { body: { keys } });
      expect((await lookup(['v1-deps-aaa'])).json()).toEqual({
        key: 'v1-deps-aaa',
        size: 9,
        encoding: 'zstd',
      });
      expect((await lookup(['v1-deps-'])).json()).toEqual({ key: 'v1-deps-bbb', size: 9, encoding: 'gzip' });
      expect((await lookup(['v2-nothing', 'v1-'])).json().key).toBe('v1-deps-bbb');
      expect((await lookup(['v1-deps-aa'])).json().key).toBe('v1-deps-aaa');
      const none = await lookup(['v3-']);
      expect(none.statusCode).toBe(404);
      expect(none.json()).toEqual({ message: expect.any(String) });

      const blob = await agent('GET', '/caches/blob?key=v1-deps-aaa');
      expect(blob.statusCode).toBe(200);
      expect(blob.body).toBe('archive A');
      expect(blob.headers['x-torus-encoding']).toBe('zstd');
      expect((await agent('GET', '/caches/blob?key=v1-deps')).statusCode).toBe(404);
      expect((await put('k', 'x', 'brotli')).statusCode).toBe(400);
      expect((await agent('PUT', `/caches/blob?key=${'k'.repeat(901)}`, { raw: 'x' })).statusCode).toBe(400);
    });

    it("lets an agent on the server's machine write and read the store's files, and nothing else", async () => {
      const stage = await agent('POST', '/caches/stage');
      expect(stage.statusCode).toBe(200);
      const file = (stage.json() as { file: string }).file;
      writeFileSync(file, 'archive written by the agent');
      const putFile = (key: string, staged: string) =>
        agent('PUT', `/caches/blob?key=${encodeURIComponent(key)}`, {
          headers: { 'x-torus-encoding': 'zstd', 'x-torus-file': staged },
        });
      expect((await putFile('direct-1', file)).statusCode).toBe(201);
      expect(existsSync(file)).toBe(false);
      // the lookup names the file only when asked
      const found = await agent('POST', '/caches/lookup', { body: { keys: ['direct-'], file: true } });
      expect(found.json()).toMatchObject({ key: 'direct-1', size: 28, encoding: 'zstd' });
      expect(readFileSync((found.json() as { file: string }).file, 'utf8')).toBe(
        'archive written by the agent',
      );
      expect(
        (await agent('POST', '/caches/lookup', { body: { keys: ['direct-'] } })).json(),
      ).not.toHaveProperty('file');
      expect((await agent('GET', '/caches/blob?key=direct-1')).body).toBe('archive written by the agent');

      // a second save of the key: refused, its staged file removed
      const second = (await agent('POST', '/caches/stage')).json() as { file: string };
      writeFileSync(second.file, 'again');
      expect((await putFile('direct-1', second.file)).statusCode).toBe(409);
      expect(existsSync(second.file)).toBe(false);

      // any path but a staged file is refused, and left alone
      const elsewhere = join(mkdtempSync(join(tmpdir(), 'torus-not-staged-')), 'secret.partial');
      writeFileSync(elsewhere, 'not for the store');
      const refused = await putFile('direct-2', elsewhere);
      expect(refused.statusCode).toBe(400);
      expect(refused.json().message).toMatch(/is not a file staged in/);
      expect(readFileSync(elsewhere, 'utf8')).toBe('not for the store');
      expect((await putFile('direct-1', elsewhere)).statusCode).toBe(400);
      expect(existsSync(elsewhere)).toBe(true);
      expect((await agent('POST', '/caches/lookup', { body: { keys: ['direct-2'] } })).statusCode).toBe(404);
    });

    it('shares caches within a project only', async () => {
      await agent('PUT', '/caches/blob?key=shared', { raw: 'x' });
      const sameProject = await jobOn('other-branch', 'build');
      expect(
        (
          await agent('POST', '/caches/lookup', {
            taskId: sameProject.taskId,
            lease: sameProject.lease,
            body: { keys: ['shared'] },
          })
        ).statusCode,
      ).toBe(200);
      await res.db.query(
        `INSERT INTO projects (id, org_id, name, slug, vcs_url) VALUES ($1, $2, 'other', 'circleci/acme/other', 'file:///x')`,
        [res.ids.uuid(), seeded.orgId],
      );
      await res.db.query(
        `UPDATE workflows SET project_id = (SELECT id FROM projects WHERE name = 'other') WHERE id = $1`,
        [sameProject.workflowId],
      );
      await res.db.query(
        `UPDATE jobs SET project_id = (SELECT id FROM projects WHERE name = 'other') WHERE id = $1`,
        [sameProject.jobId],
      );
      expect(
        (
          await agent('POST', '/caches/lookup', {
            taskId: sameProject.taskId,
            lease: sameProject.lease,
            body: { keys: ['shared'] },
          })
        ).statusCode,
      ).toBe(404);
    });
  });

  describe('workspaces', () => {
    it("hands a job its upstream jobs' layers in graph order, not unrelated ones", async () => {
      const wf = seeded.workflowId;
      // build (seeded) → prepare → test; lint stands apart
      const prepare = await jobOn('main', 'prepare', { workflowId: wf, requires: ['build'], position: 5 });
      const test = await jobOn('main', 'integration', { workflowId: wf, requires: ['prepare'], position: 6 });
      const lint = await jobOn('main', 'lint', { workflowId: wf, position: 1 });
      const layer = (who: { taskId: string; lease: string }, body: string) =>
        agent('PUT', '/workspace', {
          taskId: who.taskId,
          lease: who.lease,
          raw: body,
          headers: { 'x-torus-encoding': 'gzip' },
        });
      // prepare uploads before build does: graph order, not upload order, decides
      const p1 = (await layer(prepare, 'prepare layer')).json();
      const b1 = (await layer({ taskId: seeded.taskId, lease }, 'build layer 1')).json();
      const b2 = (await layer({ taskId: seeded.taskId, lease }, 'build layer 2')).json();
      await layer(lint, 'lint layer');
      expect(p1).toEqual({ layerId: expect.any(String), size: 13 });

      const r = await agent('GET', '/workspace/layers', { taskId: test.taskId, lease: test.lease });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({
        layers: [
          { id: b1.layerId, jobName: 'build', size: 13, encoding: 'gzip' },
          { id: b2.layerId, jobName: 'build', size: 13, encoding: 'gzip' },
          { id: p1.layerId, jobName: 'prepare', size: 13, encoding: 'gzip' },
        ],
      });
      const got = await agent('GET', `/workspace/layers/${b2.layerId}`, {
        taskId: test.taskId,
        lease: test.lease,
      });
      expect(got.body).toBe('build layer 2');
      expect(got.headers['x-torus-encoding']).toBe('gzip');
      // a layer of another workflow's workspace is not reachable
      const elsewhere = await jobOn('main', 'integration');
      expect(
        (
          await agent('GET', `/workspace/layers/${b2.layerId}`, {
            taskId: elsewhere.taskId,
            lease: elsewhere.lease,
          })
        ).statusCode,
      ).toBe(404);
      expect(
        (
          await agent('GET', '/workspace/layers', { taskId: elsewhere.taskId, lease: elsewhere.lease })
        ).json(),
      ).toEqual({ layers: [] });

      // "rerun from failed": a new workflow sharing the workspace; build is carried over (copied_from)
      const rerun = res.ids.uuid();
      await res.db.query(
        `INSERT INTO workflows (id, pipeline_id, project_id, name, status, workspace_id, rerun_of)
         VALUES ($1, $2, $3, 'build-test', 'running', $4, $4)`,
        [rerun, seeded.pipelineId, seeded.projectId, wf],
      );
      await res.db.query(
        `INSERT INTO jobs (id, workflow_id, project_id, name, type, status, requires, copied_from)
         VALUES ($1, $2, $3, 'build', 'build', 'success', '[]', $4)`,
        [res.ids.uuid(), rerun, seeded.projectId, seeded.buildJobId],
      );
      const rerunTest = await jobOn('main', 'integration', { workflowId: rerun, requires: ['build'] });
      const carried = await agent('GET', '/workspace/layers', {
        taskId: rerunTest.taskId,
        lease: rerunTest.lease,
      });
      expect(carried.json().layers.map((l: { id: string }) => l.id)).toEqual([b1.layerId, b2.layerId]);
    });
  });
});

describe('blobs on S3 (s3rver)', () => {
  it('streams an artifact into the bucket and back, and drops a refused upload', async () => {
    const s3 = await startTestS3Server();
    const res = await openTestResources('pglite');
    try {
      const store = s3.pathStyleStore('torus');
      const blobs: Blobs = createBlobs({ ...res, store });
      const seeded = await seedPipeline(res, null);
      const leaseId = res.ids.uuid();
      await res.db.query(
        `UPDATE tasks SET lease_id = $2, lease_expires_at = now() + interval '1 hour' WHERE id = $1`,
        [seeded.taskId, leaseId],
      );
      const task = await blobs.task(seeded.taskId, leaseId);
      const big = Buffer.alloc(6 * 1024 * 1024, 7);
      expect(await blobs.putArtifact(task, 'out/big.bin', Readable.from([big, big]))).toEqual({
        path: 'out/big.bin',
        size: 2 * big.length,
      });
      const found = await blobs.openArtifact(seeded.buildJobId, 0, 'out/big.bin');
      let n = 0;
      for await (const c of found!.stream) n += (c as Buffer).length;
      expect(n).toBe(2 * big.length);
      expect(await readObjectText(store, `artifacts/${seeded.buildJobId}/0/out/big.bin`)).toHaveLength(
        2 * big.length,
      );
      // the lease is lost while uploading: the cache object is removed and no row written
      const lost = { ...task, leaseId: res.ids.uuid() };
      await expect(blobs.putCache(lost, 'k', 'gzip', Readable.from(['data']))).rejects.toThrow(/lease/);
      const left: string[] = [];
      for await (const o of store.list('caches/')) left.push(o.key);
      expect(left).toEqual([]);
      // objects in a bucket are no files here: agents send their archives, and a file is refused
      expect(await blobs.stageCache(task)).toBeNull();
      expect((await blobs.lookupCache(task, ['k'], { file: true })) ?? null).toBeNull();
      await expect(blobs.putCache(task, 'k', 'zstd', { file: '/etc/passwd' })).rejects.toThrow(
        /keeps no objects as files/,
      );
    } finally {
      await res.close();
      await s3.close();
    }
  });
});
