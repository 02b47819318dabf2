// Outbound HTTP(S) for the server behind a corporate proxy, as CircleCI Server operators set it up:
// HTTP_PROXY / HTTPS_PROXY / NO_PROXY (or the lowercase names), credentials in the proxy URL
// (`http://user:password@proxy:3128`, sent as Proxy-Authorization: Basic), and the explicit
// `http_proxy` / `https_proxy` / `no_proxy` settings winning over the environment.
//
// Requests go through undici (Node's own fetch implementation): https:// targets through a CONNECT
// tunnel, http:// targets as absolute-URI requests to the proxy (what Go's net/http and curl do, and
// what proxies allow by default: squid refuses CONNECT to ports other than 443 out of the box).
// The proxy is chosen per request, so a redirect to a NO_PROXY host goes direct.
import { BlockList, isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { Agent, Dispatcher, ProxyAgent, fetch as undiciFetch, type RequestInit, type Response } from 'undici';
import { TorusError } from './errors.js';

export interface ProxySettings {
  /** proxy URL for http:// requests */
  httpProxy?: string;
  /** proxy URL for https:// requests */
  httpsProxy?: string;
  /** comma-separated hosts, domains, IP addresses and CIDR ranges reached directly */
  noProxy?: string;
}

/**
 * The proxy settings in force: explicit settings (torus.yaml / TORUS_*_PROXY) win, then the
 * upper-case variables, then the lower-case ones (the order of Go's httpproxy.FromEnvironment,
 * which the `circleci` CLI and CircleCI Server's services use). An https:// request uses only the
 * HTTPS proxy, as Go and curl do: an operator behind a proxy sets both, as the operations guide shows.
 */
export function proxySettingsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  explicit: ProxySettings = {},
): ProxySettings {
  const pick = (...values: (string | undefined)[]) => values.find((v) => v !== undefined && v.trim() !== '');
  return {
    httpProxy: pick(explicit.httpProxy, env.HTTP_PROXY, env.http_proxy),
    httpsProxy: pick(explicit.httpsProxy, env.HTTPS_PROXY, env.https_proxy),
    noProxy: pick(explicit.noProxy, env.NO_PROXY, env.no_proxy),
  };
}

// ---------------------------------------------------------------------------------------------
// NO_PROXY

type NoProxyRule =
  | { kind: 'all' }
  /** the host itself and every subdomain; `port` when the entry named one */
  | { kind: 'domain'; domain: string; port?: number }
  /** one address or a CIDR range (a BlockList of one entry) */
  | { kind: 'ip'; range: BlockList; port?: number };

export interface NoProxyList {
  rules: NoProxyRule[];
  /** entries that are none of the forms understood, left out (an operator may want to see them) */
  ignored: string[];
}

function ipFamily(address: string): 'ipv4' | 'ipv6' | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

function portOf(raw: string | undefined): number | undefined | null {
  if (raw === undefined) return undefined;
  if (!/^\d{1,5}$/.test(raw)) return null;
  const n = Number(raw);
  return n >= 1 && n <= 65_535 ? n : null;
}

function ipRule(address: string, prefix: number | undefined, port: number | undefined): NoProxyRule | null {
  const family = ipFamily(address);
  if (!family) return null;
  const range = new BlockList();
  if (prefix === undefined) range.addAddress(address, family);
  else {
    if (prefix > (family === 'ipv4' ? 32 : 128)) return null;
    range.addSubnet(address, prefix, family);
  }
  return port === undefined ? { kind: 'ip', range } : { kind: 'ip', range, port };
}

