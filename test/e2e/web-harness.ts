// What the web app's end-to-end tests (web.test.ts, web-details.test.ts) share: Torus and Debian's
// Chromium started side by side with the app built, the project `acme/shop` made from a config,
// a fresh browser page that records the page's errors, sign-in with the admin token, and
// screenshots (to a temporary directory, or to docs/screenshots with TORUS_UPDATE_SCREENSHOTS=1).
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { buildWebApp, launchChromium } from '../harness/browser.js';
import { requirePart } from '../harness/parts.js';
import {
  ADMIN_TOKEN,
  api,
  makeGitRepo,
  REPO_ROOT,
  startTorusServer,
  type TorusProcess,
} from '../harness/torus.js';

export const SCREENSHOTS =
  process.env.TORUS_UPDATE_SCREENSHOTS === '1'
    ? join(REPO_ROOT, 'docs/screenshots')
    : mkdtempSync(join(tmpdir(), 'torus-screenshots-'));

export const hasChromium = requirePart('chromium', 'web app end-to-end tests');

/** a page's wait for anything (a pipeline's job can take a while on a busy machine) */
const PAGE_TIMEOUT_MS = 20_000;

export interface WebApp {
  server: TorusProcess;
  browser: Browser;
  /** the project made from the config */
  slug: string;
  stop(): Promise<void>;
}

/**
 * Builds the app (if stale), starts Torus with `localAgents` agents and Chromium, and adds the
 * project `acme/shop`: a git repository holding `config` as `.circleci/config.yml`.
 */
export async function startWebApp(config: string, { localAgents }: { localAgents: number }): Promise<WebApp> {
  buildWebApp();
  const [started, launched] = await Promise.allSettled([startTorusServer({ localAgents }), launchChromium()]);
  const server = started.status === 'fulfilled' ? started.value : undefined;
  const browser = launched.status === 'fulfilled' ? launched.value : undefined;
  const stop = async () => {
    await browser?.close();
    await server?.kill('SIGTERM');
  };
  if (!server || !browser) {
    await stop();
    throw started.status === 'rejected' ? started.reason : (launched as PromiseRejectedResult).reason;
  }
  try {
    const repo = makeGitRepo({ '.circleci/config.yml': config, 'README.md': '# shop\n' });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/acme/project', {
      name: 'shop',
      vcs_url: repo,
    });
    if (p.status !== 200)
      throw new Error(`adding the project answered ${p.status}: ${JSON.stringify(p.body)}`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    return { server, browser, slug: p.body.slug, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Inside a `describe`: the app started (`startWebApp`) before its tests and stopped after them.
 * The answer gives it to a test.
 */
export function webAppForSuite(config: string, opts: { localAgents: number }): () => WebApp {
  let app: WebApp | undefined;
  beforeAll(async () => {
    app = await startWebApp(config, opts);
  });
  afterAll(async () => {
    await app?.stop();
  });
  return () => {
    if (!app) throw new Error('the web app did not start: see the error of beforeAll');
    return app;
  };
}

/** A new browser context and page of `height` pixels (1280 wide); `pageErrors` collects its uncaught errors. */
export async function openPage(
  browser: Browser,
  height: number,
): Promise<{ context: BrowserContext; page: Page; pageErrors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height } });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  return { context, page, pageErrors };
}

/** Signs in on the sign-in page shown with the admin token. */
export async function signIn(page: Page): Promise<void> {
  await page.getByLabel('Personal API token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** the page as it is now, as `{name}.png` */
export async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}
