// Streaming archive plumbing shared by the cache and workspace steps: compression on the agent host
// (the `zstd` binary where present, else gzip through node:zlib), concatenating tar streams under new
// names, unpacking a tar into one or more directories of the environment (both renaming headers in
// place, tar-rename.ts), and listing which paths (or glob matches) exist inside the environment.
// Archives are never held in memory whole.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rm, stat } from 'node:fs/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { PassThrough, Readable, Transform, type Writable } from 'node:stream';
import tar from 'tar-stream';
import type { Environment, HomeArchive } from '../executor.js';
import type { BlobEncoding } from './context.js';
import { Batcher, END_OF_ARCHIVE, renamedEntry, TarReader } from './tar-rename.js';

let zstdPresent: boolean | undefined;

/** whether the agent host has the `zstd` binary (checked once) */
export function hasZstd(): boolean {
  if (zstdPresent === undefined) {
    const r = spawnSync('zstd', ['--version'], { stdio: 'ignore' });
    zstdPresent = r.status === 0;
  }
  return zstdPresent;
}

/** the encoding new archives get on this agent */
export function archiveEncoding(): BlobEncoding {
  return hasZstd() ? 'zstd' : 'gzip';
}

/**
 * The stdout of a child process (zstd) as a stream: its failure (or `upstream`'s, the process
 * feeding it) errors the stream, which ends only once both have finished cleanly. Closing the
 * stream early kills the process.
 */
function outputOf(child: ChildProcess, name: string, upstream?: Promise<void>): Readable {
  const out = new PassThrough();
  const exited = exitOf(child, name);
  child.stdout!.pipe(out, { end: false });
  Promise.all([exited, upstream]).then(
    () => out.end(),
    (err: Error) => {
      if (!out.destroyed) out.destroy(err);
    },
  );
  out.on('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return out;
}

/** resolves when the child exits with 0; rejects with its stderr's last lines otherwise */
function exitOf(child: ChildProcess, name: string): Promise<void> {
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-2_000);
  });
  return new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `${name} failed (${code === null ? `signal ${signal}` : `exit ${code}`}): ${stderr.trim()}`,
          ),
        );
    });
  });
}

/** pipes `input` through a child process (zstd); its failure (or the input's) errors the output */
function throughProcess(input: NodeJS.ReadableStream, argv: string[]): Readable {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const stdin = child.stdin as Writable;
  stdin.on('error', () => undefined); // the process died: its exit says why
  const out = outputOf(child, argv[0]!);
  input.on('error', (err: Error) => {
    out.destroy(err);
    child.kill('SIGKILL');
  });
  input.pipe(stdin);
  return out;
}

/**
 * zstd's level for new archives, run on every core (-T0). Level 1 rather than zstd's default 3: on
 * bench/cache.ts's tree it takes well under half the CPU for an archive about 10% larger, and the
 * compressor shares the agent's cores with tar and the agent itself.
 */
export const ZSTD_LEVEL = 1;

const ZSTD_COMPRESS = ['zstd', '-q', '-c', '-T0', `-${ZSTD_LEVEL}`];

/**
 * The zstd archive of `paths` in the cache layout, from the environment's own tar: tar writes into
 * zstd's stdin directly, and only the compressed bytes come through the agent. The stream errors
 * when tar or zstd fails.
 */
export function compressedHomeArchive(archive: HomeArchive, paths: string[], signal?: AbortSignal): Readable {
  const child = spawn(ZSTD_COMPRESS[0]!, ZSTD_COMPRESS.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => undefined); // tar's end of it: a failure shows in tar's exit
  return outputOf(child, 'zstd', archive.create(paths, child.stdin, signal));
}

/**
 * Writes the zstd archive of `paths` in the cache layout into `file` (which must not exist) with
 * the environment's own tar and zstd joined by a pipe: no byte passes through the agent. Resolves
 * with the archive's size; rejects with what failed (tar, zstd), the partial file removed.
 */
