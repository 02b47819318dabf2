// A job's artifacts and test results in CircleCI's API v2 shapes, and the artifact download the
// listing's `url` points to. Downloads need an API token like every v2 route (Circle-Token header,
// basic, bearer or ?circle-token=), as CircleCI's artifact URLs do for private projects: the URLs
// then never expire and carry no credential. Content is served as the operations guide's
// allow-list says, with nosniff and a sandboxing Content-Security-Policy, so an uploaded page can
// neither run script in the API's origin nor be sniffed into something else.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TorusError, type Resources } from '../ops/index.js';
import { artifactPath, type Blobs } from '../blobs/index.js';
import { baseUrl, currentUser, pageOf, paginate, positiveInt } from './http.js';
import * as reads from './reads.js';

type JobParams = { vcs: string; org: string; repo: string; number: string };

/** rendered as themselves: the guide's safe types */
const SAFE_TYPES: Record<string, string> = {
  txt: 'text/plain; charset=utf-8',
  text: 'text/plain; charset=utf-8',
  log: 'text/plain; charset=utf-8',
  json: 'application/json; charset=utf-8',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  bmp: 'image/bmp',
  webm: 'video/webm',
  ogg: 'video/ogg',
  ogv: 'video/ogg',
  oga: 'audio/ogg',
  mp4: 'video/mp4',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  mp3: 'audio/mpeg',
  mpga: 'audio/mpeg',
  mpeg: 'video/mpeg',
  mpg: 'video/mpeg',
  wav: 'audio/wav',
};

/** html, css, javascript/ecmascript and xml: text/plain unless the operator allows unsafe artifacts */
const UNSAFE_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  htm: 'text/html; charset=utf-8',
  xhtml: 'application/xhtml+xml',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  es: 'application/ecmascript',
  xml: 'text/xml; charset=utf-8',
  svg: 'image/svg+xml',
  xsl: 'text/xml; charset=utf-8',
};

/** The Content-Type an artifact is served with, by its file extension. */
export function artifactContentType(path: string, unsafeArtifacts: boolean): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
  const safe = SAFE_TYPES[ext];
  if (safe) return safe;
  const unsafe = UNSAFE_TYPES[ext];
  if (unsafe) return unsafeArtifacts ? unsafe : 'text/plain; charset=utf-8';
  return 'application/octet-stream';
}

/**
 * The Content-Security-Policy of a download: always a sandbox (an opaque origin, no forms, no
 * top-level navigation); with unsafe artifacts, an HTML report may run its own inline script.
 */
export function artifactCsp(unsafeArtifacts: boolean): string {
  return unsafeArtifacts
    ? "sandbox allow-scripts; default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self'; font-src 'self' data:"
    : "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'";
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** a listing page: CircleCI's clients rarely follow next_page_token here, so pages are large */
const PAGE = 1000;

export interface ArtifactRouteDeps {
  res: Resources;
  blobs: Blobs;
}

export function registerArtifactRoutes(app: FastifyInstance, deps: ArtifactRouteDeps): void {
  const { res, blobs } = deps;
  const db = res.db;
  const P = '/api/v2/project/:vcs/:org/:repo/:number';

  const jobOf = async (req: FastifyRequest<{ Params: JobParams }>) => {
    const user = currentUser(req);
    const { vcs, org, repo, number } = req.params;
    const project = await reads.findProject(db, user, `${vcs}/${org}/${repo}`);
    return reads.findJobByNumber(db, user, project, positiveInt(number, 'Job'));
  };

  app.get<{ Params: JobParams }>(`${P}/artifacts`, async (req) => {
    const j = await jobOf(req);
    const page = pageOf(req, PAGE);
    const base = `${baseUrl(req, res.settings.url)}/api/v2/project/${j.project_slug}/${j.number}/artifacts`;
    return paginate(await blobs.listArtifacts(j.id, page), page, (a) => ({
      path: a.path,
      node_index: a.node_index,
      url: `${base}/${a.node_index}/${encodePath(a.path)}`,
    }));
  });

  app.get<{ Params: JobParams & { node: string; '*': string } }>(
    `${P}/artifacts/:node/*`,
    async (req, reply) => {
      const j = await jobOf(req);
      if (!/^\d{1,6}$/.test(req.params.node)) throw new TorusError('TORUS_E_NOT_FOUND', 'Artifact not found');
      // the router leaves a wildcard URL-encoded: decode it once, then check it
      let raw: string;
      try {
        raw = decodeURIComponent(req.params['*'] ?? '');
      } catch {
        throw new TorusError('TORUS_E_BAD_REQUEST', 'the artifact path is not valid URL encoding');
      }
      const path = artifactPath(raw);
      const found = await blobs.openArtifact(j.id, Number(req.params.node), path);
      if (!found) throw new TorusError('TORUS_E_NOT_FOUND', 'Artifact not found');
      const unsafe = res.settings.unsafeArtifacts ?? false;
      return reply
        .header('content-type', artifactContentType(path, unsafe))
        .header('content-length', found.size)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', artifactCsp(unsafe))
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'private, max-age=300')
        .send(found.stream);
    },
  );

  app.get<{ Params: JobParams }>(`${P}/tests`, async (req) => {
    const j = await jobOf(req);
    const page = pageOf(req, PAGE);
    return paginate(await blobs.listTestResults(j.id, page), page, (t) => ({
      message: t.message,
      source: t.source,
      run_time: t.run_time,
      file: t.file ?? '',
      result: t.result,
      name: t.name,
      classname: t.classname,
    }));
  });
}
