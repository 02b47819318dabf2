// HTTP plumbing shared by the API's routes: token extraction (CircleCI's three ways plus Bearer,
// and the web app's session cookie), the signed-in user of a request, `{message}` errors, opaque
// page tokens and request-body checks.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Accounts, User } from '../accounts/index.js';
import { isTorusError, TorusError } from '../ops/index.js';

/**
 * The API token of a request: `Circle-Token` header, HTTP basic with the token as user name,
 * `Authorization: Bearer …` (CircleCI's new CLI), a bare `Authorization: <token>` (the classic CLI's
 * GraphQL client), the deprecated `circle-token` query parameter, or the web app's session cookie.
 */
export function requestToken(req: FastifyRequest): string | undefined {
  const header = req.headers['circle-token'];
  if (typeof header === 'string' && header) return header.trim();
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth) {
    const [scheme, value] = auth.split(/\s+/, 2);
    if (value !== undefined && /^basic$/i.test(scheme ?? '')) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      return (colon >= 0 ? decoded.slice(0, colon) : decoded) || undefined;
    }
    if (value !== undefined && /^bearer$/i.test(scheme ?? '')) return value || undefined;
    if (value === undefined) return auth.trim();
  }
  const q = (req.query as Record<string, unknown> | undefined)?.['circle-token'];
  if (typeof q === 'string' && q) return q;
  const session = sessionCookie(req);
  if (session) {
    checkSessionRequest(req);
    return session.token;
  }
  return undefined;
}

/**
 * An onRequest hook that needs a personal API token (any form requestToken reads) of an active
 * user and makes that user the request's: 401 `You must log in first.` or `Invalid token provided.`
 */
export function tokenAuthHook(
  accounts: Pick<Accounts, 'authenticate'>,
): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    const token = requestToken(req);
    if (!token) throw new TorusError('TORUS_E_UNAUTHORIZED', 'You must log in first.');
    const user = await accounts.authenticate(token);
    if (!user) throw new TorusError('TORUS_E_UNAUTHORIZED', 'Invalid token provided.');
    setUser(req, user);
  };
}

// ---- the web app's session (routes-session.ts sets and clears it) ----

/** HttpOnly, SameSite=Strict; its value is `<token id>.<token>` of a token made for the session */
export const SESSION_COOKIE = 'torus_session';
/**
 * The header the web app sends with every request. A page of another origin cannot send a custom
 * header without a CORS preflight, which Torus never grants: with SameSite=Strict on the cookie,
 * that is the app's defence against cross-site request forgery.
 */
export const WEB_APP_HEADER = 'x-torus-web';

const SESSION_COOKIE_RE = new RegExp(
  `(?:^|;\\s*)${SESSION_COOKIE}=([0-9a-f-]{36})\\.([0-9a-f]{16,128})(?:;|$)`,
  'i',
);

/** The session cookie of a request, when it has a well-formed one. */
export function sessionCookie(req: FastifyRequest): { tokenId: string; token: string } | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string') return undefined;
  const m = SESSION_COOKIE_RE.exec(header);
  return m ? { tokenId: m[1]!.toLowerCase(), token: m[2]! } : undefined;
}

/** The request carries the web app's header and, as far as the browser says, comes from its origin. */
export function isFromWebApp(req: FastifyRequest): boolean {
  const site = req.headers['sec-fetch-site'];
  return req.headers[WEB_APP_HEADER] === '1' && (typeof site !== 'string' || site === 'same-origin');
}

/**
 * A request that changes something on the strength of the session cookie must come from the web
 * app itself. Reads (GET, HEAD) need not: event streams and download links cannot set headers, and
 * another origin cannot read the answers.
 */
export function checkSessionRequest(req: FastifyRequest): void {
  if (req.method === 'GET' || req.method === 'HEAD') return;
  if (!isFromWebApp(req)) {
    throw new TorusError(
      'TORUS_E_FORBIDDEN',
      `This request came with the web app's session cookie but not from the web app (no ${WEB_APP_HEADER} header, or another origin); scripts authenticate with an API token in the Circle-Token header.`,
    );
  }
}

const users = new WeakMap<FastifyRequest, User>();

export function setUser(req: FastifyRequest, user: User): void {
  users.set(req, user);
}

