// save_cache and restore_cache as CircleCI runs them: key templates rendered at step time (checksum
// of a file read inside the environment, branch, revision, environment variables, epoch, arch, build
// number), immutable keys (a second save is skipped), restore by key list (the server looks each key
// up: exact, then the newest prefix match). Archive layout: paths under the job's home are stored as
// `~/<path relative to home>` and restored under the home of the restoring job; every other path is
// stored absolute (`/<path>`) and restored at the same absolute path — as CircleCI restores caches to
// their original locations, but independent of where a task's home is on the agent.
import { createHash } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { access, rm } from 'node:fs/promises';
import { arch as osArch, platform } from 'node:os';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Step } from '../../config/model.js';
import { resolveJobPath, type Environment } from '../executor.js';
import {
  archiveEncoding,
  byteCounter,
  compress,
  compressedHomeArchive,
  concatTars,
  decompress,
  extractHomeArchive,
  hasZstd,
  writeHomeArchive,
  existingPaths,
  formatSize,
  readFileInside,
  unpackTar,
} from './archive.js';
import type { StepContext, StepHandler, StepResult } from './context.js';

/** CircleCI's limit on cache keys */
export const MAX_CACHE_KEY = 900;

const SUCCESS: StepResult = { status: 'success', exitCode: 0 };
const FAILED: StepResult = { status: 'failed', exitCode: null };

function args(step: Step): Record<string, unknown> {
  return 'args' in step && step.args && typeof step.args === 'object' ? step.args : {};
}

/** a list argument written as a list or as one string */
function stringList(v: unknown): string[] {
  if (typeof v === 'string') return v.trim() === '' ? [] : [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string' && x.trim() !== '');
  return [];
}

let archValue: string | undefined;

/**
 * `{{ arch }}`: CircleCI prints e.g. `arch1-linux-amd64-6_85` (OS, Go CPU name, CPU family_model);
 * the same shape here, from the agent host (the kernel and CPU every environment of it shares).
 */
export function cacheArch(): string {
  if (archValue !== undefined) return archValue;
  const goArch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm' };
  let model = '';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
    const mdl = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
    if (family && mdl) model = `-${family}_${mdl}`;
  } catch {
    // no /proc/cpuinfo (not Linux): OS and CPU architecture only
  }
  archValue = `arch1-${platform()}-${goArch[osArch()] ?? osArch()}${model}`;
  return archValue;
}

export class TemplateError extends Error {}

/** base64 of the SHA-256 of a file read inside the environment (path relative to the working directory) */
async function checksum(ctx: StepContext, file: string): Promise<string> {
  const { environment } = ctx;
  const full = resolveJobPath(file, environment.homeDirectory, environment.workingDirectory);
  const hash = createHash('sha256');
  try {
    await pipeline(await readFileInside(environment, full), hash);
  } catch (err) {
    throw new TemplateError(`cannot compute {{ checksum "${file}" }}: ${(err as Error).message}`);
  }
  return hash.digest('base64');
}

