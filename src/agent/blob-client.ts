// The agent's HTTP client for the server's blob routes (src/api/agent-blobs.ts): artifacts, test
// results and timings, caches and workspace layers of one task. Bodies stream both ways (uploads
// and downloads through node:http); nothing is buffered whole. Every request carries the
// task's lease; a 409 that is not "cache key exists" means the lease is lost: `onLeaseLost` is
// called and the call throws. Requests without a streamed body are retried on network errors and
// 5xx (a server restart).
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { AGENT_API_PREFIX } from '../scheduler/protocol.js';
import type { TestCase } from './junit.js';
import type { BlobClient, BlobEncoding } from './steps/context.js';

export interface BlobClientOptions {
  serverUrl: string;
  token: string;
  taskId: string;
  leaseId: string;
  /** aborts every request in flight (the task was canceled or its lease lost) */
  signal?: AbortSignal;
  /** the server said the lease is no longer this task's (HTTP 409) */
  onLeaseLost?: () => void;
  /**
   * the agent runs on the server's machine: cache archives are read from and written to the
   * object store's files (when the store keeps files), with no copy through the server
   */
  direct?: boolean;
}

/** thrown by a blob call after the server answered 409 for the lease */
export class BlobLeaseLost extends Error {
  constructor() {
    super('the task lease was lost');
    this.name = 'BlobLeaseLost';
  }
}

/** how long a JSON request may take; blob transfers have no overall limit (they can be large) */
const JSON_TIMEOUT_MS = 30_000;
const CACHE_EXISTS = 'cache key exists';
const RETRY_ATTEMPTS = 6;
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 3_000;

async function messageOf(res: Response): Promise<string> {
  const text = await res.text().catch((err: unknown) => `(unreadable body: ${String(err)})`);
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') return body.message;
  } catch {
    // not JSON: the raw text says what happened
  }
  return text.slice(0, 500);
}

/**
 * Sends a streamed body with node:http rather than fetch: fetch passes every chunk through a web
 * stream and copies it, which costs the agent about twice the CPU on a cache upload (bench/cache.ts).
 * The reply is read whole (the blob routes answer small JSON) and handed back as a Response.
 */
function streamUpload(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Readable,
  signal?: AbortSignal,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = send(url, { method, headers, signal }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('error', reject);
      res.on('end', () => {
        const responseHeaders = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (typeof v === 'string') responseHeaders.set(k, v);
        }
        const status = res.statusCode ?? 500;
        const empty = status === 204 || status === 304;
        resolve(new Response(empty ? null : Buffer.concat(parts), { status, headers: responseHeaders }));
        // answered before the whole body was sent (a refusal): the producer is not waited for
        if (!body.readableEnded) body.destroy();
      });
    });
    req.on('error', (err) => {
      body.unpipe(req);
      reject(err);
    });
    body.on('error', (err: Error) => req.destroy(err));
    body.pipe(req);
  });
}

/**
 * A GET whose body streams back through node:http rather than fetch (whose web stream copies every
 * chunk: a third more of the agent's CPU on a cache restore, bench/cache.ts). Resolves once the
 * status and headers are in; the caller reads or discards the body.
 */
function streamDownload(
  url: string,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = get(url, { method: 'GET', headers, signal }, resolve);
    req.on('error', reject);
    req.end();
  });
}

/** the message of a refused request's body (JSON {message} or text) */
async function messageOfStream(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of res) parts.push(c as Buffer);
  return messageOf(new Response(Buffer.concat(parts)));
}

export class HttpBlobClient implements BlobClient {
  private readonly base: string;

  constructor(private readonly opts: BlobClientOptions) {
    this.base = `${opts.serverUrl.replace(/\/+$/, '')}${AGENT_API_PREFIX}/tasks/${encodeURIComponent(opts.taskId)}`;
  }

  private signal(timeoutMs?: number): AbortSignal | undefined {
    const signals = [
      ...(this.opts.signal ? [this.opts.signal] : []),
      ...(timeoutMs ? [AbortSignal.timeout(timeoutMs)] : []),
    ];
    return signals.length === 0 ? undefined : AbortSignal.any(signals);
  }

