// A small HTTP client for CLI commands that talk to a Torus server (CircleCI's API v2 shapes).
import { TorusError } from '../ops/errors.js';

export interface ClientOptions {
  server: string;
  token?: string;
}

export class ApiClient {
  readonly base: string;
  constructor(private readonly opts: ClientOptions) {
    this.base = opts.server.replace(/\/+$/, '');
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.opts.token) headers['circle-token'] = this.opts.token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `cannot reach the Torus server at ${this.base}: ${(err as Error).cause ? String((err as Error).cause) : (err as Error).message}; ` +
          'is it running? (set --server or TORUS_SERVER)',
      );
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      // a non-JSON body (a proxy's error page, say): reported below with its status
    }
    if (!res.ok) {
      const message =
        (json as { message?: string } | undefined)?.message ?? (text.slice(0, 200) || res.statusText);
      const code =
        res.status === 401
          ? 'TORUS_E_UNAUTHORIZED'
          : res.status === 404
            ? 'TORUS_E_NOT_FOUND'
            : 'TORUS_E_BAD_REQUEST';
      throw new TorusError(code, `${method} ${path}: ${res.status} ${message}`);
    }
    return json as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {});
  }
}

/** Project slugs go into paths with their slashes kept: CircleCI's own clients do the same. */
export function slugPath(slug: string): string {
  return slug
    .split('/')
    .map((p) => encodeURIComponent(p))
    .join('/');
}
