// A client for an upstream orb registry (CircleCI's public one by default) that an import reads
// from: one orb version with its source, one orb's versions, or every orb of a namespace. It sends
// the `circleci` CLI's own request texts, as `circleci admin import-orb` does (POST, JSON
// `{query, variables}`, raw token in Authorization, empty for circleci.com), through the proxy
// the server is configured with (ops/proxy.ts). Every failure is an UpstreamError that names the
// upstream URL (and the proxy, when one was used).
import { ProxyError, TorusError, envProxiedFetch, type ErrorCode } from '../ops/index.js';

export const DEFAULT_UPSTREAM_URL = 'https://circleci.com/graphql-unstable';

/** what the `circleci` CLI waits for an answer by default (CIRCLECI_CLI_TIMEOUT) */
export const UPSTREAM_TIMEOUT_MS = 60_000;

// The two query texts below are copied byte for byte from the classic `circleci` CLI (circleci-cli,
// branch v0, commit a631c5b, api/api.go: ListNamespaceOrbVersions L1478-1504 and OrbInfo
// L1337-1365; MIT License, Copyright (c) 2018 Circle Internet Services, Inc.), as kept in
// shared/reference/circleci-cli-queries/. They are CircleCI's public API request shapes: sending
// exactly these means an upstream answers Torus as it answers the CLI. Their tabs and spaces are theirs.

/** `namespaceOrbs-orbImport`: a namespace's orbs, 20 a page, each with its newest version's source */
export const NAMESPACE_ORBS_QUERY = `
query namespaceOrbs ($namespace: String, $after: String!) {
		registryNamespace(name: $namespace) {
			name
			id
			orbs(first: 20, after: $after) {
				edges {
					cursor
					node {
						versions(count: 1) {
							source
							id
							version
							createdAt
						}
						name
						id
						createdAt
					}
				}
				pageInfo {
					hasNextPage
				}
			}
		}
	}
`;

/** `orbVersion-info`: one version (source, createdAt) and its orb's versions, newest first, at most 200 */
export const ORB_VERSION_INFO_QUERY = `query($orbVersionRef: String!) {
			    orbVersion(orbVersionRef: $orbVersionRef) {
			        id
                                version
                                orb {
                                    id
                                    createdAt
									name
									namespace {
									  name
									}
                                    categories {
                                      id
                                      name
                                    }
	                            statistics {
		                        last30DaysBuildCount,
		                        last30DaysProjectCount,
		                        last30DaysOrganizationCount
	                            }
                                    versions(count: 200) {
                                        createdAt
                                        version
                                    }
                                }
                                source
                                createdAt
			    }
		      }`;

/** What went wrong talking to the upstream registry. */
export type UpstreamErrorKind =
  /** no connection, the connection dropped, or no answer in time */
  | 'unreachable'
  /** the proxy in between refused or failed (see the cause, a ProxyError) */
  | 'proxy'
  /** an HTTP status other than 200 (the CLI's "failure calling GraphQL API") */
  | 'http-status'
  /** an answer that is not JSON, not a GraphQL answer, or not shaped as the query asked */
  | 'bad-answer'
  /** a GraphQL answer with errors */
  | 'graphql'
  /** the namespace, orb or version does not exist upstream */
  | 'not-found';

const ERROR_CODE: Record<UpstreamErrorKind, ErrorCode> = {
  unreachable: 'TORUS_E_UNAVAILABLE',
  proxy: 'TORUS_E_UNAVAILABLE',
  'http-status': 'TORUS_E_UNAVAILABLE',
  'bad-answer': 'TORUS_E_UNAVAILABLE',
  graphql: 'TORUS_E_UNAVAILABLE',
  'not-found': 'TORUS_E_NOT_FOUND',
};