export async function writeHomeArchive(
  archive: HomeArchive,
  paths: string[],
  file: string,
  signal?: AbortSignal,
): Promise<number> {
  const child = spawn(ZSTD_COMPRESS[0]!, [...ZSTD_COMPRESS.slice(1).filter((a) => a !== '-c'), '-o', file], {
    stdio: ['pipe', 'ignore', 'pipe'],
    signal,
  });
  child.stdin.on('error', () => undefined); // tar's end of it: a failure shows in tar's exit
  const [packed, compressed] = await Promise.allSettled([
    archive.create(paths, child.stdin, signal),
    exitOf(child, 'zstd'),
  ]);
  // zstd failing (it could not write the file) breaks tar's pipe: zstd's message is the cause
  const failure =
    compressed.status === 'rejected'
      ? compressed.reason
      : packed.status === 'rejected'
        ? packed.reason
        : null;
  if (failure) {
    await rm(file, { force: true });
    throw failure as Error;
  }
  return (await stat(file)).size;
}

/**
 * Unpacks a zstd archive in the cache layout (a stream, or a file zstd reads itself) with the
 * environment's own tar, zstd writing into tar's stdin directly. Rejects with what failed (the
 * download, zstd on a corrupt archive, tar).
 */
export async function extractHomeArchive(
  archive: HomeArchive,
  input: Readable | { file: string },
  signal?: AbortSignal,
): Promise<void> {
  const tar = await archive.extract(signal);
  const fromFile = 'file' in input;
  const child = spawn('zstd', ['-d', '-q', '-c', ...(fromFile ? ['--', input.file] : [])], {
    stdio: [fromFile ? 'ignore' : 'pipe', tar.input, 'pipe'],
    signal,
  });
  tar.input.destroy(); // zstd holds its own copy: tar sees the end when zstd exits
  let inputError: Error | null = null;
  if (!fromFile) {
    child.stdin!.on('error', () => undefined); // zstd died: its exit says why
    input.on('error', (err: Error) => {
      inputError = err;
      child.kill('SIGKILL');
    });
    input.pipe(child.stdin!);
  }
  const [unpacked, extracted] = await Promise.allSettled([exitOf(child, 'zstd'), tar.done]);
  if (inputError) throw inputError;
  if (unpacked.status === 'rejected' && extracted.status === 'rejected') {
    throw new Error(`${(unpacked.reason as Error).message}; tar: ${(extracted.reason as Error).message}`);
  }
  if (unpacked.status === 'rejected') throw unpacked.reason as Error;
  if (extracted.status === 'rejected') throw extracted.reason as Error;
}

/** compresses an uncompressed tar stream with `encoding` */
export function compress(input: NodeJS.ReadableStream, encoding: BlobEncoding): Readable {
  if (encoding === 'zstd') return throughProcess(input, ZSTD_COMPRESS);
  const out = encoding === 'gzip' ? createGzip({ level: 6 }) : new PassThrough();
  input.on('error', (err: Error) => out.destroy(err));
  return input.pipe(out);
}

/** decompresses a stored archive of `encoding` */
export function decompress(input: Readable, encoding: BlobEncoding): Readable {
  if (encoding === 'zstd') {
    if (!hasZstd()) {
      const out = new PassThrough();
      input.destroy();
      process.nextTick(() =>
        out.destroy(
          new Error('the archive is compressed with zstd but this agent has no `zstd` binary (install zstd)'),
        ),
      );
      return out;
    }
    return throughProcess(input, ['zstd', '-d', '-q', '-c']);
  }
  const out = encoding === 'gzip' ? createGunzip() : new PassThrough();
  input.on('error', (err: Error) => out.destroy(err));
  return input.pipe(out);
}

/** how large the chunks of an upload are: an HTTP body costs per chunk, and zstd writes 64 KiB ones */
const UPLOAD_CHUNK_BYTES = 1024 * 1024;