  private async request(
    method: string,
    suffix: string,
    init: { json?: unknown; body?: Readable; file?: string; encoding?: BlobEncoding; allow?: number[] } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.opts.token}`,
      'x-torus-lease': this.opts.leaseId,
    };
    let body: unknown;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    } else if (init.body) {
      headers['content-type'] = 'application/octet-stream';
      body = init.body;
    }
    if (init.encoding) headers['x-torus-encoding'] = init.encoding;
    if (init.file) headers['x-torus-file'] = init.file;
    const streaming = init.body !== undefined;
    // requests without a streamed body are retried through a server restart (a body can be sent once)
    let delay = RETRY_MIN_MS;
    let res: Response;
    for (let attempt = 1; ; attempt++) {
      const retryable = !streaming && attempt < RETRY_ATTEMPTS && !this.opts.signal?.aborted;
      try {
        res = streaming
          ? await streamUpload(`${this.base}${suffix}`, method, headers, init.body!, this.signal())
          : await fetch(`${this.base}${suffix}`, {
              method,
              headers,
              body: body as RequestInit['body'],
              signal: this.signal(method === 'GET' ? undefined : JSON_TIMEOUT_MS),
            } as RequestInit);
      } catch (err) {
        // the request's error hides the cause of a failed upload (a tar that could not be read) behind "fetch failed"
        const upload = init.body && (init.body as Readable & { errored?: Error | null }).errored;
        if (upload) throw upload;
        if (retryable) {
          await sleep(delay);
          delay = Math.min(delay * 2, RETRY_MAX_MS);
          continue;
        }
        const cause = (err as Error & { cause?: Error }).cause;
        throw new Error(
          `${method} ${suffix.split('?')[0]} failed: ${(err as Error).message}${cause ? ` (${cause.message})` : ''}`,
        );
      }
      if (retryable && (res.status >= 500 || res.status === 429 || res.status === 408)) {
        await res.body?.cancel();
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        continue;
      }
      break;
    }
    // an allowed status (404 "no such cache", 409 "cache key exists") is the caller's to read
    if (res.ok || init.allow?.includes(res.status)) return res;
    const message = await messageOf(res);
    if (res.status === 409) {
      this.opts.onLeaseLost?.();
      throw new BlobLeaseLost();
    }
    throw new Error(`${method} ${suffix.split('?')[0]} answered HTTP ${res.status}: ${message}`);
  }

  async putArtifact(path: string, body: Readable): Promise<{ path: string; size: number }> {
    const res = await this.request('PUT', `/artifacts?path=${encodeURIComponent(path)}`, { body });
    return (await res.json()) as { path: string; size: number };
  }

  async putTestResults(tests: TestCase[]): Promise<{ count: number }> {
    const res = await this.request('PUT', '/test-results', { json: { tests } });
    return (await res.json()) as { count: number };
  }

  async testTimings(): Promise<{ source: 'branch' | 'default-branch' | 'none'; tests: TestCase[] }> {
    const res = await this.request('GET', '/test-timings');
    return (await res.json()) as { source: 'branch' | 'default-branch' | 'none'; tests: TestCase[] };
  }

  async lookupCache(
    keys: string[],
  ): Promise<{ key: string; size: number; encoding: BlobEncoding; file?: string } | null> {
    const res = await this.request('POST', '/caches/lookup', {
      json: { keys, ...(this.opts.direct ? { file: true } : {}) },
      allow: [404],
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    return (await res.json()) as { key: string; size: number; encoding: BlobEncoding; file?: string };
  }

  async stageCache(): Promise<string | null> {
    if (!this.opts.direct) return null;
    const res = await this.request('POST', '/caches/stage', { allow: [404] });
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    return ((await res.json()) as { file: string }).file;
  }

  /**
   * A blob's bytes (null on 404), retried as request() retries until the reply starts; the body
   * is not retried (it is streamed on as it arrives).
   */
  private async download(suffix: string): Promise<Readable | null> {
    const headers = { authorization: `Bearer ${this.opts.token}`, 'x-torus-lease': this.opts.leaseId };
    let delay = RETRY_MIN_MS;
    for (let attempt = 1; ; attempt++) {
      const retryable = attempt < RETRY_ATTEMPTS && !this.opts.signal?.aborted;
      let res: IncomingMessage;
      try {
        res = await streamDownload(`${this.base}${suffix}`, headers, this.opts.signal);
      } catch (err) {
        if (!retryable) throw new Error(`GET ${suffix.split('?')[0]} failed: ${(err as Error).message}`);
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        continue;
      }
      const status = res.statusCode ?? 500;
      if (status === 200) return res;
      if (retryable && (status >= 500 || status === 429 || status === 408)) {
        res.resume();
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        continue;
      }
      const message = await messageOfStream(res);
      if (status === 404) return null;
      if (status === 409) {
        this.opts.onLeaseLost?.();
        throw new BlobLeaseLost();
      }
      throw new Error(`GET ${suffix.split('?')[0]} answered HTTP ${status}: ${message}`);
    }
  }

  getCache(key: string): Promise<Readable | null> {
    return this.download(`/caches/blob?key=${encodeURIComponent(key)}`);
  }

  async putCache(key: string, body: Readable | { file: string }, encoding: BlobEncoding): Promise<boolean> {
    const res = await this.request('PUT', `/caches/blob?key=${encodeURIComponent(key)}`, {
      ...('file' in body ? { file: body.file } : { body }),
      encoding,
      allow: [409],
    });
    if (res.status === 409) {
      const message = await messageOf(res);
      if (message.includes(CACHE_EXISTS)) return false;
      this.opts.onLeaseLost?.();
      throw new BlobLeaseLost();
    }
    await res.body?.cancel();
    return true;
  }

  async putWorkspaceLayer(body: Readable, encoding: BlobEncoding): Promise<{ layerId: string }> {
    const res = await this.request('PUT', '/workspace', { body, encoding });
    const out = (await res.json()) as { layerId: string };
    return { layerId: out.layerId };
  }

  async workspaceLayers(): Promise<
    Array<{ id: string; jobName: string; size: number; encoding: BlobEncoding }>
  > {
    const res = await this.request('GET', '/workspace/layers');
    const body = (await res.json()) as {
      layers: Array<{ id: string; jobName: string; size: number; encoding: BlobEncoding }>;
    };
    return body.layers;
  }

  async getWorkspaceLayer(id: string): Promise<Readable> {
    const layer = await this.download(`/workspace/layers/${encodeURIComponent(id)}`);
    if (!layer) throw new Error(`GET /workspace/layers/${id} answered HTTP 404: the layer is gone`);
    return layer;
  }
}

export function createBlobClient(opts: BlobClientOptions): HttpBlobClient {
  return new HttpBlobClient(opts);
}
