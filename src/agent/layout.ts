// A task's directory on the agent host, and how paths a job names (working directories, checkout
// paths) map onto it. With the sandbox, everything a job can write lives under <workRoot>/<taskId>/:
//
//   <taskId>/home       HOME; '~' expands here, '~/project' is the default working directory
//   <taskId>/tmp        bound at /tmp inside the sandbox (TMPDIR without it)
//   <taskId>/bash_env   BASH_ENV, sourced by every bash step
//   <taskId>/steps/     the script file of each step
//   <taskId>/fs/<path>  bound at <path> for working directories outside the task dir (e.g. /home/circleci/project)
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TaskSpec } from '../scheduler/protocol.js';
import type { Step } from '../config/model.js';
import { TorusError } from '../ops/index.js';
import type { SandboxKind, SandboxMounts } from './sandbox.js';

/** PATH inside the sandbox when the job sets none */
export const DEFAULT_SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const READ_ONLY_ROOTS = [
  '/usr',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/etc',
  '/opt',
  '/proc',
  '/dev',
];

export interface TaskLayout {
  sandbox: SandboxKind;
  root: string;
  home: string;
  tmp: string;
  bashEnv: string;
  stepsDir: string;
  /** the job's working directory as the job sees it ('~' expanded) */
  workingDirectory: string;
  mounts: SandboxMounts;
  /** an absolute path as the job sees it → the host path behind it */
  toHost(jobPath: string): string;
  /** a path as written in config ('~/x', 'x', '/x') → absolute path as the job sees it */
  resolve(written: string | undefined, base?: string): string;
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/');
}

/** working_directory / path arguments of the steps, as written */
function writtenDirs(steps: Step[]): string[] {
  const dirs: string[] = [];
  for (const s of steps) {
    if (s.type === 'checkout' && 'path' in s && typeof s.path === 'string') dirs.push(s.path);
    if (s.type === 'run' && 'workingDirectory' in s && typeof s.workingDirectory === 'string')
      dirs.push(s.workingDirectory);
    if ('args' in s && typeof s.args.working_directory === 'string') dirs.push(s.args.working_directory);
  }
  return dirs;
}

export async function createTaskLayout(
  spec: TaskSpec,
  workRoot: string,
  sandbox: SandboxKind,
): Promise<TaskLayout> {
  const root = path.resolve(workRoot, spec.taskId);
  const home = path.join(root, 'home');
  const tmp = path.join(root, 'tmp');
  const fsRoot = path.join(root, 'fs');
  const binds: { host: string; path: string }[] = [];

  const resolve = (written: string | undefined, base?: string): string => {
    const w = (written ?? '').trim();
    if (w === '' || w === '.') return base ?? home;
    if (w === '~') return home;
    if (w.startsWith('~/')) return path.join(home, w.slice(2));
    return path.resolve(base ?? home, w);
  };
  const toHost = (p: string): string => {
    if (sandbox === 'none' || isUnder(p, root)) return p;
    if (isUnder(p, '/tmp')) return path.join(tmp, path.relative('/tmp', p));
    const b = binds.find((x) => isUnder(p, x.path));
    if (b) return path.join(b.host, path.relative(b.path, p));
    return p;
  };

  const workingDirectory = resolve(spec.workingDirectory || '~/project');
  if (sandbox === 'bwrap') {
    const needed = [workingDirectory, ...writtenDirs(spec.steps).map((d) => resolve(d, workingDirectory))]
      .filter((p) => !isUnder(p, root) && !isUnder(p, '/tmp'))
      .sort((a, b) => a.length - b.length);
    for (const p of needed) {
      const ro = READ_ONLY_ROOTS.find((r) => isUnder(p, r));
      if (ro || p === '/') {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `The directory ${p} cannot be used inside the sandbox: ${ro ?? '/'} is read-only there; use a path under ~ or /tmp`,
        );
      }
      if (!binds.some((b) => isUnder(p, b.path))) binds.push({ host: path.join(fsRoot, p), path: p });
    }
  }

  const layout: TaskLayout = {
    sandbox,
    root,
    home,
    tmp,
    bashEnv: path.join(root, 'bash_env'),
    stepsDir: path.join(root, 'steps'),
    workingDirectory,
    mounts: { taskDir: root, tmpDir: tmp, binds, readOnly: [] },
    toHost,
    resolve,
  };
  for (const dir of [root, home, tmp, layout.stepsDir, ...binds.map((b) => b.host)]) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  }
  await mkdir(toHost(workingDirectory), { recursive: true });
  await writeFile(layout.bashEnv, '');
  return layout;
}

/**
 * The job's environment, built from scratch: never the agent's own (which may hold the server's
 * secrets), except PATH and LANG when there is no sandbox (the job runs with the host's tools).
 */
export function buildJobEnvironment(spec: TaskSpec, layout: TaskLayout): Record<string, string> {
  const base: Record<string, string> = {};
  if (layout.sandbox === 'none') {
    base.PATH = process.env.PATH ?? DEFAULT_SANDBOX_PATH;
    if (process.env.LANG) base.LANG = process.env.LANG;
  } else {
    base.PATH = DEFAULT_SANDBOX_PATH;
    base.LANG = 'C.UTF-8';
  }
  return {
    ...base,
    ...spec.environment,
    HOME: layout.home,
    BASH_ENV: layout.bashEnv,
    TMPDIR: layout.sandbox === 'none' ? layout.tmp : '/tmp',
    CIRCLE_WORKING_DIRECTORY: layout.workingDirectory,
  };
}
