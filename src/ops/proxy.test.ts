import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../test/harness/net.js';
import { REQUIRE_ALL, hasCommand } from '../../test/harness/parts.js';
import { requireTinyproxy, startTinyproxy, type TestTinyproxy } from '../../test/harness/tinyproxy.js';
import {
  ProxyError,
  createProxiedFetch,
  parseNoProxy,
  parseProxyUrl,
  proxySettingsFromEnv,
  redactProxyUrl,
  shouldBypassProxy,
} from './proxy.js';

describe('shouldBypassProxy', () => {
  const bypass = (url: string, noProxy: string | undefined) => shouldBypassProxy(url, noProxy);

  it('bypasses nothing without NO_PROXY, and everything with *', () => {
    expect(bypass('https://circleci.com/graphql-unstable', undefined)).toBe(false);
    expect(bypass('https://circleci.com/graphql-unstable', '')).toBe(false);
    expect(bypass('https://circleci.com/', '*')).toBe(true);
    expect(bypass('http://10.1.2.3:8080/', ' * ')).toBe(true);
  });

  it('matches a host name and its subdomains, not look-alikes', () => {
    const list = 'ghe.example.com';
    expect(bypass('https://ghe.example.com/api/v3', list)).toBe(true);
    expect(bypass('https://api.ghe.example.com/', list)).toBe(true);
    expect(bypass('https://example.com/', list)).toBe(false);
    expect(bypass('https://notghe.example.com/', list)).toBe(false);
    expect(bypass('https://ghe.example.com.evil.net/', list)).toBe(false);
  });

  it('reads .example.com, *.example.com and example.com alike: the domain and every subdomain', () => {
    for (const entry of ['.example.com', '*.example.com', 'example.com']) {
      expect(bypass('https://example.com/', entry)).toBe(true);
      expect(bypass('https://a.example.com/', entry)).toBe(true);
      expect(bypass('https://a.b.example.com:8443/', entry)).toBe(true);
      expect(bypass('https://badexample.com/', entry)).toBe(false);
      expect(bypass('https://example.com.au/', entry)).toBe(false);
    }
  });

  it('ignores case and a trailing dot on either side', () => {
    expect(bypass('https://API.Example.COM/', 'example.com')).toBe(true);
    expect(bypass('https://api.example.com/', 'EXAMPLE.com')).toBe(true);
    expect(bypass('https://api.example.com./', 'example.com')).toBe(true);
    expect(bypass('https://api.example.com/', 'example.com.')).toBe(true);
  });

  it('matches internationalised names in their ASCII form', () => {
    expect(bypass('https://bücher.de/', 'bücher.de')).toBe(true);
    expect(bypass('https://xn--bcher-kva.de/', 'bücher.de')).toBe(true);
    expect(bypass('https://www.bücher.de/', 'xn--bcher-kva.de')).toBe(true);
  });

  it('matches IPv4 addresses and CIDR ranges, for URLs written with an address', () => {
    expect(bypass('http://10.0.1.2:8080/', '10.0.1.2')).toBe(true);
    expect(bypass('http://10.0.1.3/', '10.0.1.2')).toBe(false);
    expect(bypass('http://10.0.0.255/', '10.0.0.0/24')).toBe(true);
    expect(bypass('http://10.0.1.0/', '10.0.0.0/24')).toBe(false);
    expect(bypass('https://192.168.7.9/', '0.0.0.0/0')).toBe(true);
    // names are not resolved
    expect(bypass('http://localhost/', '127.0.0.1')).toBe(false);
    expect(bypass('http://10.0.0.1/', 'example.com')).toBe(false);
  });

  it('matches IPv6 addresses and ranges, bracketed or not', () => {
    expect(bypass('http://[::1]:3000/', '::1')).toBe(true);
    expect(bypass('http://[::1]:3000/', '[::1]')).toBe(true);
    expect(bypass('http://[0:0:0:0:0:0:0:1]/', '::1')).toBe(true);
    expect(bypass('http://[::2]/', '::1')).toBe(false);
    expect(bypass('https://[fd12:3456::1]/', 'fd00::/8')).toBe(true);
    expect(bypass('https://[fd12:3456::1]/', '[fd00::]/8')).toBe(true);
    expect(bypass('https://[fe80::1]/', 'fd00::/8')).toBe(false);
    // an IPv4-mapped IPv6 address is the IPv4 address
    expect(bypass('http://[::ffff:10.1.2.3]/', '10.0.0.0/8')).toBe(true);
  });

  it('limits an entry with a port to that port (the scheme’s default when the URL has none)', () => {
    expect(bypass('http://example.com:8080/', 'example.com:8080')).toBe(true);
    expect(bypass('http://api.example.com:8080/', '.example.com:8080')).toBe(true);
    expect(bypass('http://example.com/', 'example.com:8080')).toBe(false);
    expect(bypass('https://example.com/', 'example.com:443')).toBe(true);
    expect(bypass('http://example.com/', 'example.com:443')).toBe(false);
    expect(bypass('http://10.0.0.1:8080/', '10.0.0.1:8080')).toBe(true);
    expect(bypass('http://10.0.0.1:8081/', '10.0.0.1:8080')).toBe(false);
    expect(bypass('http://[::1]:8080/', '[::1]:8080')).toBe(true);
    expect(bypass('http://[::1]:8081/', '[::1]:8080')).toBe(false);
  });

  it('reads a list separated by commas and spaces, as the operations guide writes it', () => {
    const list = 'ghe.example.com,10.0.0.0/24, server.example.com  storage.internal';
    expect(bypass('https://ghe.example.com/', list)).toBe(true);
    expect(bypass('http://10.0.0.7/', list)).toBe(true);
    expect(bypass('https://server.example.com/', list)).toBe(true);
    expect(bypass('https://storage.internal/', list)).toBe(true);
    expect(bypass('https://circleci.com/', list)).toBe(false);
  });

  it('leaves out entries it does not understand, and says which', () => {
    const list = parseNoProxy('example.com, http://x.org, 10.0.0.0/99, host:99999, ::1/200, a b');
    expect(list.ignored).toEqual(['http://x.org', '10.0.0.0/99', 'host:99999', '::1/200']);
    expect(shouldBypassProxy('https://example.com/', list)).toBe(true);
    expect(shouldBypassProxy('https://a/', list)).toBe(true);
    expect(shouldBypassProxy('https://x.org/', list)).toBe(false);
  });
});

