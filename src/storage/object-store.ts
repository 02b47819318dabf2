// The ObjectStore interface (streams in and out, so large logs and artifacts never sit in memory)
// and its filesystem implementation. S3 comes later behind the same interface.
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

export type ObjectBody = Readable | Buffer | string;

export interface ObjectStore {
  /** Writes the whole body under key, replacing any object there; readers never see a partial object. */
  put(key: string, body: ObjectBody): Promise<{ size: number }>;
  /** A stream of the object, or null when there is none. */
  get(key: string): Promise<Readable | null>;
  head(key: string): Promise<ObjectInfo | null>;
  delete(key: string): Promise<void>;
  /** Objects whose key starts with prefix, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Present when objects are files on this machine (the filesystem store): a process on the same
   * machine (the server's own agents) then reads and writes large objects directly, with no copy
   * through the server.
   */
  readonly local?: LocalObjectFiles;
}

/** Objects as files, for processes on the store's machine. */
export interface LocalObjectFiles {
  /** the file an existing object is in (it may be deleted at any time, as any object) */
  file(key: string): string;
  /** a fresh file path for a new object's bytes, to be adopted once written */
  stage(): Promise<string>;
  /**
   * moves a file from stage() into place as key; throws when `file` is not a staged regular file
   * (a path outside the staging folder, a symbolic link, a name stage() does not make)
   */
  adopt(key: string, file: string): Promise<{ size: number }>;
  /** removes a file from stage() that will not be adopted; throws as adopt for any other path */
  discard(file: string): Promise<void>;
}

/** where FsObjectStore stages files written directly (no key the server makes starts with '.') */
const STAGING_DIR = '.staging';
/** staged files older than this were left by a writer that died, and are removed */
const STAGED_MAX_AGE_MS = 24 * 3600_000;
const READ_CHUNK_BYTES = 1024 * 1024;
const STAGED_NAME = /^[0-9a-f-]{36}\.partial$/;

/** Keys are '/'-separated; '..' segments, empty segments and absolute keys are refused. */
export function assertValidKey(key: string): void {
  const parts = key.split('/');
  if (
    key.length === 0 ||
    key.length > 1024 ||
    parts.some((p) => p === '' || p === '.' || p === '..') ||
    key.includes('\0')
  ) {
    throw new Error(`invalid object key ${JSON.stringify(key)}`);
  }
}

export class FsObjectStore implements ObjectStore {
  readonly local: LocalObjectFiles;
  /** when staged leftovers were last looked for */
  private swept = 0;

  constructor(readonly root: string) {
    const staging = join(root, STAGING_DIR);
    this.local = {
      file: (key) => this.path(key),
      stage: async () => {
        await mkdir(staging, { recursive: true });
        if (Date.now() - this.swept > STAGED_MAX_AGE_MS / 24) {
          this.swept = Date.now();
          await this.sweepStaged(staging);
        }
        return join(staging, `${randomUUID()}.partial`);
      },
      adopt: async (key, file) => {
        const target = this.path(key);
        const s = await staged(file);
        await mkdir(dirname(target), { recursive: true });
        await rename(file, target);
        return { size: s.size };
      },
      discard: async (file) => {
        // already gone is fine (a retried request removed it)
        await staged(file).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
        await rm(file, { force: true });
      },
    };
    /** a file stage() named, checked: never a path elsewhere, nor a link to one */
    const staged = async (file: string) => {
      if (dirname(file) !== staging || !STAGED_NAME.test(basename(file))) {
        throw new Error(`${file} is not a file staged in ${staging}`);
      }
      const s = await lstat(file);
      if (!s.isFile()) throw new Error(`${file} is not a regular file`);
      return s;
    };
  }

  /** removes staged files a writer left behind (it died before they were adopted) */
  private async sweepStaged(staging: string): Promise<void> {
    for (const name of await readdir(staging).catch(() => [] as string[])) {
      if (!STAGED_NAME.test(name)) continue;
      const file = join(staging, name);
      const s = await lstat(file).catch(() => null);
      if (s && Date.now() - s.mtimeMs > STAGED_MAX_AGE_MS) await rm(file, { force: true });
    }
  }

  private path(key: string): string {
    assertValidKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: ObjectBody): Promise<{ size: number }> {
    const target = this.path(key);
    const tmp = `${target}.${randomUUID()}.partial`;
    try {
      if (typeof body === 'string' || Buffer.isBuffer(body)) {
        // a body in memory is written in one call, its folder made only when missing (a loud
        // step's output is written in many objects to one folder)
        await writeFile(tmp, body).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
          await mkdir(dirname(target), { recursive: true });
          await writeFile(tmp, body);
        });
        await rename(tmp, target);
        return { size: Buffer.byteLength(body) };
      }
      // a stream is piped, once its folder is there (a failed open could lose what it read)
      await mkdir(dirname(target), { recursive: true });
      await pipeline(body, createWriteStream(tmp));
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return { size: (await stat(target)).size };
  }

  async get(key: string): Promise<Readable | null> {
    const p = this.path(key);
    try {
      await stat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    // 1 MiB reads: a large object (a cache archive) then costs a sixteenth of the reads and writes
    return createReadStream(p, { highWaterMark: READ_CHUNK_BYTES });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const s = await stat(this.path(key));
      return s.isFile() ? { key, size: s.size, lastModified: s.mtime } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const found: ObjectInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && !e.name.endsWith('.partial')) {
          const key = relative(this.root, full).split(sep).join('/');
          if (key.startsWith(prefix)) {
            const s = await stat(full);
            found.push({ key, size: s.size, lastModified: s.mtime });
          }
        }
      }
    };
    await walk(this.root);
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* found;
  }
}

export async function readObjectText(store: ObjectStore, key: string): Promise<string | null> {
  const s = await store.get(key);
  if (!s) return null;
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks).toString('utf8');
}
