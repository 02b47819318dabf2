// The web app's files as the server serves them: client routes get index.html, hashed assets a
// year's cache, compressed variants when accepted, the CSP everywhere; the API keeps its JSON 404s;
// no build means a page that says how to make one.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { SESSION_DATA_ID, WEB_CSP, webRoutes, type WebRoutesOptions } from './web-routes.js';

const INDEX =
  '<!doctype html><title>Torus</title><script type="module" src="/assets/index-abc123.js"></script>';
const SCRIPT = 'console.log("torus");'.repeat(100);

function makeBuild(): string {
  const dir = mkdtempSync(join(tmpdir(), 'torus-web-'));
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'index.html'), INDEX);
  writeFileSync(join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  writeFileSync(join(dir, 'assets/index-abc123.js'), SCRIPT);
  writeFileSync(join(dir, 'assets/index-abc123.js.gz'), gzipSync(SCRIPT));
  return dir;
}

async function appWith(dir: string, session?: WebRoutesOptions['session']) {
  const app = Fastify();
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ message: `Not found: ${req.method} ${req.url}` }),
  );
  app.get('/api/v2/me', async () => ({ login: 'x' }));
  await app.register(webRoutes({ dir, ...(session ? { session } : {}) }));
  return app;
}

describe('web routes', () => {
  let app: Awaited<ReturnType<typeof appWith>> | undefined;
  afterEach(async () => {
    await app?.close();
  });

  it('answers client routes with index.html, uncached, with the CSP', async () => {
    app = await appWith(makeBuild());
    for (const url of ['/', '/pipelines/circleci/acme/widget.js/3/workflows/x/jobs/7', '/index.html?x=1']) {
      const r = await app.inject({ url });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(r.headers['cache-control']).toBe('no-cache');
      expect(r.headers['content-security-policy']).toBe(WEB_CSP);
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.body).toBe(INDEX);
    }
    const again = await app.inject({
      url: '/',
      headers: { 'if-none-match': (await app.inject({ url: '/' })).headers.etag as string },
    });
    expect(again.statusCode).toBe(304);
  });

  it('puts who is signed in into index.html as a JSON data block, never cached', async () => {
    const user = { login: 'eve', name: 'Eve </script><script>alert(1)</script>' };
    app = await appWith(makeBuild(), async (req) => ({
      user: req.headers.cookie === 'torus_session=yes' ? user : null,
    }));
    for (const url of ['/', '/index.html', '/pipelines/circleci/acme/shop']) {
      const r = await app.inject({ url, headers: { cookie: 'torus_session=yes' } });
      expect(r.statusCode).toBe(200);
      expect(r.headers['cache-control']).toBe('no-store');
      expect(r.headers['content-security-policy']).toBe(WEB_CSP);
      const m = new RegExp(`<script type="application/json" id="${SESSION_DATA_ID}">(.*?)</script>`).exec(
        r.body,
      );
      expect(m, r.body).not.toBeNull();
      // the name cannot close the element: `<` is escaped, and the JSON reads back whole
      expect(m![1]).not.toContain('<');
      expect(JSON.parse(m![1]!)).toEqual({ user });
      expect(r.body.replace(m![0], '')).toBe(INDEX);
    }
    const anonymous = await app.inject({ url: '/' });
    expect(anonymous.body).toContain(`id="${SESSION_DATA_ID}">{"user":null}</script>`);
  });

  it('serves hashed assets for a year, compressed when the browser takes it', async () => {
    app = await appWith(makeBuild());
    const plain = await app.inject({ url: '/assets/index-abc123.js' });
    expect(plain.statusCode).toBe(200);
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.body).toBe(SCRIPT);
    const gz = await app.inject({
      url: '/assets/index-abc123.js',
      headers: { 'accept-encoding': 'gzip, deflate' },
    });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.vary).toBe('accept-encoding');
    expect(gz.rawPayload.length).toBeLessThan(SCRIPT.length);
    expect((await app.inject({ url: '/favicon.svg' })).headers['content-type']).toBe('image/svg+xml');
    // an asset of another build is a 404, not the app's HTML
    const gone = await app.inject({ url: '/assets/index-old999.js' });
    expect(gone.statusCode).toBe(404);
    expect(gone.headers['content-type']).toMatch(/^text\/plain/);
  });

  it('leaves the API its routes and its JSON 404s', async () => {
    app = await appWith(makeBuild());
    expect((await app.inject({ url: '/api/v2/me' })).json()).toEqual({ login: 'x' });
    const missing = await app.inject({ url: '/api/v2/nothing-here' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({ message: 'Not found: GET /api/v2/nothing-here' });
  });

  it('says how to build the app when there is no build, and finds one made later', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'torus-web-empty-'));
    app = await appWith(dir);
    const r = await app.inject({ url: '/' });
    expect(r.statusCode).toBe(503);
    expect(r.body).toContain('npm run build:web');
    writeFileSync(join(dir, 'index.html'), INDEX);
    expect((await app.inject({ url: '/' })).body).toBe(INDEX);
  });
});
