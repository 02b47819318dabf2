// The web app in Debian's Chromium against a real Torus running a real pipeline: sign in with the
// admin token, open the project, trigger a pipeline, watch a job's output arrive while it runs,
// approve the hold, see the workflow finish, sign out. Then the session cookie's rules over plain
// HTTP (HttpOnly, SameSite=Strict, the web app's header for changes, revoked at sign-out) and how
// the server serves the app. Screenshots go to a temporary directory, or to docs/screenshots with
// TORUS_UPDATE_SCREENSHOTS=1.
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, api } from '../harness/torus.js';
import { hasChromium, openPage, shoot, webAppForSuite } from './web-harness.js';

const CONFIG = `version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: Print slowly
          command: for i in $(seq 1 10); do printf '\\033[32mline %d\\033[0m of the build\\n' $i; sleep 0.6; done
  deploy:
    machine: true
    steps:
      - run: echo deployed
workflows:
  release:
    jobs:
      - build
      - hold:
          type: approval
          requires: [build]
      - deploy:
          requires: [hold]
`;

describe.skipIf(!hasChromium)('web app', () => {
  const app = webAppForSuite(CONFIG, { localAgents: 1 });

  it('signs in, follows a pipeline with live output, approves the hold and signs out', async () => {
    const { server, browser } = app();
    const { context, page, pageErrors } = await openPage(browser, 760);

    await page.goto(server.url);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shoot(page, 'sign-in');
    await page.getByLabel('Personal API token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Invalid token');
    await page.getByLabel('Personal API token').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Projects' }).waitFor();

    const session = (await context.cookies()).find((c) => c.name === 'torus_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(session!.value).not.toContain(ADMIN_TOKEN);

    // the project, then a pipeline triggered from its page
    await page.getByRole('link', { name: /shop/ }).click();
    await page.getByRole('heading', { name: /shop/ }).waitFor();
    await page.getByRole('button', { name: 'Trigger pipeline' }).click();
    const trigger = page.getByRole('form', { name: 'Trigger a pipeline' });
    expect(await trigger.getByLabel('Branch').inputValue()).toBe('main');
    await page.getByRole('button', { name: 'Run pipeline' }).click();
    await page.getByRole('heading', { name: 'Pipeline #1' }).waitFor();

    // the workflow's graph: build runs, hold waits behind it
    const build = page.getByRole('link', { name: /^build: / });
    await expect.poll(() => build.getAttribute('aria-label'), { timeout: 30_000 }).toBe('build: Running');
    await build.click();

    // the running step opens by itself and its output arrives line by line
    await page.getByRole('heading', { name: /^build/ }).waitFor();
    const output = page.getByRole('log', { name: 'Output of Print slowly' });
    await output.waitFor();
    const seen = new Set<number>();
    await expect
      .poll(
        async () => {
          seen.add(Number(await output.getAttribute('data-lines')));
          return output.getAttribute('data-done');
        },
        { timeout: 30_000, interval: 100 },
      )
      .toBe('true');
    expect(await output.textContent()).toContain('line 10 of the build');
    // several partial counts were on screen before the step ended: it was live, not all at the end
    expect([...seen].filter((n) => n > 0 && n < 10).length).toBeGreaterThanOrEqual(2);
    const green = output.getByText('line 1', { exact: true });
    expect(await green.evaluate((el) => el.getAttribute('style'))).toContain('var(--ansi-2)');

    // steps fold and unfold from the keyboard; a step seen running stays open until then
    const steps = page.getByRole('region', { name: 'Steps' }).getByRole('heading').getByRole('button');
    for (const step of await steps.all()) {
      if (
        (await step.getAttribute('aria-expanded')) === 'true' &&
        !/Print slowly/.test((await step.textContent())!)
      ) {
        await step.focus();
        await page.keyboard.press('Enter');
        expect(await step.getAttribute('aria-expanded')).toBe('false');
      }
    }
    const printStep = page.getByRole('button', { name: /Print slowly/ });
    await printStep.focus();
    await page.keyboard.press('Enter');
    expect(await printStep.getAttribute('aria-expanded')).toBe('false');
    expect(await output.count()).toBe(0);
    await page.keyboard.press('Space');
    await expect.poll(() => output.getAttribute('data-done')).toBe('true');
    expect(await output.getAttribute('data-lines')).toBe('10');
    await shoot(page, 'job');

    // back to the pipeline: approve the hold, deploy runs, the workflow succeeds
    await page.getByRole('link', { name: 'Pipeline #1' }).click();
    const approve = page.getByRole('button', { name: 'Approve hold' });
    await approve.waitFor({ timeout: 30_000 });
    await shoot(page, 'pipeline');
    await approve.click();
    const workflow = page.getByRole('region', { name: 'release' });
    await expect
      .poll(() => workflow.locator('.workflow-head .badge').getAttribute('data-status'), { timeout: 30_000 })
      .toBe('success');
    // the workflow's badge and its job nodes come from separate answers: wait for the node too
    await expect
      .poll(() => page.getByRole('link', { name: 'deploy: Success' }).count(), { timeout: 10_000 })
      .toBe(1);
    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'pipeline-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // the project's list shows the finished pipeline
    await page.getByRole('navigation', { name: 'Breadcrumb' }).getByRole('link', { name: 'shop' }).click();
    const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: 'Pipeline 1' }) });
    await expect.poll(() => row.locator('.badge').getAttribute('data-status')).toBe('success');
    await shoot(page, 'pipelines');

    // signing out ends the session for good: the old cookie no longer opens anything
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    const after = await fetch(`${server.url}/api/v2/me`, {
      headers: { cookie: `torus_session=${session!.value}` },
    });
    expect(after.status).toBe(401);
    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it('keeps the session cookie to the web app and serves the app beside the API', async () => {
    const { server, slug } = app();
    const web = { 'x-torus-web': '1', 'content-type': 'application/json' };
    const signIn = (headers: Record<string, string>, token: string) =>
      fetch(`${server.url}/api/v2/torus/session`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ token }),
      });

    // sign-in needs the app's header (a cross-site form cannot send it) and a valid token
    expect((await signIn({ 'content-type': 'application/json' }, ADMIN_TOKEN)).status).toBe(403);
    expect((await signIn(web, 'f'.repeat(40))).status).toBe(401);
    const res = await signIn(web, ADMIN_TOKEN);
    expect(res.status).toBe(201);
    const setCookie = res.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(
      /^torus_session=[0-9a-f-]{36}\.[0-9a-f]{40}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/,
    );
    const cookie = setCookie.split(';')[0]!;

    // reads need only the cookie (event streams and links cannot send headers) …
    const me = await fetch(`${server.url}/api/v2/me`, { headers: { cookie } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { login: string }).login).toBe('admin');
    // … changes need the app's header too, and not from another site
    const mint = (headers: Record<string, string>) =>
      fetch(`${server.url}/api/v2/torus/users/me/tokens`, {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ label: 'csrf probe' }),
      });
    const forged = await mint({});
    expect(forged.status).toBe(403);
    expect(((await forged.json()) as { message: string }).message).toMatch(/x-torus-web/);
    expect((await mint({ 'x-torus-web': '1', 'sec-fetch-site': 'same-site' })).status).toBe(403);
    expect((await mint({ 'x-torus-web': '1', 'sec-fetch-site': 'same-origin' })).status).toBe(201);
    // an API token in a header is unaffected by all this
    const withToken = await api(server.url, 'GET', `/api/v2/project/${slug}`);
    expect(withToken.status).toBe(200);

    // the app: index.html for its routes (with the CSP), hashed assets for a year, API 404s in JSON
    const index = await fetch(`${server.url}/pipelines/${slug}/1`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await index.text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(server.url + asset!, { headers: { 'accept-encoding': 'br' } });
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const missing = await fetch(`${server.url}/api/v2/no-such-route`, { headers: { cookie } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ message: 'Not found: GET /api/v2/no-such-route' });

    // sign-out revokes the session's own token and clears the cookie
    const out = await fetch(`${server.url}/api/v2/torus/session`, {
      method: 'DELETE',
      headers: { cookie, 'x-torus-web': '1' },
    });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/^torus_session=; .*Max-Age=0/);
    expect((await fetch(`${server.url}/api/v2/me`, { headers: { cookie } })).status).toBe(401);
    const state = await fetch(`${server.url}/api/v2/torus/session`, { headers: { cookie } });
    expect(await state.json()).toEqual({ user: null });
  });
});