function parseEntry(entry: string): NoProxyRule | null {
  if (entry === '*') return { kind: 'all' };
  // CIDR: 10.0.0.0/8, fd00::/8, [fd00::]/8
  const cidr = /^\[?([^\]/]+)\]?\/(\d{1,3})$/.exec(entry);
  if (cidr) return ipRule(cidr[1]!, Number(cidr[2]), undefined);
  // bracketed IPv6, with or without a port: [::1], [::1]:8080
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) {
    const port = portOf(bracketed[2]);
    return port === null ? null : ipRule(bracketed[1]!, undefined, port);
  }
  // a bare IPv6 address has colons of its own: never a port
  if (ipFamily(entry) === 'ipv6') return ipRule(entry, undefined, undefined);
  const hostPort = /^(.*?)(?::([^:]*))?$/.exec(entry)!;
  const port = portOf(hostPort[2]);
  if (port === null) return null;
  const host = hostPort[1]!;
  if (ipFamily(host)) return ipRule(host, undefined, port);
  // `*.example.com`, `.example.com` and `example.com` all mean the domain and its subdomains
  // (curl's reading; Go's leaves the bare domain out for `.example.com`, which surprises people)
  const name = host.replace(/^\*?\./, '').replace(/\.$/, '');
  if (!/^[^\s/@*:]+$/.test(name)) return null;
  const domain = domainToASCII(name);
  if (!domain) return null;
  return port === undefined ? { kind: 'domain', domain } : { kind: 'domain', domain, port };
}

/** Parses a NO_PROXY value: entries separated by commas (and/or spaces), case-insensitive. */
export function parseNoProxy(noProxy: string | undefined): NoProxyList {
  const list: NoProxyList = { rules: [], ignored: [] };
  for (const raw of (noProxy ?? '').split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    const rule = parseEntry(entry);
    if (rule) list.rules.push(rule);
    else list.ignored.push(raw);
  }
  return list;
}

function defaultPort(protocol: string): number {
  return protocol === 'https:' ? 443 : 80;
}

function matches(rules: NoProxyRule[], url: URL): boolean {
  const host = url.hostname
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '')
    .toLowerCase();
  const port = url.port ? Number(url.port) : defaultPort(url.protocol);
  const family = ipFamily(host);
  return rules.some((rule) => {
    switch (rule.kind) {
      case 'all':
        return true;
      case 'domain':
        return (
          !family &&
          (host === rule.domain || host.endsWith(`.${rule.domain}`)) &&
          (rule.port === undefined || rule.port === port)
        );
      case 'ip':
        return (
          family !== undefined &&
          rule.range.check(host, family) &&
          (rule.port === undefined || rule.port === port)
        );
    }
  });
}

/**
 * Whether a request to `url` skips the proxy under this NO_PROXY value. Entries: `*`; host names
 * and domains (`example.com`, `.example.com` and `*.example.com` each match example.com and its
 * subdomains); IPv4 and IPv6 addresses (`10.0.0.1`, `::1`, `[::1]`); CIDR ranges (`10.0.0.0/8`,
 * `fd00::/8`); any host or address with `:port`, which then matches that port only. Names are
 * not resolved: an address entry matches only URLs written with an address.
 */
export function shouldBypassProxy(url: string | URL, noProxy: string | NoProxyList | undefined): boolean {
  const list = typeof noProxy === 'object' ? noProxy : parseNoProxy(noProxy);
  return matches(list.rules, typeof url === 'string' ? new URL(url) : url);
}

// ---------------------------------------------------------------------------------------------
// Proxy URLs

export interface ProxyEndpoint {
  /** the proxy URL without credentials */
  url: URL;
  /** `Basic …` when the URL carried a user name */
  authorization?: string;
  /** for messages and logs: the URL with the password replaced by `***` */
  display: string;
}

/** `http://user:***@proxy:3128`: what may appear in logs and errors. */
export function redactProxyUrl(url: URL): string {
  const user = url.username ? `${url.username}${url.password ? ':***' : ''}@` : '';
  return `${url.protocol}//${user}${url.host}`;
}

/**
 * Parses a proxy URL (`proxy:3128` is read as `http://proxy:3128`, as Go does). Errors never
 * repeat the password: they show at most what follows the `@`.
 */
