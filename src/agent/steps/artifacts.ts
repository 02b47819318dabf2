// The `store_artifacts` and `store_test_results` steps: the files under the step's path are read
// inside the task's environment as a tar stream (Environment.readTar, which works in containers
// without tar) and each one goes to the server as it streams past, never a whole file in memory:
// artifacts are uploaded one PUT per file, JUnit reports are parsed on the agent and sent as
// CircleCI's test items.
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import tar from 'tar-stream';
import type { Step } from '../../config/model.js';
import { TorusError } from '../../ops/errors.js';
import { resolveJobPath, type Environment } from '../executor.js';
import { isTestResultFile, parseJUnit, type TestCase } from '../junit.js';
import type { StepContext, StepHandler, StepResult } from './context.js';

const OK: StepResult = { status: 'success', exitCode: 0 };
const FAILED: StepResult = { status: 'failed', exitCode: null };
const CANCELED: StepResult = { status: 'canceled', exitCode: null };

/** thrown between files when the task is canceled */
class StepCanceled extends Error {}

function stopIfCanceled(signal: AbortSignal): void {
  if (signal.aborted) throw new StepCanceled('canceled');
}

/** how many symbolic links in a row are followed before a file is given up on */
const MAX_LINK_HOPS = 8;

export const ARTIFACT_STEP_HANDLERS: Record<string, StepHandler> = {
  store_artifacts: storeArtifacts,
  store_test_results: storeTestResults,
};

/** One regular file met under a step's path. */
interface TreeFile {
  /** its name relative to the step's path ('' when the path is the file itself) */
  relative: string;
  /** where it is inside the environment */
  source: string;
  size: number;
  body: Readable;
}

type PathKind = 'missing' | 'file' | 'dir' | 'other';

function args(step: Step): Record<string, unknown> {
  return 'args' in step ? step.args : {};
}

async function storeArtifacts(step: Step, ctx: StepContext): Promise<StepResult> {
  const a = args(step);
  if (typeof a.path !== 'string' || a.path.trim() === '') {
    ctx.print('store_artifacts needs a `path`: the file or directory to upload.\n');
    return FAILED;
  }
  if (!ctx.blobs) {
    ctx.print('store_artifacts cannot run: this agent has no connection to a Torus server.\n');
    return FAILED;
  }
  const blobs = ctx.blobs;
  const env = ctx.environment;
  const source = resolveJobPath(a.path, env.homeDirectory, env.workingDirectory);
  let destination: string;
  try {
    // CircleCI's default destination is the path itself (its artifacts read "home/circleci/project/…")
    destination =
      a.destination === undefined || a.destination === null
        ? source.replace(/^\/+/, '')
        : artifactDestination(String(a.destination));
  } catch (err) {
    if (!(err instanceof TorusError)) throw err;
    ctx.print(`${err.message}\n`);
    return FAILED;
  }
  const probe = await probePath(env, ctx.env, source);
  ctx.print(`Uploading ${source} to ${destination === '' ? '/' : destination}\n`);
  if (probe.kind === 'missing') {
    // CircleCI warns and the step succeeds: a job that produced nothing to keep has not failed
    ctx.print(`No artifact files found at ${source}\n`);
    return OK;
  }
  let count = 0;
  let total = 0;
  try {
    await walkTree(env, probe, source, ctx.print, async (file) => {
      stopIfCanceled(ctx.signal);
      const name =
        file.relative === ''
          ? destination || path.posix.basename(source)
          : destination === ''
            ? file.relative
            : `${destination}/${file.relative}`;
      await blobs.putArtifact(name, file.body);
      count++;
      total += file.size;
      ctx.print(`  ${file.source} (${formatBytes(file.size)})\n`);
    });
  } catch (err) {
    if (err instanceof StepCanceled) return CANCELED;
    throw err;
  }
  if (count === 0) ctx.print(`No artifact files found at ${source}\n`);
  else ctx.print(`Uploaded ${count} artifact${count === 1 ? '' : 's'} (${formatBytes(total)})\n`);
  return OK;
}

