// Streaming archive plumbing shared by the cache and workspace steps: compression on the agent host
// (the `zstd` binary where present, else gzip through node:zlib), concatenating tar streams under new
// names, unpacking a tar into one or more directories of the environment, and listing which paths
// (or glob matches) exist inside the environment. Archives are never held in memory whole.
import { spawn, spawnSync } from 'node:child_process';
import { createGunzip, createGzip } from 'node:zlib';
import { PassThrough, type Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { Environment } from '../executor.js';
import type { BlobEncoding } from './context.js';

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

/** pipes `input` through a child process (zstd); its failure (or the input's) errors the output */
function throughProcess(input: NodeJS.ReadableStream, argv: string[]): Readable {
  const out = new PassThrough();
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-2_000);
  });
  const stdin = child.stdin as Writable;
  stdin.on('error', () => undefined); // the process died: its exit says why
  input.on('error', (err: Error) => {
    out.destroy(err);
    child.kill('SIGKILL');
  });
  input.pipe(stdin);
  child.stdout.pipe(out, { end: false });
  child.once('error', (err) => out.destroy(err));
  child.once('close', (code) => {
    if (code === 0) out.end();
    else if (!out.destroyed) out.destroy(new Error(`${argv[0]} failed (exit ${code}): ${stderr.trim()}`));
  });
  out.on('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return out;
}

/** compresses an uncompressed tar stream with `encoding` */
export function compress(input: NodeJS.ReadableStream, encoding: BlobEncoding): Readable {
  if (encoding === 'zstd') return throughProcess(input, ['zstd', '-q', '-c', '-T0', '-3']);
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

/** counts the bytes passing through */
export function byteCounter(): Transform & { bytes: number } {
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      t.bytes += chunk.length;
      cb(null, chunk);
    },
  }) as Transform & { bytes: number };
  t.bytes = 0;
  return t;
}

/**
 * One tar stream made of the entries of several, each renamed (and dropped when rename gives
 * null). Sources are read one after the other; the first error (a path that cannot be read) errors
 * the output.
 */
export function concatTars(
  sources: Array<{ open: () => Promise<NodeJS.ReadableStream>; rename: (name: string) => string }>,
): Readable {
  const pack = tar.pack();
  const run = async () => {
    for (const source of sources) {
      const input = await source.open();
      await new Promise<void>((resolve, reject) => {
        const extract = tar.extract();
        extract.on('entry', (header, stream, next) => {
          header.name = source.rename(header.name);
          if (header.type === 'link' && header.linkname) header.linkname = source.rename(header.linkname);
          stream.on('error', reject);
          stream.pipe(pack.entry(header, (e) => (e ? reject(e) : next())));
        });
        extract.on('finish', resolve);
        extract.on('error', reject);
        input.on('error', reject);
        input.pipe(extract);
      });
    }
    pack.finalize();
  };
  run().catch((err: Error) => pack.destroy(err));
  return pack as unknown as Readable;
}

export interface UnpackEntry {
  /** the name as stored in the archive */
  name: string;
  type: string;
}

/**
 * Unpacks a tar stream inside the environment: `route` gives each entry's directory and name there
 * (null skips it). One writeTar per directory, started at its first entry. Rejects on a corrupt
 * archive or a failed writeTar; resolves with the number of entries written.
 */
export async function unpackTar(
  environment: Environment,
  input: Readable,
  route: (name: string) => { dir: string; name: string } | null,
  onEntry?: (entry: UnpackEntry) => void,
  signal?: AbortSignal,
): Promise<number> {
  const targets = new Map<string, { pack: tar.Pack; done: Promise<void> }>();
  const extract = tar.extract();
  let count = 0;
  let fail: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => undefined);
  const target = (dir: string) => {
    let t = targets.get(dir);
    if (!t) {
      const pack = tar.pack();
      const done = environment.writeTar(dir, pack as unknown as NodeJS.ReadableStream);
      done.catch((err: Error) => fail(err));
      targets.set(dir, (t = { pack, done }));
    }
    return t;
  };
  extract.on('entry', (header, stream, next) => {
    const to = route(header.name);
    onEntry?.({ name: header.name, type: header.type ?? 'file' });
    if (!to) {
      stream.resume();
      stream.on('end', () => next());
      return;
    }
    count++;
    const { pack } = target(to.dir);
    header.name = to.name;
    stream.on('error', (e: Error) => fail(e));
    stream.pipe(pack.entry(header, (e) => (e ? fail(e) : next())));
  });
  const onAbort = () => fail(new Error('canceled'));
  signal?.addEventListener('abort', onAbort);
  try {
    await Promise.race([pipeline(input, extract), failed]);
    for (const t of targets.values()) t.pack.finalize();
    await Promise.race([Promise.all([...targets.values()].map((t) => t.done)), failed]);
    return count;
  } catch (err) {
    input.destroy();
    extract.destroy();
    for (const t of targets.values()) t.pack.destroy();
    throw err;
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
