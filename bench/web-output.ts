// The job page with a long output (issue 6: "a job page with 200,000 lines of output scrolls
// smoothly (virtualized) and the first page paints in under 1 s on this machine with a production
// build"). A real `torus server` (the production build of the web app, made if stale) runs a job
// whose step prints 200,000 lines (BENCH_WEB_LINES to change it), some in ANSI colours, and then
// fails: a failed step opens by itself on the job page, as the one a reader comes to look at. Then
// Debian's Chromium (headless) opens the finished job's page cold (a new browser context: no cache,
// signed in by the session cookie) several times and measures, from the navigation's start:
// - first lines: the first output line in the page (a MutationObserver installed before the app
//   loads), and painted (the next animation frame's callbacks: that frame draws it);
// - first contentful paint (the Performance API's `paint` entry);
// - all lines: the output view saying it has every line (the replayed event stream ended).
// Then, with every line loaded, the view is scrolled from top to bottom over ~3 s, one step per
// animation frame: frames per second, the longest frame, and the most line elements in the page
// at once (virtualized: a screenful, not 200,000). Last, the served sizes of the app's files.
import { request } from 'node:http';
import { rmSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { buildWebApp, launchChromium } from '../test/harness/browser.js';
import { ADMIN_TOKEN, api, startTorusServer, type TorusProcess } from '../test/harness/torus.js';
import { waitFor } from '../test/harness/net.js';
import { createProjectViaApi, percentile, triggerPipelineViaApi } from './lib.js';

const LINES = Number(process.env.BENCH_WEB_LINES ?? 200_000);
const LOADS = Number(process.env.BENCH_WEB_LOADS ?? 5);
const SCROLL_MS = 3_000;
const FIRST_PAINT_TARGET_MS = 1_000;
/** a frame of a smooth scroll: 60 fps is 16.7 ms; none should come near a user-visible stall */
const LONG_FRAME_MS = 50;
const VIEWPORT = { width: 1280, height: 760 };

/**
 * The step: LINES lines of 40–100 characters by awk (cheap next to the server's work); every 10th
 * green, every 50th bold red, every 7th with a yellow word inside; then it fails.
 */
function config(lines: number): string {
  return `version: 2.1
jobs:
  long:
    machine: true
    steps:
      - run:
          name: Print ${lines} lines
          command: |
            awk 'BEGIN { for (i = 1; i <= ${lines}; i++) {
              pad = substr("..............................................................", 1, (i * 7) % 60);
              if (i % 50 == 0) printf "\\033[1;31mERROR line %d failed %s\\033[0m\\n", i, pad;
              else if (i % 10 == 0) printf "\\033[32mok\\033[0m line %d passed %s\\n", i, pad;
              else if (i % 7 == 0) printf "line %d compiling \\033[33mwarning\\033[0m unused %s\\n", i, pad;
              else printf "line %d compiling module %d of the build %s\\n", i, i % 977, pad;
            } }'
            exit 1
workflows:
  w:
    jobs: [long]
`;
}

export interface WebOutputFigures {
  lines: number;
  loads: number;
  /** per cold load, ms from the navigation's start */
  firstLineMs: number[];
  firstLinePaintMs: number[];
  fcpMs: number[];
  allLinesMs: number[];
  /** the first cold load's fetches: where the time to the first lines goes */
  firstLoadRequests: Timeline;
  scroll: {
    frames: number;
    seconds: number;
    fps: number;
    longestFrameMs: number;
    /** frames longer than LONG_FRAME_MS */
    longFrames: number;
    /** the most `.output-line` elements in the page at any frame */
    maxLineElements: number;
    scrolledPx: number;
  };
  /** bytes of each served file: as stored, and as sent to a browser taking brotli */
  bundle: Array<{ path: string; bytes: number; brotliBytes: number }>;
}

interface V2Job {
  status: string;
  web_url: string;
}

async function runLongJob(server: TorusProcess): Promise<{ pagePath: string; seconds: number }> {
  const slug = await createProjectViaApi(server, 'long-output', config(LINES));
  const started = Date.now();
  const { jobNumber } = await triggerPipelineViaApi(server, slug, { pollMs: 50 });
  const job = await waitFor(
    async () => {
      const j = (await api<V2Job>(server.url, 'GET', `/api/v2/project/${slug}/job/${jobNumber}`)).body;
      return ['queued', 'running', 'not_running', 'blocked'].includes(j.status) ? false : j;
    },
    600_000,
    500,
  );
  if (job.status !== 'failed')
    throw new Error(`the job ended ${job.status}, not failed:\n${server.output()}`);
  return { pagePath: new URL(job.web_url).pathname, seconds: (Date.now() - started) / 1000 };
}

// The scripts run in the page are strings: tsx compiles functions here with esbuild's keepNames,
// whose `__name` helper does not exist in the browser.

/** Installed before the app's script: when the first output line enters the page, and its frame. */
const WATCH_FIRST_LINE = `{
  const observer = new MutationObserver(() => {
    if (window.__firstLine === undefined && document.querySelector('.output-line')) {
      window.__firstLine = performance.now();
      // the frame that draws it: its animation frame callbacks run just before its style, layout and
      // paint (of some 50 lines: a few ms). A task queued from there would come too late, behind the
      // event stream's messages waiting in the same queue.
      requestAnimationFrame(() => { window.__firstLinePaint = performance.now(); });
    }
    if (document.querySelector('.output[data-done="true"]')) {
      window.__allLines = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-done'] });
}`;

const READ_MARKS = `({
  firstLineMs: window.__firstLine,
  allLinesMs: window.__allLines,
  firstLinePaintMs: window.__firstLinePaint,
  fcpMs: performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint')?.startTime ?? NaN,
  requests: performance.getEntriesByType('resource').map((e) => ({
    path: new URL(e.name).pathname + new URL(e.name).search,
    startMs: Math.round(e.startTime),
    firstByteMs: Math.round(e.responseStart),
    endMs: Math.round(e.responseEnd),
  })),
})`;

/** Scrolls the output from top to bottom over SCROLL_MS, one step per animation frame. */
const SCROLL_THROUGH = `(async () => {
  const el = document.querySelector('.output[role="log"]');
  const range = el.scrollHeight - el.clientHeight;
  const stamps = [];
  let maxLineElements = 0;
  await new Promise((done) => {
    let start;
    const frame = (t) => {
      stamps.push(t);
      maxLineElements = Math.max(maxLineElements, el.querySelectorAll('.output-line').length);
      start ??= t;
      const progress = Math.min(1, (t - start) / ${SCROLL_MS});
      el.scrollTop = progress * range;
      if (progress < 1) requestAnimationFrame(frame);
      else done();
    };
    requestAnimationFrame(frame);
  });
  const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
  const seconds = (stamps.at(-1) - stamps[0]) / 1000;
  return {
    frames: gaps.length,
    seconds,
    fps: gaps.length / seconds,
    longestFrameMs: Math.max(...gaps),
    longFrames: gaps.filter((g) => g > ${LONG_FRAME_MS}).length,
    maxLineElements,
    scrolledPx: el.scrollTop,
  };
})()`;

interface LoadFigures {
  firstLineMs: number;
  firstLinePaintMs: number;
  fcpMs: number;
  allLinesMs: number;
  requests: Timeline;
}

/** what the page fetched, ms from the navigation's start (Resource Timing) */
type Timeline = Array<{ path: string; startMs: number; firstByteMs: number; endMs: number }>;

async function coldLoad(
  browser: Browser,
  url: string,
  pagePath: string,
  scroll: boolean,
): Promise<{ load: LoadFigures; scroll?: WebOutputFigures['scroll'] }> {
  const context = await browser.newContext({ viewport: VIEWPORT });
  try {
    // sign in as the web app does (token → session cookie), through the context's own cookie jar
    const signIn = await context.request.post(`${url}/api/v2/torus/session`, {
      headers: { 'x-torus-web': '1' },
      data: { token: ADMIN_TOKEN },
    });
    if (signIn.status() !== 201) throw new Error(`sign-in: ${signIn.status()} ${await signIn.text()}`);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.setDefaultTimeout(120_000);
    await page.addInitScript(WATCH_FIRST_LINE);
    await page.goto(url + pagePath, { waitUntil: 'commit' });
    const output = page.locator('.output[role="log"]');
    // (the app's Content-Security-Policy forbids the string evaluation of waitForFunction)
    await page.waitForSelector('.output-line', { timeout: 60_000 }).catch(async (err: Error) => {
      const text = await page.locator('body').innerText();
      throw new Error(
        `${err.message}\nno output line on ${page.url()}; the page says:\n${text.slice(0, 2000)}`,
      );
    });
    await page.waitForSelector('.output[role="log"][data-done="true"]', { timeout: 300_000 });
    const lines = Number(await output.getAttribute('data-lines'));
    if (lines < LINES) throw new Error(`the view holds ${lines} lines, fewer than the ${LINES} printed`);
    const load = await page.evaluate<LoadFigures>(READ_MARKS);
    let scrolled: WebOutputFigures['scroll'] | undefined;
    if (scroll) {
      // the view follows the end of the output: go to the top, let it settle, then scroll down
      await page.evaluate(`document.querySelector('.output[role="log"]').scrollTop = 0`);
      await page.waitForTimeout(500);
      scrolled = await page.evaluate<WebOutputFigures['scroll']>(SCROLL_THROUGH);
    }
    if (errors.length) throw new Error(`errors in the page: ${errors.join('; ')}`);
    return { load, scroll: scrolled };
  } finally {
    await context.close();
  }
}

/** the size of a response's body as sent (no decompression) */
function servedBytes(url: string, encoding: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { 'accept-encoding': encoding } }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () =>
        res.statusCode === 200 ? resolve(n) : reject(new Error(`${url}: HTTP ${res.statusCode}`)),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function bundleSizes(url: string): Promise<WebOutputFigures['bundle']> {
  const html = await (await fetch(`${url}/`)).text();
  const paths = ['/', ...[...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!)];
  const out: WebOutputFigures['bundle'] = [];
  for (const path of paths)
    out.push({
      path,
      bytes: await servedBytes(url + path, 'identity'),
      brotliBytes: await servedBytes(url + path, 'br'),
    });
  return out;
}

export async function benchWebOutput(): Promise<WebOutputFigures & { jobSeconds: number }> {
  buildWebApp();
  const [server, browser] = await Promise.all([startTorusServer({ localAgents: 1 }), launchChromium()]);
  try {
    const { pagePath, seconds: jobSeconds } = await runLongJob(server);
    const loads: LoadFigures[] = [];
    let scroll: WebOutputFigures['scroll'] | undefined;
    for (let i = 0; i < LOADS; i++) {
      const r = await coldLoad(browser, server.url, pagePath, i === LOADS - 1);
      loads.push(r.load);
      scroll ??= r.scroll;
    }
    return {
      lines: LINES,
      loads: LOADS,
      firstLineMs: loads.map((l) => l.firstLineMs),
      firstLinePaintMs: loads.map((l) => l.firstLinePaintMs),
      fcpMs: loads.map((l) => l.fcpMs),
      allLinesMs: loads.map((l) => l.allLinesMs),
      firstLoadRequests: loads[0]!.requests,
      scroll: scroll!,
      bundle: await bundleSizes(server.url),
      jobSeconds,
    };
  } finally {
    await browser.close();
    await server.kill('SIGTERM');
    rmSync(server.dataDir, { recursive: true, force: true });
  }
}

export function printWebOutput(r: WebOutputFigures): void {
  const s = (values: number[]) =>
    `p50 ${percentile(values, 50).toFixed(0)} ms, max ${Math.max(...values).toFixed(0)} ms`;
  const paint = r.firstLinePaintMs;
  console.log(
    `web job page, ${r.lines.toLocaleString('en')} lines, ${r.loads} cold loads: first lines painted ${s(paint)} ` +
      `(target < ${FIRST_PAINT_TARGET_MS} ms, p50 ${(percentile(paint, 50) / FIRST_PAINT_TARGET_MS).toFixed(2)}×, ` +
      `max ${(Math.max(...paint) / FIRST_PAINT_TARGET_MS).toFixed(2)}× target); in the DOM ${s(r.firstLineMs)}; ` +
      `first contentful paint ${s(r.fcpMs)}; all lines loaded ${s(r.allLinesMs)}`,
  );
  const sc = r.scroll;
  console.log(
    `web output scroll top → bottom: ${sc.frames} frames in ${sc.seconds.toFixed(2)} s = ${sc.fps.toFixed(1)} fps ` +
      `(target ~60, ${(sc.fps / 60).toFixed(2)}× target); longest frame ${sc.longestFrameMs.toFixed(1)} ms ` +
      `(target ≤ ${LONG_FRAME_MS} ms, ${(sc.longestFrameMs / LONG_FRAME_MS).toFixed(2)}× target), ` +
      `${sc.longFrames} frames over ${LONG_FRAME_MS} ms; at most ${sc.maxLineElements} line elements in the page`,
  );
  const kb = (n: number) => `${(n / 1024).toFixed(1)} kB`;
  console.log(
    `web bundle served: ${r.bundle.map((b) => `${b.path} ${kb(b.bytes)} (${kb(b.brotliBytes)} brotli)`).join(', ')}`,
  );
  console.log(JSON.stringify({ bench: 'web-output', ...r }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchWebOutput();
  console.log(`(the ${r.lines}-line job ran in ${r.jobSeconds.toFixed(1)} s)`);
  printWebOutput(r);
  process.exit(0);
}