async function storeTestResults(step: Step, ctx: StepContext): Promise<StepResult> {
  const a = args(step);
  if (typeof a.path !== 'string' || a.path.trim() === '') {
    ctx.print('store_test_results needs a `path`: a JUnit XML file or a directory of them.\n');
    return FAILED;
  }
  if (!ctx.blobs) {
    ctx.print('store_test_results cannot run: this agent has no connection to a Torus server.\n');
    return FAILED;
  }
  const env = ctx.environment;
  const source = resolveJobPath(a.path, env.homeDirectory, env.workingDirectory);
  const probe = await probePath(env, ctx.env, source);
  if (probe.kind === 'missing') {
    ctx.print(`No test results found at ${source}: the path does not exist\n`);
    return OK;
  }
  ctx.print('Archiving the following test results\n');
  const tests: TestCase[] = [];
  let files = 0;
  try {
    await walkTree(env, probe, source, ctx.print, async (file) => {
      // a path naming a file is read whatever its name; in a directory only *.xml files are reports
      if (file.relative !== '' && !isTestResultFile(file.relative)) return;
      stopIfCanceled(ctx.signal);
      const report = await parseJUnit(file.body, file.source);
      files++;
      if (!report.recognized) {
        ctx.print(`  ${file.source}: not a JUnit report (no <testsuites> or <testsuite> root), ignored\n`);
        return;
      }
      ctx.print(`  ${file.source} (${report.tests.length} test${report.tests.length === 1 ? '' : 's'})\n`);
      for (const t of report.tests) tests.push(t);
    });
  } catch (err) {
    if (err instanceof StepCanceled) return CANCELED;
    if (!(err instanceof TorusError)) throw err;
    ctx.print(`${err.message}\n`);
    return FAILED;
  }
  if (files === 0) {
    ctx.print(`No test results found at ${source}: no *.xml files\n`);
    return OK;
  }
  if (tests.length > 0) {
    const { count } = await ctx.blobs.putTestResults(tests);
    ctx.print(`Uploaded ${count} test result${count === 1 ? '' : 's'}\n`);
  } else {
    ctx.print('The reports hold no test cases\n');
  }
  return OK;
}

/** A `destination` as an artifact path prefix; '..' is refused (artifacts stay inside the job's). */
export function artifactDestination(written: string): string {
  const parts = written.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `store_artifacts: destination ${JSON.stringify(written)} has a '..' segment; ` +
        'use a path inside the job\'s artifacts, e.g. "reports/coverage"',
    );
  }
  return parts.join('/');
}

/** What the step's path is inside the environment; `real` is it with symbolic links resolved. */
async function probePath(
  environment: Environment,
  env: Record<string, string>,
  target: string,
): Promise<{ kind: PathKind; real: string }> {
  const script =
    'p="$0"; if [ ! -e "$p" ]; then echo missing; exit 0; fi; ' +
    'if [ -d "$p" ]; then echo dir; elif [ -f "$p" ]; then echo file; else echo other; fi; ' +
    'readlink -f "$p" 2>/dev/null || printf "%s\\n" "$p"';
  const r = await execCollect(environment, env, ['/bin/sh', '-c', script, target]);
  const [kind = '', real = ''] = r.out.split('\n');
  if (!r.ok || !['missing', 'file', 'dir', 'other'].includes(kind)) {
    throw new Error(`cannot look at ${target} in the environment: ${r.out.trim() || r.err.trim()}`);
  }
  return { kind: kind as PathKind, real: real.trim() || target };
}

/** Runs a short command inside the environment and collects its output. */
export async function execCollect(
  environment: Environment,
  env: Record<string, string>,
  argv: string[],
): Promise<{ ok: boolean; exitCode: number | null; out: string; err: string }> {
  let out = '';
  let err = '';
  const end = await environment.exec({
    argv,
    cwd: environment.workingDirectory,
    env,
    onOutput: (stream, data) => {
      if (stream === 'out') out += data;
      else err += data;
    },
  }).done;
  if (end.kind === 'spawn_error') err += end.message;
  const exitCode = end.kind === 'exited' ? end.exitCode : null;
  return { ok: exitCode === 0, exitCode, out, err };
}

/**
 * Calls `onFile` for every regular file under `source` (or `source` itself), in tar order, each
 * body streaming. Hard links and symbolic links to files are read again from their target after
 * the tree (tar carries no bytes for them); links to directories are not followed (no loops).
 */