/** Renders a cache key template; an unknown template or an unreadable checksum file throws TemplateError. */
export async function renderCacheKey(template: string, ctx: StepContext): Promise<string> {
  const env = ctx.env;
  let out = '';
  let last = 0;
  for (const m of template.matchAll(/\{\{-?\s*(.*?)\s*-?\}\}/g)) {
    out += template.slice(last, m.index);
    last = m.index! + m[0].length;
    const expr = m[1]!;
    const sum = /^checksum\s+(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`)$/.exec(expr);
    let value: string;
    if (sum) value = await checksum(ctx, sum[1] !== undefined ? JSON.parse(`"${sum[1]}"`) : sum[2]!);
    else if (expr === '.Branch') value = env.CIRCLE_BRANCH ?? '';
    else if (expr === '.Revision') value = env.CIRCLE_SHA1 ?? '';
    else if (expr === '.BuildNum') value = env.CIRCLE_BUILD_NUM ?? String(ctx.spec.jobNumber);
    else if (expr === 'epoch') value = String(Math.floor(Date.now() / 1000));
    else if (expr === 'arch') value = cacheArch();
    else if (/^\.Environment\.[A-Za-z_][A-Za-z0-9_]*$/.test(expr)) {
      // Go's template prints a missing map entry as "<no value>", and so does CircleCI
      value = env[expr.slice('.Environment.'.length)] ?? '<no value>';
    } else throw new TemplateError(`unknown cache key template ${m[0]}`);
    out += value;
  }
  out += template.slice(last);
  if (out.length > MAX_CACHE_KEY) {
    throw new TemplateError(
      `the cache key is ${out.length} characters long; CircleCI allows at most ${MAX_CACHE_KEY}`,
    );
  }
  return out;
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/');
}

function noServer(ctx: StepContext, type: string): StepResult {
  ctx.print(`The \`${type}\` step needs the Torus server, and this task runs without one.\n`);
  return FAILED;
}

export const saveCache: StepHandler = async (step, ctx) => {
  const a = args(step);
  const template = typeof a.key === 'string' ? a.key : '';
  if (template.trim() === '') {
    ctx.print('save_cache needs a `key`.\n');
    return FAILED;
  }
  const written = stringList(a.paths);
  if (written.length === 0) {
    ctx.print('save_cache needs `paths` to save.\n');
    return FAILED;
  }
  if (!ctx.blobs) return noServer(ctx, 'save_cache');
  const blobs = ctx.blobs;
  let key: string;
  try {
    key = await renderCacheKey(template, ctx);
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    ctx.print(`Error: ${err.message}\n`);
    return FAILED;
  }
  const skipped = () => {
    ctx.print(`Skipping cache generation, cache already exists for key: ${key}\n`);
    return SUCCESS;
  };
  const found = await blobs.lookupCache([key]);
  if (found?.key === key) return skipped();

  const { environment } = ctx;
  const home = environment.homeDirectory;
  const resolved = written.map((p) => resolveJobPath(p, home, environment.workingDirectory));
  const present = new Set(await existingPaths(environment, '/', resolved));
  for (const [i, p] of resolved.entries()) {
    if (!present.has(p)) ctx.print(`Warning: could not find ${written[i]} (${p}); it is not cached\n`);
  }
  const paths = resolved.filter((p) => present.has(p));
  if (paths.length === 0) {
    ctx.print(`None of the paths exist: no cache saved for key ${key}\n`);
    return SUCCESS;
  }
  const encoding = archiveEncoding();
  // The environment's own tar piped straight into zstd where it can: into the object store's file
  // when the server lets this agent write it, else through the agent to the server. Without that
  // tar, the archive streams through the agent.
  const direct = environment.homeArchive && encoding === 'zstd' ? environment.homeArchive : null;
  const staged = direct ? await blobs.stageCache() : null;
  let size: number;
  let created: boolean;
  try {
    if (direct && staged) {
      ctx.print(`Creating cache archive...\n`);
      try {
        size = await writeHomeArchive(direct, paths, staged, ctx.signal);
      } catch (err) {
        if (ctx.signal.aborted) return { status: 'canceled', exitCode: null };
        ctx.print(`Error: could not create the cache archive: ${(err as Error).message}\n`);
        return FAILED;
      }
      ctx.print(`Storing cache archive...\n`);
      created = await blobs.putCache(key, { file: staged }, encoding).catch(async (err: Error) => {
        await rm(staged, { force: true }); // not adopted: nobody else removes it
        throw err;
      });
    } else {
      ctx.print(`Creating cache archive...\n`);
      const archive = direct
        ? compressedHomeArchive(direct, paths, ctx.signal)
        : compress(concatTars(cacheSources(environment, paths)), encoding);
      const counter = byteCounter();
      archive.on('error', (e: Error) => counter.destroy(e));
      archive.pipe(counter);
      ctx.print(`Uploading cache archive...\n`);
      created = await blobs.putCache(key, counter, encoding);
      size = counter.bytes;
    }
  } catch (err) {
    ctx.print(`Error: could not save the cache: ${(err as Error).message}\n`);
    return FAILED;
  }
  if (!created) return skipped();
  ctx.print(
    `Stored Cache to ${key}\n${paths.map((p) => `  * ${p}\n`).join('')}Archive size: ${formatSize(size)} (${encoding})\n`,
  );
  return SUCCESS;
};

/** the tar streams of the cache layout (HomeArchive) read by Environment.readTar, and their renaming */
function cacheSources(environment: Environment, paths: string[]) {
  const home = environment.homeDirectory;
  const underHome = paths.filter((p) => isUnder(p, home) && p !== home);
  const elsewhere = paths.filter((p) => !underHome.includes(p));
  const rel = (p: string) => p.slice(home.length + 1);
  return [
    ...(underHome.length
      ? [
          {
            open: () => environment.readTar(home, underHome.map(rel)),
            rename: (n: string) => `~/${n.replace(/^\.\//, '')}`,
          },
        ]
      : []),
    ...(elsewhere.length
      ? [
          {
            open: () => environment.readTar('/', elsewhere),
            rename: (n: string) => `/${n.replace(/^\.?\//, '')}`,
          },
        ]
      : []),
  ];
}

export const restoreCache: StepHandler = async (step, ctx) => {
  const a = args(step);
  const templates = [...stringList(a.key), ...stringList(a.keys)];
  if (templates.length === 0) {
    ctx.print('restore_cache needs `key` or `keys`.\n');
    return FAILED;
  }
  if (!ctx.blobs) return noServer(ctx, 'restore_cache');
  const blobs = ctx.blobs;
  const keys: string[] = [];
  try {
    for (const t of templates) keys.push(await renderCacheKey(t, ctx));
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    ctx.print(`Error: ${err.message}\n`);
    return FAILED;
  }
  const found = await blobs.lookupCache(keys);
  // the keys before the first one the found key matches (exactly or as a prefix) found nothing
  const matched = found ? keys.findIndex((k) => found.key.startsWith(k)) : keys.length;
  for (const k of keys.slice(0, matched < 0 ? keys.length : matched)) {
    ctx.print(`No cache is found for key: ${k}\n`);
  }
  if (!found) return SUCCESS;
  ctx.print(`Found a cache at ${found.key}\nSize: ${formatSize(found.size)}\n`);
  const { environment } = ctx;
  // the environment's own tar fed by zstd where it can, zstd reading the object store's file when
  // this agent may; else the archive streams from the server through the agent
  const home =
    environment.homeArchive && found.encoding === 'zstd' && hasZstd() ? environment.homeArchive : null;
  const file = home && found.file && (await readable(found.file)) ? found.file : null;
  const stream = file ? null : await blobs.getCache(found.key);
  if (!file && !stream) {
    ctx.print(`No cache is found for key: ${found.key} (it was removed meanwhile)\n`);
    return SUCCESS;
  }
  ctx.print('Restoring cache...\n');
  try {
    if (home) {
      await extractHomeArchive(home, file ? { file } : stream!, ctx.signal);
      ctx.print('Restored the cache\n');
    } else {
      const count = await unpackCache(environment, decompress(stream!, found.encoding), ctx.signal);
      ctx.print(`Restored ${count} entries\n`);
    }
  } catch (err) {
    if (ctx.signal.aborted) return { status: 'canceled', exitCode: null };
    ctx.print(
      `Error: the cache archive for key ${found.key} is corrupt or could not be unpacked: ${(err as Error).message}\n`,
    );
    return FAILED;
  }
  return SUCCESS;
};

async function readable(file: string): Promise<boolean> {
  return access(file, constants.R_OK).then(
    () => true,
    () => false,
  );
}

/** unpacks a tar stream in the cache layout (HomeArchive) through Environment.writeTar */
function unpackCache(environment: Environment, input: Readable, signal: AbortSignal): Promise<number> {
  const home = environment.homeDirectory;
  const safe = (n: string) => !n.split('/').includes('..');
  return unpackTar(
    environment,
    input,
    (name) => {
      if (!safe(name)) return null;
      if (name === '~' || name === '~/') return null;
      if (name.startsWith('~/')) return { dir: home, name: name.slice(2) };
      const abs = name.replace(/^\/+/, '');
      return abs === '' ? null : { dir: '/', name: abs };
    },
    undefined,
    signal,
  );
}

export const CACHE_STEP_HANDLERS: Record<string, StepHandler> = {
  save_cache: saveCache,
  restore_cache: restoreCache,
};