export class UpstreamError extends TorusError {
  constructor(
    readonly kind: UpstreamErrorKind,
    /** the upstream GraphQL URL */
    readonly upstream: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ERROR_CODE[kind], message);
    this.name = 'UpstreamError';
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

export function isUpstreamError(err: unknown): err is UpstreamError {
  return err instanceof UpstreamError;
}

/** One published version, with its packed source. */
export interface UpstreamOrbVersion {
  /** `namespace/orb` */
  name: string;
  version: string;
  source: string;
  /** ISO 8601, as the upstream gave it */
  createdAt: string;
}

export interface UpstreamVersionEntry {
  version: string;
  createdAt: string;
}

export interface UpstreamOrb {
  /** `namespace/orb` */
  name: string;
  createdAt: string;
  /** newest first */
  versions: UpstreamVersionEntry[];
  /**
   * The CLI's query asks for at most 200 versions (`versions(count: 200)`); true when it got that
   * many, so older ones may be missing.
   */
  versionsCapped: boolean;
}

export interface UpstreamNamespaceOrb extends UpstreamOrb {
  /** the newest version, with its source (the namespace listing carries it) */
  latest: UpstreamOrbVersion;
}

export interface UpstreamRegistry {
  /** the GraphQL URL requests go to */
  readonly url: string;
  /** `ns/orb@version` (also `@1`, `@1.2`, `@volatile`; no `@` means `@volatile`, as in the CLI) */
  fetchOrbVersion(ref: string): Promise<UpstreamOrbVersion>;
  /** `ns/orb` with its versions */
  fetchOrb(name: string): Promise<UpstreamOrb>;
  /** every orb of a namespace that has a published version, with all its versions (every page) */
  listNamespaceOrbs(namespace: string): Promise<UpstreamNamespaceOrb[]>;
}

/** The part of a fetch Response the client reads (undici's and Node's global fetch both fit). */
interface FetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

/** a fetch; when it can say which proxy a URL goes through (a ProxiedFetch can), errors name it */
export type UpstreamFetch = ((
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; signal: AbortSignal },
) => Promise<FetchResponse>) & { proxyFor?(url: string | URL): string | undefined };

export interface UpstreamRegistryOptions {
  /** the upstream's GraphQL URL; a bare host (`https://circleci.example.com`) gets `/graphql-unstable` */
  url?: string;
  /** sent raw in Authorization, as the CLI does; empty by default (circleci.com needs none) */
  token?: string;
  /** default: envProxiedFetch() (HTTP_PROXY / HTTPS_PROXY / NO_PROXY from the environment) */
  fetch?: UpstreamFetch;
  timeoutMs?: number;
}

const NAME = /^[a-z0-9][a-z0-9_-]*$/i;
const VERSION_SPEC = /^(volatile|\d+(\.\d+){0,2}|dev:[\w.-]+)$/;

/** `https://host` → `https://host/graphql-unstable`; a URL with a path is kept as it is. */
export function upstreamGraphqlUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the upstream orb registry must be a URL such as ${DEFAULT_UPSTREAM_URL}, not ${JSON.stringify(raw)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the upstream orb registry must be an http(s) URL, not ${raw}`,
    );
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/graphql-unstable';
  return url.href;
}

function parseOrbName(name: string): { namespace: string; orb: string } {
  const [namespace, orb, ...rest] = name.split('/');
  if (!namespace || !orb || rest.length > 0 || !NAME.test(namespace) || !NAME.test(orb)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(name)} is not an orb name; expected namespace/orb, e.g. circleci/node`,
    );
  }
  return { namespace, orb };
}