async function walkTree(
  environment: Environment,
  probe: { kind: PathKind; real: string },
  source: string,
  print: (text: string) => void,
  onFile: (file: TreeFile) => Promise<void>,
): Promise<void> {
  if (probe.kind === 'other') {
    print(`  ${source} is not a regular file or directory, skipped\n`);
    return;
  }
  const real = probe.real;
  const parent = path.posix.dirname(real);
  const base = path.posix.basename(real);
  const deferred: Array<{ relative: string; target: string }> = [];
  const relativeOf = (name: string): string | undefined => {
    const n = name.replace(/^\.\//, '').replace(/\/+$/, '');
    if (n === base) return '';
    return n.startsWith(base + '/') ? n.slice(base.length + 1) : undefined;
  };
  const sourceOf = (relative: string) => (relative === '' ? source : `${source}/${relative}`);
  await eachEntry(await environment.readTar(parent, [base]), async (header, body) => {
    const relative = relativeOf(header.name);
    if (relative === undefined) return;
    if (header.type === 'file' || header.type === 'contiguous-file') {
      await onFile({ relative, source: sourceOf(relative), size: header.size ?? 0, body });
    } else if (header.type === 'link' && header.linkname) {
      // a hard link's target is named like the archive's entries, relative to `parent`
      deferred.push({ relative, target: path.posix.join(parent, header.linkname) });
    } else if (header.type === 'symlink' && header.linkname) {
      const at = path.posix.dirname(path.posix.join(parent, header.name));
      deferred.push({ relative, target: path.posix.resolve(at, header.linkname) });
    }
    // directories, devices, fifos: nothing to upload
  });
  for (const link of deferred) await readLinked(environment, link, sourceOf(link.relative), print, onFile);
}

async function readLinked(
  environment: Environment,
  link: { relative: string; target: string },
  source: string,
  print: (text: string) => void,
  onFile: (file: TreeFile) => Promise<void>,
): Promise<void> {
  let target = link.target;
  for (let hop = 0; hop < MAX_LINK_HOPS; hop++) {
    let next: string | undefined;
    let seen = false;
    let handlerError: unknown;
    try {
      const stream = await environment.readTar(path.posix.dirname(target), [path.posix.basename(target)]);
      await eachEntry(stream, async (header, body) => {
        if (seen) return;
        seen = true;
        if (header.type === 'file' || header.type === 'contiguous-file') {
          try {
            await onFile({ relative: link.relative, source, size: header.size ?? 0, body });
          } catch (err) {
            handlerError = err;
            throw err;
          }
        } else if (header.type === 'symlink' && header.linkname) {
          next = path.posix.resolve(path.posix.dirname(target), header.linkname);
        } else {
          print(`  ${source} links to ${target}, which is not a file; skipped\n`);
        }
      });
    } catch (err) {
      // an upload or parse failure is the step's; only a target that cannot be read is skipped
      if (err === handlerError) throw err;
      print(`  ${source} links to ${target}, which cannot be read; skipped\n`);
      return;
    }
    if (next === undefined) return;
    target = next;
  }
  print(`  ${source}: too many levels of symbolic links; skipped\n`);
}

/**
 * Reads a tar stream entry by entry, awaiting `handle` for each before the next; a body the
 * handler leaves unread is drained. The first error (from the stream, the archive or a handler)
 * stops the reading and rejects.
 */
function eachEntry(
  source: NodeJS.ReadableStream,
  handle: (header: tar.Headers, body: Readable) => Promise<void>,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const extract = tar.extract();
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      extract.destroy(err);
      // the rest of the archive is read and dropped rather than the stream destroyed: the process
      // writing it (tar on the host, the engine's archive call) then ends instead of blocking
      source.unpipe(extract);
      source.resume();
      reject(err);
    };
    extract.on('entry', (header, stream, next) => {
      const body = new PassThrough();
      const ended = new Promise<void>((done) => stream.once('end', done));
      stream.on('error', (err: Error) => body.destroy(err));
      stream.pipe(body);
      handle(header, body).then(async () => {
        body.resume();
        await ended;
        next();
      }, fail);
    });
    extract.once('finish', () => {
      if (!failed) resolve();
    });
    extract.on('error', fail);
    source.on('error', fail);
    source.pipe(extract);
  });
}

/** "512 B", "1.5 KiB", "3.2 MiB" */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
