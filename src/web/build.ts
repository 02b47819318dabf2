// Builds the web app (src/web/app) into dist/web with Vite, then writes a brotli and a gzip copy of
// each text file for src/api/web-routes.ts to serve, and prints the sizes.
//   node --import tsx src/web/build.ts              always build (npm run build:web, npm install)
//   … --if-stale                                    only when dist/web is missing or older than a source (npm start)
//   … --optional                                    without Vite (an install without dev dependencies), say so and succeed
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';

const WEB_DIR = fileURLToPath(new URL('./', import.meta.url));
const APP_DIR = join(WEB_DIR, 'app');
const OUT_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));
const CONFIG_FILE = join(WEB_DIR, 'vite.config.ts');
const COMPRESSIBLE = /\.(js|mjs|css|html|svg|json|webmanifest|txt)$/;
/** below this a compressed copy saves nothing worth a second file */
const MIN_COMPRESS_BYTES = 512;

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** true when there is no build, or a source (or the config) changed after it */
function isStale(): boolean {
  const index = join(OUT_DIR, 'index.html');
  if (!existsSync(index)) return true;
  const built = statSync(index).mtimeMs;
  return [CONFIG_FILE, ...walk(APP_DIR)].some((f) => !f.endsWith('.test.ts') && statSync(f).mtimeMs > built);
}

function compress(): { raw: number; gzip: number; br: number; files: string[] } {
  const totals = { raw: 0, gzip: 0, br: 0, files: [] as string[] };
  for (const path of walk(OUT_DIR)) {
    if (!COMPRESSIBLE.test(path)) continue;
    const body = readFileSync(path);
    const gz = gzipSync(body, { level: 9 });
    const br = brotliCompressSync(body, {
      params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length },
    });
    if (body.length >= MIN_COMPRESS_BYTES) {
      writeFileSync(`${path}.gz`, gz);
      writeFileSync(`${path}.br`, br);
    }
    totals.raw += body.length;
    totals.gzip += gz.length;
    totals.br += br.length;
    totals.files.push(
      `  ${relative(OUT_DIR, path).padEnd(36)} ${kb(body.length).padStart(9)}  gzip ${kb(gz.length).padStart(8)}  br ${kb(br.length).padStart(8)}`,
    );
  }
  return totals;
}

function kb(n: number): string {
  return `${(n / 1024).toFixed(1)} kB`;
}

async function main(args: string[]): Promise<void> {
  if (args.includes('--if-stale') && !isStale()) return;
  let vite: typeof import('vite');
  try {
    vite = await import('vite');
  } catch (err) {
    if (!args.includes('--optional')) throw err;
    const built = existsSync(join(OUT_DIR, 'index.html'));
    console.warn(
      `torus: Vite is not installed (${(err as Error).message.split('\n')[0]}): ` +
        (built ? 'the web app keeps its existing build.\n' : 'the web app is not built.\n') +
        'torus: install the development dependencies (npm install) and run npm run build:web; the API works without it.',
    );
    return;
  }
  const started = Date.now();
  // always React's production build: a build started under a test runner inherits its
  // NODE_ENV=test, with which Vite keeps React's development build (1.7× the size, slower)
  process.env.NODE_ENV = 'production';
  await vite.build({ configFile: CONFIG_FILE, logLevel: 'warn', mode: 'production' });
  const totals = compress();
  console.log(
    `torus: web app built into ${relative(process.cwd(), OUT_DIR) || OUT_DIR} in ${Date.now() - started} ms\n` +
      totals.files.join('\n') +
      `\n  ${'total'.padEnd(36)} ${kb(totals.raw).padStart(9)}  gzip ${kb(totals.gzip).padStart(8)}  br ${kb(totals.br).padStart(8)}`,
  );
}

await main(process.argv.slice(2));