export function parseProxyUrl(raw: string, name: string): ProxyEndpoint {
  const text = raw.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    // the raw text may hold a password: show only what follows the last `@`
    const shown = text.slice(text.lastIndexOf('@') + 1);
    throw new TorusError(
      'TORUS_E_SETTINGS',
      `${name} is not a valid proxy URL (…${shown}); expected http://[user:password@]host:port`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      `${name} must be an http:// or https:// proxy URL, not ${redactProxyUrl(url)}`,
    );
  }
  const display = redactProxyUrl(url);
  let authorization: string | undefined;
  if (url.username) {
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }
  const bare = new URL(`${url.protocol}//${url.host}`);
  return authorization ? { url: bare, authorization, display } : { url: bare, display };
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A request could not get through the proxy; the message names the proxy (never its password). */
export class ProxyError extends TorusError {
  constructor(
    /** the proxy, redacted */
    readonly proxy: string,
    /** the proxy's HTTP status, when it answered */
    readonly proxyStatus: number | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('TORUS_E_UNAVAILABLE', message);
    this.name = 'ProxyError';
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

function causeChain(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    out.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

function proxyStatusMessage(proxy: string, status: number, target: URL): string {
  if (status === 407 || status === 401) {
    // tinyproxy answers a wrong password with 401 rather than 407
    return (
      `proxy ${proxy} refused the request to ${target.host} with HTTP ${status}: ` +
      'its credentials are missing or wrong; put them in the proxy URL (http://user:password@host:port)'
    );
  }
  if (status === 403) {
    return `proxy ${proxy} does not allow requests to ${target.host} (HTTP 403); ask its administrator, or add the host to NO_PROXY if it is reachable directly`;
  }
  return `proxy ${proxy} could not reach ${target.host} (HTTP ${status})`;
}

/** Turns undici's failures on the way through a proxy into a ProxyError; others are returned as they are. */
function proxyFailure(err: unknown, proxy: ProxyEndpoint, target: URL): unknown {
  for (const e of causeChain(err)) {
    const message = e instanceof Error ? e.message : '';
    const tunnel = /^Proxy response \((\d{3})\) !== 200 when HTTP Tunneling$/.exec(message);
    if (tunnel) {
      const status = Number(tunnel[1]);
      return new ProxyError(proxy.display, status, proxyStatusMessage(proxy.display, status, target), {
        cause: err,
      });
    }
    if (message === 'Proxy Authentication Required (407)') {
      return new ProxyError(proxy.display, 407, proxyStatusMessage(proxy.display, 407, target), {
        cause: err,
      });
    }
    const code = (e as { code?: unknown }).code;
    // every socket opened for a proxied request goes to the proxy
    if (
      code === 'ECONNREFUSED' ||
      code === 'ENOTFOUND' ||
      code === 'EAI_AGAIN' ||
      code === 'EHOSTUNREACH' ||
      code === 'ETIMEDOUT' ||
      code === 'UND_ERR_CONNECT_TIMEOUT'
    ) {
      return new ProxyError(
        proxy.display,
        undefined,
        `cannot reach proxy ${proxy.display} (${String(code)}) for a request to ${target.host}; check HTTP_PROXY / HTTPS_PROXY`,
        { cause: err },
      );
    }
  }
  return err;
}

// ---------------------------------------------------------------------------------------------
// Fetch

/** Sends each request directly or through the proxy its URL calls for. */
class ProxyRouter extends Dispatcher {
  constructor(
    private readonly route: (origin: URL) => Dispatcher,
    private readonly dispatchers: Dispatcher[],
  ) {
    super();
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandlers): boolean {
    return this.route(new URL(String(options.origin))).dispatch(options, handler);
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    const done = Promise.all(this.dispatchers.map((d) => d.close())).then(() => undefined);
    if (!callback) return done;
    done.then(callback, callback);
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const err = typeof a === 'function' ? null : (a ?? null);
    const callback = typeof a === 'function' ? a : b;
    const done = Promise.all(this.dispatchers.map((d) => d.destroy(err))).then(() => undefined);
    if (!callback) return done;
    done.then(callback, callback);
  }
}

export interface ProxiedFetchOptions extends ProxySettings {
  /** extra trusted CA certificates (PEM) for https:// targets, e.g. an internal registry's */
  ca?: string | string[];
}

export interface ProxiedFetch {
  (url: string | URL, init?: RequestInit): Promise<Response>;
  /** the proxy a request to `url` goes through (redacted), or undefined when it goes direct */
  proxyFor(url: string | URL): string | undefined;
  /** NO_PROXY entries that were not understood and are ignored */
  readonly ignoredNoProxyEntries: string[];
  /** closes idle connections; the fetch cannot be used afterwards */
  close(): Promise<void>;
}

/**
 * A fetch that honours the given proxy settings (build them with `proxySettingsFromEnv`). Failures
 * on the proxy's side (unreachable, 401/407 credentials, 403, a tunnel it could not open) reject
 * with a ProxyError naming the proxy; everything else behaves as fetch does.
 */
export function createProxiedFetch(options: ProxiedFetchOptions = {}): ProxiedFetch {
  const noProxy = parseNoProxy(options.noProxy);
  const http = options.httpProxy ? parseProxyUrl(options.httpProxy, 'HTTP_PROXY') : undefined;
  const https = options.httpsProxy ? parseProxyUrl(options.httpsProxy, 'HTTPS_PROXY') : undefined;
  const tls = options.ca ? { ca: options.ca } : undefined;
  const direct = new Agent(tls ? { connect: tls } : {});
  // one agent per proxy (HTTP_PROXY and HTTPS_PROXY are often the same)
  const agents = new Map<string, ProxyAgent>();
  const keyOf = (endpoint: ProxyEndpoint) => `${endpoint.url.href} ${endpoint.authorization ?? ''}`;
  for (const endpoint of [http, https]) {
    if (!endpoint || agents.has(keyOf(endpoint))) continue;
    agents.set(
      keyOf(endpoint),
      new ProxyAgent({
        uri: endpoint.url.href,
        ...(endpoint.authorization ? { token: endpoint.authorization } : {}),
        proxyTunnel: false,
        ...(tls ? { requestTls: tls } : {}),
      }),
    );
  }

  const proxyOf = (url: URL): ProxyEndpoint | undefined => {
    const endpoint = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
    if (!endpoint || matches(noProxy.rules, url)) return undefined;
    return endpoint;
  };
  const router = new ProxyRouter(
    (origin) => {
      const endpoint = proxyOf(origin);
      return endpoint ? agents.get(keyOf(endpoint))! : direct;
    },
    [direct, ...agents.values()],
  );

  const proxiedFetch = async (url: string | URL, init: RequestInit = {}): Promise<Response> => {
    const target = typeof url === 'string' ? new URL(url) : url;
    try {
      return await undiciFetch(target, { ...init, dispatcher: router });
    } catch (err) {
      // judged by the first URL: a redirect hop that went elsewhere is rare enough to report as fetch does
      const endpoint = proxyOf(target);
      throw endpoint ? proxyFailure(err, endpoint, target) : err;
    }
  };
  return Object.assign(proxiedFetch, {
    proxyFor: (url: string | URL) => proxyOf(typeof url === 'string' ? new URL(url) : url)?.display,
    ignoredNoProxyEntries: noProxy.ignored,
    close: () => router.close(),
  });
}

let fromEnv: ProxiedFetch | undefined;

/**
 * The ProxiedFetch for the proxy the process environment names (HTTP_PROXY, HTTPS_PROXY,
 * NO_PROXY), made on first use. Code that has the server's Settings builds its own with
 * `createProxiedFetch(proxySettingsFromEnv(process.env, settings))`, so torus.yaml wins.
 */
export function envProxiedFetch(): ProxiedFetch {
  fromEnv ??= createProxiedFetch(proxySettingsFromEnv());
  return fromEnv;
}

/** fetch through the proxy the process environment names (see envProxiedFetch). */
export function proxiedFetch(url: string | URL, init?: RequestInit): Promise<Response> {
  return envProxiedFetch()(url, init);
}
