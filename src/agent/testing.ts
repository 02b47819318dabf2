// Test helpers for the agent's tests (not part of the public API): a real git repository, task
// specs, an in-memory TaskSink and a process probe.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Step } from '../config/model.js';
import type { IncomingHttpHeaders } from 'node:http';
import { LEASE_HEADER, type TaskSpec } from '../scheduler/protocol.js';
import { OUTPUT_FRAMES_CONTENT_TYPE, decodeRecords } from '../scheduler/output-format.js';
import type { FinalStepStatus, TaskSink } from './task.js';

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      HOME: cwd,
      GIT_AUTHOR_NAME: 'Test',
      GIT_AUTHOR_EMAIL: 'test@example.com',
      GIT_COMMITTER_NAME: 'Test',
      GIT_COMMITTER_EMAIL: 'test@example.com',
      GIT_CONFIG_NOSYSTEM: '1',
    },
  }).trim();
}

/** a repository with two commits on `main`: 'v1' then 'v2' in version.txt; returns both SHAs */
export function createRepo(dir: string): { url: string; first: string; second: string } {
  mkdirSync(dir, { recursive: true });
  git(dir, 'init', '-q', '-b', 'main');
  writeFileSync(path.join(dir, 'version.txt'), 'v1\n');
  git(dir, 'add', '.');
  git(dir, 'commit', '-q', '-m', 'first commit');
  const first = git(dir, 'rev-parse', 'HEAD');
  writeFileSync(path.join(dir, 'version.txt'), 'v2\n');
  mkdirSync(path.join(dir, 'sub'));
  writeFileSync(path.join(dir, 'sub', 'inner.txt'), 'inner\n');
  git(dir, 'add', '.');
  git(dir, 'commit', '-q', '-m', 'second commit');
  return { url: pathToFileURL(dir).href, first, second: git(dir, 'rev-parse', 'HEAD') };
}

let taskCounter = 0;

export function taskSpec(steps: Step[], overrides: Partial<TaskSpec> = {}): TaskSpec {
  taskCounter += 1;
  return {
    taskId: `task-${process.pid}-${taskCounter}-${Math.random().toString(36).slice(2, 8)}`,
    jobId: 'job-1',
    jobNumber: 7,
    jobName: 'build',
    projectSlug: 'circleci/org/repo',
    nodeIndex: 0,
    nodeTotal: 1,
    executor: { type: 'machine' },
    resourceClass: 'machine:medium',
    workingDirectory: '~/project',
    environment: { CI: 'true', CIRCLECI: 'true', CIRCLE_JOB: 'build' },
    steps,
    checkout: { repoUrl: 'file:///nonexistent', revision: '0'.repeat(40), branch: 'main' },
    secrets: [],
    ...overrides,
  };
}

export function runStep(
  command: string,
  extra: Partial<Extract<Step, { type: 'run'; command: string }>> = {},
): Step {
  return {
    type: 'run',
    name: extra.name ?? command,
    command,
    environment: {},
    noOutputTimeoutMs: 10 * 60_000,
    when: 'on_success',
    background: false,
    ...extra,
  } as Step;
}

export interface RecordedStep {
  name: string;
  type: string;
  background: boolean;
  out: string;
  err: string;
  status?: FinalStepStatus;
  exitCode?: number | null;
}

export class MemorySink implements TaskSink {
  readonly steps = new Map<number, RecordedStep>();
  readonly order: string[] = [];
  private readonly listeners: (() => void)[] = [];

  stepStart(
    index: number,
    info: { name: string; type: string; background: boolean; startedAt: Date },
  ): Promise<void> {
    this.steps.set(index, {
      name: info.name,
      type: info.type,
      background: info.background,
      out: '',
      err: '',
    });
    this.order.push(`start ${index}`);
    return Promise.resolve();
  }

  output(index: number, stream: 'out' | 'err', data: string): void {
    const s = this.steps.get(index);
    if (!s) throw new Error(`output for step ${index} before its start`);
    if (s.status) throw new Error(`output for step ${index} after its end`);
    s[stream] += data;
    for (const l of this.listeners) l();
  }

  stepEnd(index: number, status: FinalStepStatus, exitCode: number | null): Promise<void> {
    const s = this.steps.get(index);
    if (!s) throw new Error(`end of step ${index} before its start`);
    s.status = status;
    s.exitCode = exitCode;
    this.order.push(`end ${index}`);
    return Promise.resolve();
  }

  step(index: number): RecordedStep {
    const s = this.steps.get(index);
    if (!s) throw new Error(`step ${index} never started (started: ${[...this.steps.keys()].join(', ')})`);
    return s;
  }

  /** resolves once `text` appears in any step's output */
  waitForOutput(text: string): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if ([...this.steps.values()].some((s) => s.out.includes(text) || s.err.includes(text))) resolve();
      };
      this.listeners.push(check);
      check();
    });
  }
}

/** pids of processes whose command line contains `marker` */
export function processesMatching(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(marker)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked: not a match
    }
  }
  return pids;
}

/**
 * A request body as a fake agent-protocol server sees it: JSON, or an output-frames body (lease in
 * its header) turned into the JSON form `{leaseId, chunks}`.
 */
export function parseAgentBody(raw: Buffer, headers: IncomingHttpHeaders): Record<string, unknown> {
  if (raw.length === 0) return {};
  if (headers['content-type'] !== OUTPUT_FRAMES_CONTENT_TYPE)
    return JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  return { leaseId: headers[LEASE_HEADER], chunks: decodeRecords(raw) };
}