/** counts the bytes passing through, and passes them on in chunks of about UPLOAD_CHUNK_BYTES */
export function byteCounter(): Transform & { bytes: number } {
  let parts: Buffer[] = [];
  let gathered = 0;
  const take = () => {
    const chunk = Buffer.concat(parts, gathered);
    parts = [];
    gathered = 0;
    return chunk;
  };
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      t.bytes += chunk.length;
      parts.push(chunk);
      gathered += chunk.length;
      if (gathered >= UPLOAD_CHUNK_BYTES) cb(null, take());
      else cb();
    },
    flush(cb) {
      if (gathered > 0) cb(null, take());
      else cb();
    },
  }) as Transform & { bytes: number };
  t.bytes = 0;
  return t;
}

/**
 * One tar stream made of the entries of several, each renamed (a hard link's target too). Sources
 * are read one after the other; the first error (a path that cannot be read) errors the output.
 */
export function concatTars(
  sources: Array<{ open: () => Promise<NodeJS.ReadableStream>; rename: (name: string) => string }>,
): Readable {
  async function* concat(): AsyncGenerator<Buffer> {
    const batch = new Batcher();
    for (const source of sources) {
      const reader = new TarReader({
        entry: (e) => {
          const linkname = e.type === 'link' && e.linkname ? source.rename(e.linkname) : e.linkname;
          for (const block of renamedEntry(e, source.rename(e.name), linkname)) batch.add(block);
        },
        data: (part) => batch.add(part),
      });
      for await (const chunk of (await source.open()) as AsyncIterable<Buffer>) {
        reader.push(chunk);
        yield* batch.take();
      }
      reader.end();
    }
    batch.add(END_OF_ARCHIVE);
    batch.flush();
    yield* batch.take();
  }
  return Readable.from(concat(), { objectMode: false });
}

export interface UnpackEntry {
  /** the name as stored in the archive */
  name: string;
  type: string;
}

/**
 * Unpacks a tar stream inside the environment: `route` gives each entry's directory and name there
 * (null skips it; a hard link's target is routed too). One writeTar per directory, started at its
 * first entry. Rejects on a corrupt archive or a failed writeTar; resolves with the number of
 * entries written.
 */