describe('proxy settings', () => {
  it('takes explicit settings first, then HTTP_PROXY, then http_proxy', () => {
    const env = {
      HTTP_PROXY: 'http://upper:3128',
      http_proxy: 'http://lower:3128',
      https_proxy: 'http://lower-s:3128',
      no_proxy: 'lower.example',
      NO_PROXY: '',
    };
    expect(proxySettingsFromEnv(env)).toEqual({
      httpProxy: 'http://upper:3128',
      httpsProxy: 'http://lower-s:3128',
      noProxy: 'lower.example',
    });
    expect(
      proxySettingsFromEnv(env, { httpsProxy: 'http://explicit:8080', noProxy: 'explicit.example' }),
    ).toEqual({
      httpProxy: 'http://upper:3128',
      httpsProxy: 'http://explicit:8080',
      noProxy: 'explicit.example',
    });
    expect(proxySettingsFromEnv({})).toEqual({
      httpProxy: undefined,
      httpsProxy: undefined,
      noProxy: undefined,
    });
  });

  it('reads a proxy URL: scheme optional, credentials percent-decoded into Basic', () => {
    const plain = parseProxyUrl('proxy.example.com:3128', 'HTTP_PROXY');
    expect(plain.url.href).toBe('http://proxy.example.com:3128/');
    expect(plain.authorization).toBeUndefined();
    const withAuth = parseProxyUrl('http://us%40er:p%3Ass@proxy:3128', 'HTTP_PROXY');
    expect(withAuth.url.href).toBe('http://proxy:3128/');
    expect(withAuth.authorization).toBe(`Basic ${Buffer.from('us@er:p:ss').toString('base64')}`);
    expect(withAuth.display).toBe('http://us%40er:***@proxy:3128');
    expect(redactProxyUrl(new URL('https://u@p:1'))).toBe('https://u@p:1');
  });

  it('refuses other schemes and malformed URLs without repeating the password', () => {
    const refused = (raw: string) => {
      try {
        parseProxyUrl(raw, 'HTTPS_PROXY');
      } catch (err) {
        return err as Error & { code: string };
      }
      throw new Error(`${raw} was accepted`);
    };
    const socks = refused('socks5://user:hunter2@proxy:1080');
    expect(socks.code).toBe('TORUS_E_SETTINGS');
    expect(socks.message).toContain('HTTPS_PROXY');
    expect(socks.message).toContain('socks5://user:***@proxy:1080');
    expect(socks.message).not.toContain('hunter2');
    const malformed = refused('http://user:hunter2@[proxy:3128');
    expect(malformed.message).toContain('HTTPS_PROXY is not a valid proxy URL');
    expect(malformed.message).not.toContain('hunter2');
  });

  it('sends https:// only through HTTPS_PROXY, and nothing NO_PROXY names through either', async () => {
    const f = createProxiedFetch({ httpProxy: 'http://u:pw@proxy:3128', noProxy: '.internal' });
    expect(f.proxyFor('http://circleci.com/')).toBe('http://u:***@proxy:3128');
    expect(f.proxyFor('https://circleci.com/')).toBeUndefined();
    expect(f.proxyFor('http://vault.internal/')).toBeUndefined();
    await f.close();
    const both = createProxiedFetch({ httpsProxy: 'https://proxy:3129', noProxy: 'bad:port:x' });
    expect(both.proxyFor('https://circleci.com/')).toBe('https://proxy:3129');
    expect(both.proxyFor('http://circleci.com/')).toBeUndefined();
    expect(both.ignoredNoProxyEntries).toEqual(['bad:port:x']);
    await both.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Through a real tinyproxy

interface Seen {
  method: string;
  url: string;
  via: string | undefined;
}

function recordingHandler(seen: Seen[], name: string) {
  return (req: IncomingMessage, res: import('node:http').ServerResponse) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', via: req.headers.via });
    if (req.url === '/redirect') {
      res.writeHead(302, { location: String(req.headers['x-redirect-to']) }).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello from ${name}`);
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A self-signed certificate for 127.0.0.1, made by the host's openssl. */
function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'torus-cert-'));
  try {
    const r = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    return {
      key: readFileSync(join(dir, 'key.pem'), 'utf8'),
      cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function hasOpenssl(): boolean {
  if (hasCommand('openssl')) return true;
  const line = 'SKIP https-through-proxy tests: needs openssl, which is not installed here';
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}

const hasTinyproxy = requireTinyproxy('proxy tests against a real tinyproxy');

describe.skipIf(!hasTinyproxy)('through a real tinyproxy with BasicAuth', () => {
  let proxy: TestTinyproxy;
  const seen: Seen[] = [];
  const seenTls: Seen[] = [];
  let plain: Server;
  let other: Server;
  let tls: Server;
  let plainPort: number;
  let otherPort: number;
  let tlsPort: number;
  let cert: { key: string; cert: string } | undefined;

  beforeAll(async () => {
    proxy = await startTinyproxy({ user: 'torus', password: 'sw0rdfish-42' });
    plain = createHttpServer(recordingHandler(seen, 'plain'));
    plainPort = await listen(plain);
    other = createHttpServer(recordingHandler(seen, 'other'));
    otherPort = await listen(other);
    if (hasOpenssl()) {
      cert = selfSignedCert();
      tls = createHttpsServer(cert, recordingHandler(seenTls, 'tls'));
      tlsPort = await listen(tls);
    }
  });

  afterAll(async () => {
    await proxy?.stop();
    for (const s of [plain, other, tls]) {
      if (s) await new Promise((r) => s.close(r));
    }
  });

  const lastSeen = (list: Seen[]) => list[list.length - 1];

  it('forwards an http:// request with the credentials, as an absolute-URI request', async () => {
    const f = createProxiedFetch({ httpProxy: proxy.url() });
    try {
      const res = await f(`http://127.0.0.1:${plainPort}/hello?x=1`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('hello from plain');
      // the target saw the request come through tinyproxy, and tinyproxy logged it
      expect(lastSeen(seen)).toMatchObject({ url: '/hello?x=1' });
      expect(lastSeen(seen)?.via).toMatch(/tinyproxy/);
      expect(proxy.requests()).toContain(`GET http://127.0.0.1:${plainPort}/hello?x=1 HTTP/1.1`);
    } finally {
      await f.close();
    }
  });

  it('refuses clearly when the credentials are missing (407), naming the proxy', async () => {
    const f = createProxiedFetch({ httpProxy: proxy.url(null) });
    try {
      const before = seen.length;
      const err = await f(`http://127.0.0.1:${plainPort}/no-auth`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProxyError);
      expect((err as ProxyError).proxyStatus).toBe(407);
      expect((err as ProxyError).message).toContain(`proxy http://127.0.0.1:${proxy.port} refused`);
      expect((err as ProxyError).message).toContain('credentials');
      expect(seen.length).toBe(before);
    } finally {
      await f.close();
    }
  });

  it('cannot reach a proxy that is not there, and says which', async () => {
    const port = await freePort();
    const f = createProxiedFetch({ httpProxy: `http://torus:sw0rdfish-42@127.0.0.1:${port}` });
    try {
      const err = await f(`http://127.0.0.1:${plainPort}/`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProxyError);
      expect((err as ProxyError).message).toContain(`cannot reach proxy http://torus:***@127.0.0.1:${port}`);
      expect(inspect(err, { depth: 10 })).not.toContain('sw0rdfish');
    } finally {
      await f.close();
    }
  });

  it('bypasses the proxy for a NO_PROXY host (by address, by CIDR, by host:port)', async () => {
    for (const noProxy of ['127.0.0.1', '127.0.0.0/8', `localhost,127.0.0.1:${plainPort}`]) {
      const f = createProxiedFetch({ httpProxy: proxy.url(null), noProxy });
      try {
        const logged = proxy.requests().length;
        const res = await f(`http://127.0.0.1:${plainPort}/direct`);
        expect(res.status).toBe(200);
        expect(lastSeen(seen)).toMatchObject({ url: '/direct', via: undefined });
        expect(proxy.requests().length).toBe(logged);
      } finally {
        await f.close();
      }
    }
  });

  it('chooses the proxy per request: a redirect to a NO_PROXY host goes direct', async () => {
    const f = createProxiedFetch({ httpProxy: proxy.url(), noProxy: `127.0.0.1:${otherPort}` });
    try {
      const res = await f(`http://127.0.0.1:${plainPort}/redirect`, {
        headers: { 'x-redirect-to': `http://127.0.0.1:${otherPort}/landed` },
      });
      expect(await res.text()).toBe('hello from other');
      const [hop1, hop2] = seen.slice(-2);
      expect(hop1).toMatchObject({ url: '/redirect' });
      expect(hop1?.via).toMatch(/tinyproxy/);
      expect(hop2).toMatchObject({ url: '/landed', via: undefined });
    } finally {
      await f.close();
    }
  });

  describe('https:// through a CONNECT tunnel', () => {
    it('tunnels with the credentials; the proxy sees only CONNECT', async ({ skip }) => {
      if (!cert) return skip();
      const f = createProxiedFetch({ httpsProxy: proxy.url(), ca: cert.cert });
      try {
        const res = await f(`https://127.0.0.1:${tlsPort}/secret-path`);
        expect(await res.text()).toBe('hello from tls');
        expect(lastSeen(seenTls)).toMatchObject({ url: '/secret-path', via: undefined });
        const requests = proxy.requests();
        expect(requests).toContain(`CONNECT 127.0.0.1:${tlsPort} HTTP/1.1`);
        expect(requests.some((r) => r.includes('secret-path'))).toBe(false);
      } finally {
        await f.close();
      }
    });

    it('fails clearly with a wrong password (tinyproxy: 401) and never prints a password', async ({
      skip,
    }) => {
      if (!cert) return skip();
      const f = createProxiedFetch({
        httpsProxy: proxy.url({ user: 'torus', password: 'wrong-pw-77' }),
        ca: cert.cert,
      });
      try {
        const before = seenTls.length;
        const err = await f(`https://127.0.0.1:${tlsPort}/`).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProxyError);
        const e = err as ProxyError;
        expect(e.proxyStatus).toBe(401);
        expect(e.code).toBe('TORUS_E_UNAVAILABLE');
        expect(e.message).toContain(`proxy http://torus:***@127.0.0.1:${proxy.port} refused`);
        const everything = `${inspect(e, { depth: 10 })} ${JSON.stringify(e)} ${String(e)}`;
        expect(everything).not.toContain('wrong-pw-77');
        expect(everything).not.toContain('sw0rdfish-42');
        expect(seenTls.length).toBe(before);
      } finally {
        await f.close();
      }
    });

    it('fails clearly without credentials (407)', async ({ skip }) => {
      if (!cert) return skip();
      const f = createProxiedFetch({ httpsProxy: proxy.url(null), ca: cert.cert });
      try {
        const err = await f(`https://127.0.0.1:${tlsPort}/`).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProxyError);
        expect((err as ProxyError).proxyStatus).toBe(407);
      } finally {
        await f.close();
      }
    });

    it('reports a target the proxy cannot reach as the proxy’s answer', async ({ skip }) => {
      if (!cert) return skip();
      const closed = await freePort();
      const f = createProxiedFetch({ httpsProxy: proxy.url(), ca: cert.cert });
      try {
        const err = await f(`https://127.0.0.1:${closed}/`).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProxyError);
        expect((err as ProxyError).message).toMatch(
          new RegExp(`could not reach 127\\.0\\.0\\.1:${closed} \\(HTTP 5\\d\\d\\)`),
        );
      } finally {
        await f.close();
      }
    });
  });
});
