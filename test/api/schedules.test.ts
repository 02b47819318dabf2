// API v2 scheduled pipelines (schedule triggers): create, list, read, update and delete in the
// reference spec's shapes (checked against the OpenAPI spec), CircleCI's validation of timetables
// and parameters, and visibility limited to the project's organization.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../../src/api/index.js';
import { createAccounts, type Accounts } from '../../src/accounts/index.js';
import { databaseKinds } from '../harness/db.js';
import { loadOpenApi } from '../harness/openapi.js';
import { fakeEngine, fakeScheduler } from './fakes.js';
import { openTestResources, truncateAll, type TestResources } from './resources.js';

const openapi = loadOpenApi();
const ADMIN_TOKEN = 'admin-token-for-schedule-tests';

const NIGHTLY = {
  name: 'nightly',
  description: 'the long tests',
  'attribution-actor': 'current',
  parameters: { branch: 'main', run_soak: true },
  timetable: { 'per-hour': 1, 'hours-of-day': [2], 'days-of-week': ['MON', 'TUE', 'WED', 'THU', 'FRI'] },
};

describe.each(databaseKinds())('scheduled pipelines API on %s', (kind) => {
  let res: TestResources;
  let accounts: Accounts;
  let app: FastifyInstance;

  async function call(
    method: InjectOptions['method'],
    url: string,
    opts: { op?: string; body?: unknown; token?: string | null } = {},
  ) {
    const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
    const r = await app.inject({
      method,
      url,
      headers: token ? { 'circle-token': token } : {},
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    const json = r.headers['content-type']?.toString().includes('application/json') ? r.json() : undefined;
    if (opts.op) openapi.assertResponse(opts.op, r.statusCode, json);
    return { status: r.statusCode, json };
  }

  beforeAll(async () => {
    res = await openTestResources(kind);
    accounts = createAccounts(res);
    app = await buildApp(res, { engine: fakeEngine(res), scheduler: fakeScheduler(), accounts });
  });
  afterAll(async () => {
    await app?.close();
    await res?.close();
  });
  beforeEach(async () => {
    await truncateAll(res);
    await accounts.bootstrapAdmin(ADMIN_TOKEN);
    const org = await accounts.createOrg('acme');
    await res.db.query(
      `INSERT INTO projects (id, org_id, name, slug, vcs_url) VALUES ($1, $2, 'app', 'circleci/acme/app', 'https://git.example/app.git')`,
      [res.ids.uuid(), org.id],
    );
  });

  const list = '/api/v2/project/circleci/acme/app/schedule';

  it('are created, listed, read, updated and deleted', async () => {
    const created = await call('POST', list, { op: 'createSchedule', body: NIGHTLY });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      name: 'nightly',
      description: 'the long tests',
      'project-slug': 'circleci/acme/app',
      parameters: { branch: 'main', run_soak: true },
      timetable: NIGHTLY.timetable,
      actor: { login: 'admin' },
    });
    const id = created.json.id as string;
    expect((await call('GET', list, { op: 'listSchedulesForProject' })).json).toEqual({
      items: [created.json],
      next_page_token: null,
    });
    expect((await call('GET', `/api/v2/schedule/${id}`, { op: 'getScheduleById' })).json).toEqual(
      created.json,
    );

    const patched = await call('PATCH', `/api/v2/schedule/${id}`, {
      op: 'updateSchedule',
      body: {
        timetable: { 'per-hour': 4, 'hours-of-day': [0, 12], 'days-of-month': [1, 15] },
        'attribution-actor': 'system',
      },
    });
    expect(patched.status).toBe(200);
    expect(patched.json).toMatchObject({
      name: 'nightly',
      timetable: { 'per-hour': 4, 'hours-of-day': [0, 12], 'days-of-month': [1, 15] },
      actor: { login: 'system-actor' },
    });

    expect(await call('DELETE', `/api/v2/schedule/${id}`, { op: 'deleteScheduleById' })).toEqual({
      status: 200,
      json: { message: 'Schedule deleted.' },
    });
    expect((await call('GET', `/api/v2/schedule/${id}`)).status).toBe(404);
  });

  it.each([
    [{ ...NIGHTLY, name: '' }, 'name must be a non-empty string'],
    [{ ...NIGHTLY, parameters: { run_soak: true } }, 'must contain branch or tag'],
    [{ ...NIGHTLY, parameters: { branch: 'main', tag: 'v1' } }, 'must contain branch or tag (one of them)'],
    [{ ...NIGHTLY, 'attribution-actor': 'me' }, 'attribution-actor must be "current" or "system"'],
    [
      { ...NIGHTLY, timetable: { ...NIGHTLY.timetable, 'per-hour': 61 } },
      'per-hour must be a whole number from 1 to 60',
    ],
    [{ ...NIGHTLY, timetable: { ...NIGHTLY.timetable, 'hours-of-day': [24] } }, 'from 0 to 23'],
    [{ ...NIGHTLY, timetable: { ...NIGHTLY.timetable, 'days-of-month': [1] } }, 'mutually exclusive'],
    [
      { ...NIGHTLY, timetable: { 'per-hour': 1, 'hours-of-day': [1] } },
      'needs days-of-week or days-of-month',
    ],
    [{ ...NIGHTLY, timetable: { ...NIGHTLY.timetable, 'days-of-week': ['FUNDAY'] } }, 'must hold SUN, MON'],
    [{ ...NIGHTLY, timetable: { ...NIGHTLY.timetable, months: ['JANUARY'] } }, 'must hold JAN, FEB'],
  ])('refuses a bad schedule with a message saying what to fix (%#)', async (body, message) => {
    const r = await call('POST', list, { body });
    expect(r.status).toBe(400);
    expect(r.json.message).toContain(message);
    expect((await call('GET', list)).json.items).toEqual([]);
  });

  it('refuses a second schedule of the same name, and hides schedules from other organizations', async () => {
    expect((await call('POST', list, { body: NIGHTLY })).status).toBe(201);
    const again = await call('POST', list, { body: NIGHTLY });
    expect(again.status).toBe(409);
    expect(again.json.message).toContain('already exists');

    const outsider = await accounts.createUser({ login: 'mallory', name: 'Mallory' });
    const token = (await accounts.createToken(outsider.id, 'test')).token;
    const id = (await call('GET', list)).json.items[0].id as string;
    expect((await call('GET', list, { token })).status).toBe(404);
    expect((await call('GET', `/api/v2/schedule/${id}`, { token })).status).toBe(404);
    expect((await call('DELETE', `/api/v2/schedule/${id}`, { token })).status).toBe(404);
    expect((await call('GET', `/api/v2/schedule/${id}`)).status).toBe(200);
    expect((await call('GET', list, { token: null })).status).toBe(401);
  });
});
