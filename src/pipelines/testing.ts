// Helpers for the engine's tests: a recording scheduler and throwaway git repositories.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TaskSpec } from '../scheduler/protocol.js';
import type { Queryable } from '../storage/index.js';
import type { EngineScheduler } from './core.js';

export interface Enqueued {
  jobId: string;
  resourceClass: string;
  specs: Omit<TaskSpec, 'taskId'>[];
}

/** Records what the engine enqueues; tests drive jobs with onTaskStarted/onJobFinished. */
export class FakeScheduler implements EngineScheduler {
  enqueued: Enqueued[] = [];
  canceled: string[] = [];
  /** jobs whose tasks an agent is running: cancel leaves them to report back */
  running = new Set<string>();
  enqueue(_tx: Queryable, job: Enqueued): Promise<string[]> {
    this.enqueued.push(job);
    return Promise.resolve(job.specs.map(() => randomUUID()));
  }
  cancelJob(_tx: Queryable, jobId: string): Promise<{ runningTasks: number }> {
    this.canceled.push(jobId);
    return Promise.resolve({ runningTasks: this.running.has(jobId) ? 1 : 0 });
  }
  /** the enqueued job of that name (latest) */
  job(name: string): Enqueued {
    const e = this.enqueued.filter((x) => x.specs[0]!.jobName === name).pop();
    if (!e) throw new Error(`job ${name} was not enqueued`);
    return e;
  }
}

/** git with a fixed author, in `cwd`; returns trimmed stdout */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'Ada',
      GIT_AUTHOR_EMAIL: 'ada@example.com',
      GIT_COMMITTER_NAME: 'Ada',
      GIT_COMMITTER_EMAIL: 'ada@example.com',
    },
  }).trim();
}

/** Writes `files` into the work tree and commits them; returns the new commit. */
export function commit(dir: string, files: Record<string, string>, message: string): string {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '--allow-empty', '-m', message);
  return git(dir, 'rev-parse', 'HEAD');
}

/** Makes repositories under one temporary folder. */
export class RepoFactory {
  readonly root: string;
  private seq = 0;
  constructor(prefix: string) {
    this.root = mkdtempSync(join(tmpdir(), prefix));
  }
  /** A new repository on branch main whose first commit holds `files`. */
  make(files: Record<string, string>, message = 'first commit'): string {
    const dir = join(this.root, `repo-${++this.seq}`);
    mkdirSync(dir, { recursive: true });
    git(dir, 'init', '-q', '-b', 'main');
    commit(dir, files, message);
    return dir;
  }
}

/** The files of a repository holding only this CircleCI config. */
export const config = (yaml: string): Record<string, string> => ({ '.circleci/config.yml': yaml });
