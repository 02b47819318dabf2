// The web app (src/web, built by Vite into dist/web) served at `/`: its files from memory with
// their content types, precompressed variants (brotli, gzip) when the browser takes them, hashed
// assets cached for a year, and index.html (never cached) for every other path that is not the
// API's, so the app's own routes survive a reload. Every answer carries the app's
// Content-Security-Policy. Without a build, `/` says how to make one.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';

/** where `npm run build:web` writes the app */
export const WEB_DIST_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/**
 * Scripts, styles and data from the app's own origin only; no inline script, no framing, no
 * plugins. React's `style` props go through the CSSOM, which style-src does not govern.
 */
export const WEB_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const ASSET_MAX_AGE_S = 365 * 24 * 60 * 60;
/** how often a running server looks for a newer build */
const RELOAD_CHECK_MS = 2_000;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

interface WebFile {
  body: Buffer;
  br?: Buffer;
  gzip?: Buffer;
  type: string;
  etag: string;
  /** content-hashed by Vite: its name changes whenever it does */
  immutable: boolean;
}

interface WebBuild {
  files: Map<string, WebFile>;
  indexMtimeMs: number;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** The build in `dir`, or undefined when there is none. */
function loadBuild(dir: string): WebBuild | undefined {
  const index = join(dir, 'index.html');
  if (!existsSync(index)) return undefined;
  const indexMtimeMs = statSync(index).mtimeMs;
  const paths = walk(dir);
  const present = new Set(paths);
  const files = new Map<string, WebFile>();
  for (const path of paths) {
    if (path.endsWith('.br') || path.endsWith('.gz')) continue;
    const url = '/' + relative(dir, path).split(sep).join('/');
    const body = readFileSync(path);
    files.set(url, {
      body,
      ...(present.has(`${path}.br`) ? { br: readFileSync(`${path}.br`) } : {}),
      ...(present.has(`${path}.gz`) ? { gzip: readFileSync(`${path}.gz`) } : {}),
      type: CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      immutable: url.startsWith('/assets/'),
    });
  }
  return { files, indexMtimeMs };
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Torus</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>Torus is running, but its web app is not built</h1>
<p>Build it in the Torus checkout with <code>npm run build:web</code> (<code>npm install</code> and
<code>npm start</code> do it for you), then reload this page. It needs the development
dependencies: <code>npm install</code> without <code>--omit=dev</code>.</p>
<p>The API answers meanwhile at <code>/api/v2/…</code> with a personal API token.</p>
</body></html>
`;

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', WEB_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .header('cross-origin-opener-policy', 'same-origin');
}

function sendFile(req: FastifyRequest, reply: FastifyReply, file: WebFile): FastifyReply {
  securityHeaders(reply)
    .header('content-type', file.type)
    .header('etag', file.etag)
    .header('cache-control', file.immutable ? `public, max-age=${ASSET_MAX_AGE_S}, immutable` : 'no-cache');
  if (file.br || file.gzip) void reply.header('vary', 'accept-encoding');
  if (req.headers['if-none-match'] === file.etag) return reply.status(304).send();
  const accepted = String(req.headers['accept-encoding'] ?? '');
  if (file.br && /\bbr\b/.test(accepted)) return reply.header('content-encoding', 'br').send(file.br);
  if (file.gzip && /\bgzip\b/.test(accepted)) return reply.header('content-encoding', 'gzip').send(file.gzip);
  return reply.send(file.body);
}

export interface WebRoutesOptions {
  /** the built app (default: dist/web of this checkout) */
  dir?: string;
  /**
   * `GET /api/v2/torus/session`'s answer for a request: given, index.html carries it (a JSON data
   * block the app reads at start), which saves the app that round trip before its first page
   */
  session?: (req: FastifyRequest) => Promise<unknown>;
}

/** the id of index.html's session data block (src/web/app/session.ts reads it) */
export const SESSION_DATA_ID = 'torus-session';

/** index.html with `data` in a JSON data block: not a script the CSP would have to allow */
function withSessionData(index: Buffer, data: unknown): Buffer {
  // `<` escaped: the JSON cannot end the element early, whatever a user's name holds
  const json = JSON.stringify(data).replace(/</g, '\\u003c');
  const block = `<script type="application/json" id="${SESSION_DATA_ID}">${json}</script>`;
  const html = index.toString('utf8');
  const at = html.indexOf('</head>');
  return Buffer.from(at < 0 ? block + html : html.slice(0, at) + block + html.slice(at));
}

export function webRoutes(opts: WebRoutesOptions = {}): FastifyPluginAsync {
  const dir = opts.dir ?? WEB_DIST_DIR;
  let build: WebBuild | undefined;
  let checkedAt = 0;

  /** the current build: loaded on first use, reloaded when index.html changes (a rebuild) */
  const currentBuild = (): WebBuild | undefined => {
    const now = Date.now();
    if (build && now - checkedAt < RELOAD_CHECK_MS) return build;
    checkedAt = now;
    const index = join(dir, 'index.html');
    const mtimeMs = existsSync(index) ? statSync(index).mtimeMs : undefined;
    if (mtimeMs === undefined) build = undefined;
    else if (!build || build.indexMtimeMs !== mtimeMs) build = loadBuild(dir);
    return build;
  };

  return async (app: FastifyInstance) => {
    app.get('/*', async (req, reply) => {
      const path = req.url.split('?')[0] ?? '/';
      // the API's unknown paths stay the API's JSON 404s
      if (path === '/api' || path.startsWith('/api/') || path.startsWith('/graphql')) {
        return reply.callNotFound();
      }
      const current = currentBuild();
      if (!current) {
        return securityHeaders(reply)
          .status(503)
          .header('content-type', 'text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(NOT_BUILT);
      }
      const file = path === '/index.html' && opts.session ? undefined : current.files.get(path);
      if (file) return sendFile(req, reply, file);
      // an asset of another build (the page is older than the server's app): not the app's HTML
      if (path.startsWith('/assets/')) {
        return securityHeaders(reply)
          .status(404)
          .header('content-type', 'text/plain; charset=utf-8')
          .send('Not found: reload the page for the current version of the app.');
      }
      const index = current.files.get('/index.html')!;
      if (!opts.session) return sendFile(req, reply, index);
      // one reader's own page: neither compressed ahead nor validated by the build's etag
      return securityHeaders(reply)
        .header('content-type', index.type)
        .header('cache-control', 'no-store')
        .send(withSessionData(index.body, await opts.session(req)));
    });
  };
}
