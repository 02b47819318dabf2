// Version control for pipelines: the VcsProvider interface (resolve a branch, tag or revision to a
// commit, read the config file at it) and its plain-git implementation driving the `git` binary.
// Local repositories (a path or file:// URL) are read in place; remote ones (http(s)://, ssh://,
// scp-like `user@host:path`) through a bare mirror under `${dataDir}/repos/<projectId>.git`,
// fetched on each trigger.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface VcsProject {
  id: string;
  vcsUrl: string;
}

export interface GitRefRequest {
  branch?: string;
  tag?: string;
  /** a commit SHA (full or abbreviated) to build instead of the branch/tag head */
  revision?: string;
}

export interface ResolvedCommit {
  /** 40-character SHA */
  revision: string;
  subject: string;
  body: string;
  authorName: string;
  authorEmail: string;
  authorDate: string;
  committerName: string;
  committerEmail: string;
}

export type VcsErrorKind = 'unreachable' | 'unknown-ref' | 'git';

/** A problem talking to the repository; the message is meant for the user (pipeline errors). */
export class VcsError extends Error {
  constructor(
    readonly kind: VcsErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'VcsError';
  }
}

export interface VcsProvider {
  /** Brings the provider's copy up to date and resolves the ref to a commit. Throws VcsError. */
  resolve(project: VcsProject, ref: GitRefRequest): Promise<ResolvedCommit>;
  /** The file's text at `revision`, or null when the file does not exist there. Throws VcsError. */
  readFile(project: VcsProject, revision: string, path: string): Promise<string | null>;
  /** The repository's default branch (its HEAD), or null when it cannot be told. */
  defaultBranch(vcsUrl: string): Promise<string | null>;
  /** The URL an agent clones from. */
  checkoutUrl(vcsUrl: string): string;
}

const GIT_TIMEOUT_MS = 30_000;
const FETCH_TIMEOUT_MS = 300_000;
const GIT_MAX_BUFFER = 16 * 1024 * 1024;
const SHA_RE = /^[0-9a-f]{4,40}$/i;

const REMOTE_SCHEMES = ['http:', 'https:', 'ssh:', 'git:', 'git+ssh:', 'ssh+git:'];

/** Why a repository URL cannot be used, or null when it can. */
export function vcsUrlProblem(vcsUrl: string): string | null {
  if (!vcsUrl.trim()) return 'the repository URL is empty';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(vcsUrl)) {
    let url: URL;
    try {
      url = new URL(vcsUrl);
    } catch {
      return `${vcsUrl} is not a valid URL`; // the parser's message adds nothing for a user
    }
    if (url.protocol === 'file:' || REMOTE_SCHEMES.includes(url.protocol)) return null;
    return `${url.protocol}// repositories are not supported: use file://, a path, http(s)://, ssh:// or git@host:path`;
  }
  if (/^[a-z][a-z0-9+.-]*::/i.test(vcsUrl)) return `${vcsUrl.split('::')[0]}:: transports are not supported`;
  return null;
}

/** Where a repository URL points: a local path, or a remote URL to mirror. */
export function classifyVcsUrl(
  vcsUrl: string,
): { local: true; path: string } | { local: false; url: string } {
  if (vcsUrl.startsWith('file://')) return { local: true, path: fileURLToPath(vcsUrl) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(vcsUrl)) return { local: false, url: vcsUrl };
  // scp-like syntax: `git@host:org/repo.git` (a colon before any slash)
  if (/^[^/]*:/.test(vcsUrl)) return { local: false, url: vcsUrl };
  return { local: true, path: resolvePath(vcsUrl) };
}

function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // a parent git (hooks, tests run from a repository) must not redirect ours
  for (const k of [
    'GIT_DIR',
    'GIT_WORK_TREE',
    'GIT_INDEX_FILE',
    'GIT_OBJECT_DIRECTORY',
    'GIT_CEILING_DIRECTORIES',
  ])
    delete env[k];
  env.GIT_TERMINAL_PROMPT = '0';
  env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
  env.LC_ALL = 'C';
  return env;
}

interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runGit(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<GitResult> {
  return new Promise((resolve) => {
    execFile(
      'git',
      // ext:: and fd:: transports run commands: never, whatever the URL says
      ['-c', 'safe.directory=*', '-c', 'protocol.ext.allow=never', '-c', 'protocol.fd.allow=never', ...args],
      {
        cwd: opts.cwd,
        env: gitEnv(),
        timeout: opts.timeoutMs ?? GIT_TIMEOUT_MS,
        maxBuffer: GIT_MAX_BUFFER,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        if (e.code === 'ENOENT') {
          return resolve({ code: -1, stdout: '', stderr: 'the git program is not installed on the server' });
        }
        const timedOut = e.killed === true;
        resolve({
          code: typeof e.code === 'number' ? e.code : -1,
          stdout: stdout ?? '',
          stderr: timedOut ? `git ${args[0] ?? ''} timed out` : stderr || e.message,
        });
      },
    );
  });
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n').filter(Boolean);
  return lines[lines.length - 1] ?? '';
}

export interface GitVcsOptions {
  /** `${settings.dataDir}`: mirrors live in its `repos/` folder */
  dataDir: string;
  /** mirror local repositories too (tests exercise the remote path with a local repository) */
  mirrorLocal?: boolean;
}

export class GitVcsProvider implements VcsProvider {
  /** one fetch at a time per mirror: concurrent fetches would fight over git's lock files */
  private readonly mirrorLocks = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: GitVcsOptions) {}

  checkoutUrl(vcsUrl: string): string {
    const where = classifyVcsUrl(vcsUrl);
    return where.local ? pathToFileURL(where.path).href : where.url;
  }

  async defaultBranch(vcsUrl: string): Promise<string | null> {
    const where = classifyVcsUrl(vcsUrl);
    if (where.local) {
      const r = await runGit(['-C', where.path, 'symbolic-ref', '--quiet', '--short', 'HEAD']);
      return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : null;
    }
    const r = await runGit(['ls-remote', '--symref', '--', where.url, 'HEAD']);
    if (r.code !== 0) return null;
    const m = /^ref: refs\/heads\/(\S+)\s+HEAD$/m.exec(r.stdout);
    return m?.[1] ?? null;
  }

  async resolve(project: VcsProject, ref: GitRefRequest): Promise<ResolvedCommit> {
    const gitDir = await this.repository(project);
    let spec: string;
    let what: string;
    if (ref.revision) {
      if (!SHA_RE.test(ref.revision)) {
        throw new VcsError('unknown-ref', `revision ${JSON.stringify(ref.revision)} is not a commit SHA`);
      }
      spec = ref.revision;
      what = `revision ${ref.revision}`;
    } else if (ref.tag) {
      spec = `refs/tags/${ref.tag}`;
      what = `tag ${JSON.stringify(ref.tag)}`;
    } else if (ref.branch) {
      spec = `refs/heads/${ref.branch}`;
      what = `branch ${JSON.stringify(ref.branch)}`;
    } else {
      throw new VcsError('unknown-ref', 'no branch, tag or revision to build');
    }
    const r = await runGit(['-C', gitDir, 'rev-parse', '--verify', '--quiet', `${spec}^{commit}`]);
    if (r.code !== 0 || !/^[0-9a-f]{40}$/.test(r.stdout.trim())) {
      throw new VcsError('unknown-ref', `${what} was not found in ${project.vcsUrl}`);
    }
    const revision = r.stdout.trim();
    const sep = '%x1f';
    const show = await runGit([
      '-C',
      gitDir,
      'show',
      '-s',
      `--format=%s${sep}%b${sep}%an${sep}%ae${sep}%aI${sep}%cn${sep}%ce`,
      revision,
    ]);
    if (show.code !== 0) {
      throw new VcsError('git', `cannot read commit ${revision}: ${lastLine(show.stderr)}`);
    }
    const [
      subject = '',
      body = '',
      authorName = '',
      authorEmail = '',
      authorDate = '',
      committerName = '',
      committerEmail = '',
    ] = show.stdout.replace(/\n$/, '').split('\x1f');
    return {
      revision,
      subject,
      body: body.trim(),
      authorName,
      authorEmail,
      authorDate,
      committerName,
      committerEmail,
    };
  }

  async readFile(project: VcsProject, revision: string, path: string): Promise<string | null> {
    const gitDir = await this.gitDir(project);
    const object = `${revision}:${path}`;
    const type = await runGit(['-C', gitDir, 'cat-file', '-t', object]);
    if (type.code !== 0) return null;
    if (type.stdout.trim() !== 'blob') {
      throw new VcsError('git', `${path} at ${revision} is a ${type.stdout.trim()}, not a file`);
    }
    const r = await runGit(['-C', gitDir, 'cat-file', 'blob', object]);
    if (r.code !== 0) throw new VcsError('git', `cannot read ${path} at ${revision}: ${lastLine(r.stderr)}`);
    return r.stdout;
  }

  private mirrorPath(projectId: string): string {
    return resolvePath(this.opts.dataDir, 'repos', `${projectId}.git`);
  }

  /** The git directory to read (no fetch). */
  private async gitDir(project: VcsProject): Promise<string> {
    const where = classifyVcsUrl(project.vcsUrl);
    if (where.local && !this.opts.mirrorLocal) return where.path;
    return this.mirrorPath(project.id);
  }

  /** The git directory to read, brought up to date first. */
  private async repository(project: VcsProject): Promise<string> {
    const where = classifyVcsUrl(project.vcsUrl);
    if (where.local && !this.opts.mirrorLocal) {
      if (!existsSync(where.path)) {
        throw new VcsError('unreachable', `the repository ${project.vcsUrl} does not exist on the server`);
      }
      return where.path;
    }
    const url = where.local ? pathToFileURL(where.path).href : where.url;
    const dir = this.mirrorPath(project.id);
    const prev = this.mirrorLocks.get(dir) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.updateMirror(dir, url));
    this.mirrorLocks.set(dir, next);
    try {
      await next;
    } finally {
      if (this.mirrorLocks.get(dir) === next) this.mirrorLocks.delete(dir);
    }
    return dir;
  }

  private async updateMirror(dir: string, url: string): Promise<void> {
    if (
      existsSync(dir) &&
      (await runGit(['-C', dir, 'rev-parse', '--is-bare-repository'])).stdout.trim() !== 'true'
    ) {
      // not a usable mirror (damaged, or left by something else): clone it afresh
      rmSync(dir, { recursive: true, force: true });
    }
    if (existsSync(dir)) {
      const seturl = await runGit(['-C', dir, 'remote', 'set-url', 'origin', url]);
      if (seturl.code !== 0)
        throw new VcsError('git', `cannot update the mirror of ${url}: ${lastLine(seturl.stderr)}`);
      const r = await runGit(['-C', dir, 'fetch', '--prune', '--quiet', 'origin'], {
        timeoutMs: FETCH_TIMEOUT_MS,
      });
      if (r.code !== 0) throw new VcsError('unreachable', `cannot fetch ${url}: ${lastLine(r.stderr)}`);
      return;
    }
    mkdirSync(dirname(dir), { recursive: true });
    // clone next to the final place and rename, so a crash never leaves a half mirror behind
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    const r = await runGit(['clone', '--mirror', '--quiet', '--', url, tmp], { timeoutMs: FETCH_TIMEOUT_MS });
    if (r.code !== 0) {
      rmSync(tmp, { recursive: true, force: true });
      throw new VcsError('unreachable', `cannot clone ${url}: ${lastLine(r.stderr)}`);
    }
    renameSync(tmp, dir);
  }
}