export async function unpackTar(
  environment: Environment,
  input: Readable,
  route: (name: string) => { dir: string; name: string } | null,
  onEntry?: (entry: UnpackEntry) => void,
  signal?: AbortSignal,
): Promise<number> {
  interface Target {
    /** what writeTar reads; the batches are pushed into it */
    stream: Readable;
    done: Promise<void>;
    batch: Batcher;
    /** called when writeTar wants more (the stream was full) */
    wake: (() => void) | null;
  }
  const targets = new Map<string, Target>();
  let count = 0;
  // The first failure (a writeTar, the abort signal) ends the input, and with it the loop below;
  // a wait for a target to want more is rejected by it too.
  let failure: Error | null = null;
  let interrupt: ((err: Error) => void) | null = null;
  const fail = (err: Error) => {
    if (failure) return;
    failure = err;
    interrupt?.(err);
    input.destroy(err);
  };
  const interrupted = <T>(wait: Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      if (failure) return reject(failure);
      interrupt = reject;
      wait.then(resolve, reject).finally(() => (interrupt = null));
    });
  const target = (dir: string) => {
    let t = targets.get(dir);
    if (!t) {
      const created: Target = {
        stream: new Readable({
          highWaterMark: 256 * 1024,
          read: () => {
            const wake = created.wake;
            created.wake = null;
            wake?.();
          },
        }),
        done: Promise.resolve(),
        batch: new Batcher(),
        wake: null,
      };
      // destroyed with unpackTar's failure so that writeTar stops; unpackTar reports that failure
      created.stream.on('error', () => undefined);
      created.done = environment.writeTar(dir, created.stream);
      created.done.catch((err: Error) => fail(err));
      targets.set(dir, (t = created));
    }
    return t;
  };
  /** pushes what is due to every target; waits for those that are full */
  const write = async () => {
    for (const t of targets.values()) {
      let full = false;
      for (const b of t.batch.take()) full = !t.stream.push(b) || full;
      if (full) await interrupted(new Promise<void>((resolve) => (t.wake = resolve)));
    }
  };
  /** where the current entry's contents go (null: skipped) */
  let current: Target | null = null;
  const reader = new TarReader({
    entry: (e) => {
      onEntry?.({ name: e.name, type: e.type });
      const to = route(e.name);
      current = to ? target(to.dir) : null;
      if (!to || !current) return;
      count++;
      let linkname = e.linkname;
      if (e.type === 'link' && linkname) {
        const link = route(linkname);
        if (link && link.dir === to.dir) linkname = link.name;
      }
      for (const block of renamedEntry(e, to.name, linkname)) current.batch.add(block);
    },
    data: (part) => current?.batch.add(part),
  });
  const onAbort = () => fail(new Error('canceled'));
  signal?.addEventListener('abort', onAbort);
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      reader.push(chunk);
      await write();
    }
    reader.end();
    for (const t of targets.values()) {
      t.batch.add(END_OF_ARCHIVE);
      t.batch.flush();
    }
    await write();
    for (const t of targets.values()) t.stream.push(null);
    await interrupted(Promise.all([...targets.values()].map((t) => t.done)));
    if (failure) throw failure;
    return count;
  } catch (err) {
    const error = failure ?? (err as Error);
    input.destroy();
    for (const t of targets.values()) t.stream.destroy(error);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The paths (relative to `dir`, or absolute) that exist inside the environment; a path with glob
 * characters (`*`, `?`, `[`) stands for its matches (the shell's pathname expansion, as Go's
 * filepath.Match for one level). Runs `/bin/sh` inside the environment.
 */
export async function existingPaths(
  environment: Environment,
  dir: string,
  paths: string[],
): Promise<string[]> {
  const script =
    'cd "$0" 2>/dev/null || exit 3; IFS=""; for pat do for f in $pat; do ' +
    'if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\\n" "$f"; fi; done; done';
  let out = '';
  let err = '';
  const handle = environment.exec({
    argv: ['/bin/sh', '-c', script, dir, ...paths],
    cwd: '/',
    env: environment.jobEnvironment,
    onOutput: (stream, data) => {
      if (stream === 'out') out += data;
      else err += data;
    },
  });
  const end = await handle.done;
  if (end.kind === 'exited' && end.exitCode === 3) return [];
  if (end.kind !== 'exited' || end.exitCode !== 0) {
    throw new Error(
      `could not list the paths inside the environment (${end.kind === 'exited' ? `exit ${end.exitCode}` : end.kind}): ${err.trim()}`,
    );
  }
  return [...new Set(out.split('\n').filter((l) => l !== ''))];
}

/** reads one file inside the environment through readTar; fails when it is not a regular file */
export async function readFileInside(environment: Environment, file: string): Promise<Readable> {
  const slash = file.lastIndexOf('/');
  const dir = slash <= 0 ? '/' : file.slice(0, slash);
  const input = await environment.readTar(dir, [file.slice(slash + 1)]);
  const extract = tar.extract();
  const out = new PassThrough();
  let seen = false;
  extract.on('entry', (header, stream, next) => {
    if (seen) {
      stream.resume();
      stream.on('end', () => next());
      return;
    }
    seen = true;
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      out.destroy(new Error(`${file} is not a regular file (${header.type})`));
      stream.resume();
      stream.on('end', () => next());
      return;
    }
    stream.pipe(out);
    stream.on('end', () => next());
  });
  extract.on('finish', () => {
    if (!seen) out.destroy(new Error(`${file} was not found`));
  });
  extract.on('error', (e: Error) => out.destroy(e));
  input.on('error', (e: Error) => out.destroy(e));
  input.pipe(extract);
  return out;
}

/** human size, as CircleCI prints them */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} B` : `${v.toFixed(1)} ${units[i]}`;
}
