// Debian's Chromium, headless, driven by playwright-core, for the web app's end-to-end tests; and
// the app's build, made (or refreshed) before a test opens it.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { REPO_ROOT } from './torus.js';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** DESIGN.md §7: no sandbox (tests run as root), no GPU, nothing that phones home */
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_FLAGS,
    timeout: 60_000,
  });
}

/** Builds the web app into dist/web unless the build there is newer than every source. */
export function buildWebApp(): void {
  execFileSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/web/build.ts'), '--if-stale'], {
    cwd: REPO_ROOT,
    stdio: 'pipe',
  });
}