/** The signed-in user; the auth hook has run for every route that calls this. */
export function currentUser(req: FastifyRequest): User {
  const u = users.get(req);
  if (!u) throw new TorusError('TORUS_E_UNAUTHORIZED', 'You must log in first.');
  return u;
}

export function requireAdmin(req: FastifyRequest): User {
  const u = currentUser(req);
  if (u.role !== 'admin') throw new TorusError('TORUS_E_FORBIDDEN', 'Only administrators may do this.');
  return u;
}

export function sendMessage(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.status(status).send({ message });
}

// ---- pagination: `items` + `next_page_token`, the token an opaque base64url offset ----

export const PAGE_SIZE = 20;

export interface Page {
  offset: number;
  limit: number;
}

export function pageOf(req: FastifyRequest, limit = PAGE_SIZE): Page {
  const raw = (req.query as Record<string, unknown>)['page-token'];
  if (raw === undefined || raw === '') return { offset: 0, limit };
  if (typeof raw !== 'string') throw new TorusError('TORUS_E_BAD_REQUEST', 'page-token must be given once');
  let offset: unknown;
  try {
    offset = (JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { o?: unknown }).o;
  } catch {
    offset = undefined; // reported below as an invalid token
  }
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'page-token is not valid: pass the next_page_token of a previous response',
    );
  }
  return { offset, limit };
}

/** Rows were fetched with LIMIT page.limit + 1: the extra row says there is a next page. */
export function paginate<R, T>(
  rows: R[],
  page: Page,
  map: (r: R) => T,
): { items: T[]; next_page_token: string | null } {
  const more = rows.length > page.limit;
  return {
    items: rows.slice(0, page.limit).map(map),
    next_page_token: more
      ? Buffer.from(JSON.stringify({ o: page.offset + page.limit })).toString('base64url')
      : null,
  };
}

// ---- request values ----

export function queryString(req: FastifyRequest, name: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string')
    throw new TorusError('TORUS_E_BAD_REQUEST', `query parameter ${name} must be given once`);
  return v;
}

export function bodyObject(req: FastifyRequest): Record<string, unknown> {
  const b = req.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b))
    throw new TorusError('TORUS_E_BAD_REQUEST', 'the request body must be a JSON object');
  return b as Record<string, unknown>;
}

export function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new TorusError('TORUS_E_BAD_REQUEST', `${key} must be a string`);
  return v;
}

export function optionalBoolean(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new TorusError('TORUS_E_BAD_REQUEST', `${key} must be true or false`);
  return v;
}

export function positiveInt(raw: string, what: string): number {
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1)
    throw new TorusError('TORUS_E_NOT_FOUND', `${what} ${JSON.stringify(raw)} not found`);
  return Number(raw);
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** A path id that must be a UUID: anything else cannot name a row, so it is a 404 like an unknown id. */
export function uuidParam(raw: string, what: string): string {
  if (!isUuid(raw)) throw new TorusError('TORUS_E_NOT_FOUND', `${what} not found`);
  return raw.toLowerCase();
}

export function iso(d: Date | string | null | undefined): string | null {
  if (d === null || d === undefined) return null;
  return (d instanceof Date ? d : new Date(d)).toISOString();
}

/** The server's external address: the configured URL, else the one the request came to. */
export function baseUrl(req: FastifyRequest, configured: string): string {
  if (configured) return configured.replace(/\/+$/, '');
  return `${req.protocol}://${req.host}`;
}

/** CircleCI's error shape for every failure: TorusError → its status, 4xx kept, anything else a logged 500. */
export function sendApiError(
  err: FastifyError | TorusError | Error,
  req: FastifyRequest,
  reply: FastifyReply,
) {
  if (isTorusError(err)) {
    if (err.status >= 500) req.log.error({ err }, 'request failed');
    return reply
      .status(err.status)
      .send({ message: err.hint ? `${err.message} (${err.hint})` : err.message });
  }
  const status = (err as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return reply.status(status).send({ message: err.message });
  }
  req.log.error({ err, url: req.url, method: req.method }, 'request failed');
  return reply
    .status(500)
    .send({ message: `Internal server error (request ${req.id}); the server log has the details.` });
}