function parseOrbRef(ref: string): string {
  const at = ref.indexOf('@');
  const name = at < 0 ? ref : ref.slice(0, at);
  const spec = at < 0 ? 'volatile' : ref.slice(at + 1);
  parseOrbName(name);
  if (!VERSION_SPEC.test(spec)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(ref)} is not an orb reference; expected namespace/orb@version, e.g. circleci/node@5.2.0`,
    );
  }
  return `${name}@${spec}`;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Walks an answer, failing with a bad-answer error that says which field is not as asked. */
class Answer {
  constructor(
    private readonly fail: (message: string) => UpstreamError,
    readonly value: Json | undefined,
    readonly path: string,
  ) {}

  get(key: string): Answer {
    const v = this.value;
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw this.fail(`${this.path} is not an object`);
    return new Answer(this.fail, v[key], `${this.path}.${key}`);
  }

  isNull(): boolean {
    return this.value === null || this.value === undefined;
  }

  string(): string {
    if (typeof this.value !== 'string') throw this.fail(`${this.path} is not a string`);
    return this.value;
  }

  boolean(): boolean {
    if (typeof this.value !== 'boolean') throw this.fail(`${this.path} is not a boolean`);
    return this.value;
  }

  list(): Answer[] {
    if (!Array.isArray(this.value)) throw this.fail(`${this.path} is not a list`);
    return this.value.map((v, i) => new Answer(this.fail, v, `${this.path}[${i}]`));
  }
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 120 ? `${flat.slice(0, 120)}…` : flat;
}

/** The innermost cause's message, with its code: `connect ECONNREFUSED 127.0.0.1:9`, `other side closed (UND_ERR_SOCKET)`. */
function describeCause(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error && e.cause instanceof Error; depth++) e = e.cause;
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string' || e.message.includes(code)) return e.message || String(code);
  return e.message ? `${e.message} (${code})` : code;
}

/** how often a query is sent when its connection turns out closed */
const CONNECTION_ATTEMPTS = 3;

/** an error of a connection the other side closed (before or while answering), not a refusal */
function isClosedConnection(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_CLOSED')
      return true;
  }
  return false;
}

/** A client for the upstream registry at `opts.url` (default CircleCI's). */
export function createUpstreamRegistry(opts: UpstreamRegistryOptions = {}): UpstreamRegistry {
  const url = upstreamGraphqlUrl(opts.url ?? DEFAULT_UPSTREAM_URL);
  const fetch: UpstreamFetch = opts.fetch ?? envProxiedFetch();
  const timeoutMs = opts.timeoutMs ?? UPSTREAM_TIMEOUT_MS;
  const proxy = fetch.proxyFor?.(url);
  const where = `the upstream orb registry at ${url}${proxy ? ` (through proxy ${proxy})` : ''}`;

  async function query(text: string, variables: Record<string, string>): Promise<Answer> {
    // as the CLI's Go encoder writes it: `query` then `variables` (keys sorted), and a newline
    const sorted = Object.fromEntries(Object.entries(variables).sort(([a], [b]) => (a < b ? -1 : 1)));
    const body = `${JSON.stringify({ query: text, variables: sorted })}\n`;
    const unreachable = (err: unknown): UpstreamError => {
      if (err instanceof ProxyError) {
        const message = `cannot query the upstream orb registry at ${url}: ${err.message}`;
        return new UpstreamError('proxy', url, message, { cause: err });
      }
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        return new UpstreamError('unreachable', url, `${where} did not answer within ${timeoutMs} ms`, {
          cause: err,
        });
      }
      return new UpstreamError('unreachable', url, `cannot reach ${where}: ${describeCause(err)}`, {
        cause: err,
      });
    };
    let status: number;
    let contentType: string;
    let raw: string;
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json; charset=utf-8',
            accept: 'application/json; charset=utf-8',
            authorization: opts.token ?? '',
            'user-agent': 'torus (orb import)',
          },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        status = res.status;
        contentType = res.headers.get('content-type') ?? 'no content type';
        raw = await res.text();
        break;
      } catch (err) {
        // every query is a read: one whose kept-alive connection the other side had closed (a
        // proxy such as tinyproxy closes them between requests) is sent again on a new one
        if (attempt < CONNECTION_ATTEMPTS && isClosedConnection(err)) continue;
        throw unreachable(err);
      }
    }
    if (status !== 200) {
      throw new UpstreamError(
        'http-status',
        url,
        `${where} answered HTTP ${status} (${contentType}): ${snippet(raw)}` +
          (proxy && (status === 401 || status === 407)
            ? '; if the proxy sent it, its credentials are missing or wrong (http://user:password@host:port)'
            : ''),
      );
    }
    let parsed: Json;
    try {
      parsed = JSON.parse(raw) as Json;
    } catch {
      throw new UpstreamError(
        'bad-answer',
        url,
        `${where} answered with something that is not JSON (${contentType}): ${snippet(raw)}`,
      );
    }
    if (
      parsed === null ||
      typeof parsed !== 'object' ||
      Array.isArray(parsed) ||
      !('data' in parsed || 'errors' in parsed)
    ) {
      throw new UpstreamError(
        'bad-answer',
        url,
        `${where} did not answer as a GraphQL API does (no data, no errors): ${snippet(raw)}`,
      );
    }
    const errors = parsed.errors;
    if (Array.isArray(errors) && errors.length > 0) {
      const messages = errors.map((e) =>
        e !== null && typeof e === 'object' && !Array.isArray(e) && typeof e.message === 'string'
          ? e.message
          : JSON.stringify(e),
      );
      throw new UpstreamError('graphql', url, `${where} answered with errors: ${messages.join('; ')}`);
    }
    const fail = (message: string) =>
      new UpstreamError('bad-answer', url, `${where} answered in an unexpected shape: ${message}`);
    const data = new Answer(fail, parsed.data, 'data');
    if (data.isNull()) throw fail('data is null');
    return data;
  }

  async function orbVersionInfo(
    ref: string,
  ): Promise<{ version: UpstreamOrbVersion; orb: UpstreamOrb } | null> {
    const data = await query(ORB_VERSION_INFO_QUERY, { orbVersionRef: ref });
    const ov = data.get('orbVersion');
    // CircleCI answers null, the CLI reads an empty id as "does not exist"
    if (ov.isNull() || ov.get('id').value === '') return null;
    const orb = ov.get('orb');
    const name = orb.get('name').string();
    const versions = orb
      .get('versions')
      .list()
      .map((v) => ({ version: v.get('version').string(), createdAt: v.get('createdAt').string() }));
    return {
      version: {
        name,
        version: ov.get('version').string(),
        source: ov.get('source').string(),
        createdAt: ov.get('createdAt').string(),
      },
      orb: {
        name,
        createdAt: orb.get('createdAt').string(),
        versions,
        versionsCapped: versions.length >= 200,
      },
    };
  }

  return {
    url,

    async fetchOrbVersion(ref) {
      const full = parseOrbRef(ref);
      const info = await orbVersionInfo(full);
      if (!info) {
        throw new UpstreamError(
          'not-found',
          url,
          `orb ${full} does not exist at ${where}; check the orb's name and version (\`circleci orb info ${full}\`)`,
        );
      }
      return info.version;
    },

    async fetchOrb(name) {
      parseOrbName(name);
      const info = await orbVersionInfo(`${name}@volatile`);
      if (!info) {
        throw new UpstreamError(
          'not-found',
          url,
          `orb ${name} does not exist at ${where}, or has no published version; check its name`,
        );
      }
      return info.orb;
    },

    async listNamespaceOrbs(namespace) {
      if (!NAME.test(namespace)) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `${JSON.stringify(namespace)} is not a namespace name; expected e.g. circleci`,
        );
      }
      const listed: UpstreamOrbVersion[] = [];
      const cursors = new Set<string>();
      for (let after = ''; ;) {
        const data = await query(NAMESPACE_ORBS_QUERY, { after, namespace });
        const ns = data.get('registryNamespace');
        if (ns.isNull() || ns.get('id').value === '') {
          throw new UpstreamError(
            'not-found',
            url,
            `namespace ${namespace} does not exist at ${where}; check its name`,
          );
        }
        const orbs = ns.get('orbs');
        const edges = orbs.get('edges').list();
        for (const edge of edges) {
          const node = edge.get('node');
          const [newest] = node.get('versions').list();
          // an orb created but never published has nothing to import
          if (!newest) continue;
          listed.push({
            name: node.get('name').string(),
            version: newest.get('version').string(),
            source: newest.get('source').string(),
            createdAt: newest.get('createdAt').string(),
          });
        }
        if (!orbs.get('pageInfo').get('hasNextPage').boolean()) break;
        const last = edges[edges.length - 1];
        const cursor = last?.get('cursor').string();
        if (cursor === undefined || cursors.has(cursor)) {
          throw fail(`namespace ${namespace}: the next page was announced without a new cursor`);
        }
        cursors.add(cursor);
        after = cursor;
      }
      const out: UpstreamNamespaceOrb[] = [];
      for (const latest of listed) {
        const info = await orbVersionInfo(`${latest.name}@volatile`);
        if (!info) {
          throw new UpstreamError(
            'bad-answer',
            url,
            `${where} listed orb ${latest.name} in namespace ${namespace} but has no version of it`,
          );
        }
        out.push({ ...info.orb, latest });
      }
      return out;

      function fail(message: string) {
        return new UpstreamError('bad-answer', url, `${where} answered in an unexpected shape: ${message}`);
      }
    },
  };
}
