// persist_to_workspace and attach_workspace: a persist adds one layer (a compressed tar of `paths`,
// named relative to `root`) to the workflow's workspace; an attach unpacks the layers of every
// upstream job at `at`, in the order the server gives (workflow graph order), later layers winning.
// A file written by layers of two different jobs is reported as a conflict.
import type { Step } from '../../config/model.js';
import { resolveJobPath } from '../executor.js';
import {
  archiveEncoding,
  byteCounter,
  compress,
  decompress,
  existingPaths,
  formatSize,
  unpackTar,
} from './archive.js';
import type { StepContext, StepHandler, StepResult } from './context.js';

const SUCCESS: StepResult = { status: 'success', exitCode: 0 };
const FAILED: StepResult = { status: 'failed', exitCode: null };

function args(step: Step): Record<string, unknown> {
  return 'args' in step && step.args && typeof step.args === 'object' ? step.args : {};
}

function noServer(ctx: StepContext, type: string): StepResult {
  ctx.print(`The \`${type}\` step needs the Torus server, and this task runs without one.\n`);
  return FAILED;
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/');
}

export const persistToWorkspace: StepHandler = async (step, ctx) => {
  const a = args(step);
  const { environment } = ctx;
  if (typeof a.root !== 'string' || a.root.trim() === '') {
    ctx.print('persist_to_workspace needs a `root`.\n');
    return FAILED;
  }
  const written =
    typeof a.paths === 'string'
      ? [a.paths]
      : Array.isArray(a.paths)
        ? a.paths.filter((p): p is string => typeof p === 'string')
        : [];
  if (written.length === 0) {
    ctx.print('persist_to_workspace needs `paths` (relative to root).\n');
    return FAILED;
  }
  if (!ctx.blobs) return noServer(ctx, 'persist_to_workspace');
  const root = resolveJobPath(a.root, environment.homeDirectory, environment.workingDirectory);
  // paths are relative to root; an absolute one must lie under it
  const relative: string[] = [];
  for (const p of written) {
    const w = p.startsWith('~') ? resolveJobPath(p, environment.homeDirectory) : p;
    if (!w.startsWith('/')) relative.push(w);
    else if (isUnder(w, root)) relative.push(w === root ? '.' : w.slice(root.length).replace(/^\/+/, ''));
    else {
      ctx.print(`Error: ${p} is not under the workspace root ${root}\n`);
      return FAILED;
    }
  }
  const matches = await existingPaths(environment, root, relative);
  if (matches.length === 0) {
    ctx.print(`Error: The specified paths did not match any files in ${root}\n`);
    return FAILED;
  }
  const encoding = archiveEncoding();
  ctx.print(`Creating workspace archive...\n`);
  const counter = byteCounter();
  const body = compress(await environment.readTar(root, matches), encoding);
  body.on('error', (e: Error) => counter.destroy(e));
  body.pipe(counter);
  ctx.print('Uploading workspace archive...\n');
  try {
    await ctx.blobs.putWorkspaceLayer(counter, encoding);
  } catch (err) {
    ctx.print(`Error: could not persist to the workspace: ${(err as Error).message}\n`);
    return FAILED;
  }
  ctx.print(
    `Persisted to the workspace from ${root}:\n${matches.map((m) => `  * ${m}\n`).join('')}Archive size: ${formatSize(counter.bytes)} (${encoding})\n`,
  );
  return SUCCESS;
};

export const attachWorkspace: StepHandler = async (step, ctx) => {
  const a = args(step);
  const { environment } = ctx;
  if (typeof a.at !== 'string' || a.at.trim() === '') {
    ctx.print('attach_workspace needs `at` (where to attach the workspace).\n');
    return FAILED;
  }
  if (!ctx.blobs) return noServer(ctx, 'attach_workspace');
  const at = resolveJobPath(a.at, environment.homeDirectory, environment.workingDirectory);
  const layers = await ctx.blobs.workspaceLayers();
  if (layers.length === 0) {
    ctx.print(`No workspace layers to attach: no upstream job persisted to the workspace.\n`);
    return SUCCESS;
  }
  ctx.print(
    `Downloading workspace layers\n${layers.map((l) => `  ${l.id} (job ${l.jobName}) - ${formatSize(l.size)}\n`).join('')}`,
  );
  /** file name → the job whose layer wrote it last */
  const writers = new Map<string, string>();
  const conflicts = new Map<string, Set<string>>();
  for (const layer of layers) {
    ctx.print(`Applying workspace layer of job ${layer.jobName} at ${at}\n`);
    try {
      const stream = await ctx.blobs.getWorkspaceLayer(layer.id);
      await unpackTar(
        environment,
        decompress(stream, layer.encoding),
        (name) => (name.split('/').includes('..') ? null : { dir: at, name }),
        (entry) => {
          if (entry.type === 'directory') return;
          const name = entry.name.replace(/^\.\//, '');
          const before = writers.get(name);
          if (before !== undefined && before !== layer.jobName) {
            let jobs = conflicts.get(name);
            if (!jobs) conflicts.set(name, (jobs = new Set([before])));
            jobs.add(layer.jobName);
          }
          writers.set(name, layer.jobName);
        },
        ctx.signal,
      );
    } catch (err) {
      if (ctx.signal.aborted) return { status: 'canceled', exitCode: null };
      ctx.print(
        `Error: the workspace layer ${layer.id} persisted by job ${layer.jobName} is missing or could not be unpacked: ${(err as Error).message}\n`,
      );
      return FAILED;
    }
  }
  for (const [name, jobs] of conflicts) {
    const list = [...jobs];
    ctx.print(
      `Warning: ${name} was persisted to the workspace by jobs ${list.join(', ')}; the layer of ${list[list.length - 1]} was applied last and wins\n`,
    );
  }
  ctx.print(`Attached the workspace at ${at}\n`);
  return SUCCESS;
};

export const WORKSPACE_STEP_HANDLERS: Record<string, StepHandler> = {
  persist_to_workspace: persistToWorkspace,
  attach_workspace: attachWorkspace,
};
