// runTask: the host executor. Runs one task's steps in a fresh task directory (inside bubblewrap
// when available), reporting each step's start, output and end to a TaskSink.
import { spawnSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../ops/index.js';
import type { StepStatus, TaskOutcome, TaskSpec } from '../scheduler/protocol.js';
import type { Step } from '../config/model.js';
import { buildJobEnvironment, createTaskLayout, type TaskLayout } from './layout.js';
import { formatGoDuration, MaskingStream, maskableSecrets } from './output.js';
import { startStepProcess, type ProcessEnd, type StepProcess } from './process.js';
import { detectSandbox, type SandboxMode } from './sandbox.js';
import {
  asRunStep,
  checkoutScript,
  defaultShell,
  localRepoPath,
  shellArgv,
  unsupportedStepMessage,
  type RunStep,
} from './steps.js';

export type FinalStepStatus = Exclude<StepStatus, 'running'>;

/** Where a running task reports; the HTTP client implements it. */
export interface TaskSink {
  stepStart(
    index: number,
    info: { name: string; type: string; background: boolean; startedAt: Date },
  ): Promise<void>;
  /** buffered by the sink */
  output(index: number, stream: 'out' | 'err', data: string): void;
  stepEnd(index: number, status: FinalStepStatus, exitCode: number | null): Promise<void>;
}

export interface RunTaskOptions {
  workRoot: string;
  sandbox: SandboxMode;
  /** abort = cancel */
  signal: AbortSignal;
  logger?: Logger;
}

export interface TaskResult {
  status: TaskOutcome;
  message?: string;
}

/** CircleCI allows max_auto_reruns of 1 to 5 */
const MAX_AUTO_RERUNS = 5;

/** index of the first config step (0: Spin up environment, 1: Preparing environment variables) */
export const FIRST_CONFIG_STEP_INDEX = 2;

interface StepResult {
  status: FinalStepStatus;
  exitCode: number | null;
}

class TaskRun {
  failed = false;
  timedout = false;
  private readonly running = new Set<StepProcess>();
  private readonly background: Promise<void>[] = [];
  private readonly backgroundProcs = new Set<StepProcess>();
  private readonly secrets: string[];
  private readonly onAbort = () => {
    for (const p of this.running) p.kill();
    for (const p of this.backgroundProcs) p.kill();
  };

  constructor(
    private readonly spec: TaskSpec,
    private readonly sink: TaskSink,
    private readonly layout: TaskLayout,
    private readonly env: Record<string, string>,
    private readonly signal: AbortSignal,
  ) {
    this.secrets = maskableSecrets(spec.secrets);
    signal.addEventListener('abort', this.onAbort);
  }

  dispose(): void {
    this.signal.removeEventListener('abort', this.onAbort);
  }

  get canceled(): boolean {
    return this.signal.aborted;
  }

  print(index: number, text: string): void {
    this.sink.output(index, 'out', text);
  }

  shouldRun(step: Step): boolean {
    switch (step.when) {
      case 'always':
        return true;
      case 'on_fail':
        return this.failed;
      case 'on_success':
        return !this.failed;
      default:
        return !this.failed;
    }
  }

  async runConfigStep(step: Step, index: number): Promise<void> {
    const run = asRunStep(step);
    await this.sink.stepStart(index, {
      name: step.name,
      type: step.type,
      background: run?.background ?? false,
      startedAt: new Date(),
    });
    if (run?.background) {
      this.startBackground(run, index);
      return;
    }
    let result: StepResult;
    try {
      if (run) result = await this.runShell(run, index);
      else if (step.type === 'checkout') result = await this.runCheckout(step, index);
      else {
        this.print(index, unsupportedStepMessage(step.type));
        result = { status: 'failed', exitCode: null };
      }
    } catch (err) {
      // the agent itself failed to prepare the step (disk full, bad path): the step fails, the job goes on as after any failure
      this.print(index, `\nThe step could not run: ${(err as Error).message}\n`);
      result = { status: 'failed', exitCode: null };
    }
    this.record(result);
    await this.sink.stepEnd(index, result.status, result.exitCode);
  }

  private record(result: StepResult): void {
    if (result.status === 'failed') this.failed = true;
    if (result.status === 'timedout') {
      this.failed = true;
      this.timedout = true;
    }
  }

  private async writeScript(index: number, text: string): Promise<string> {
    const file = path.join(this.layout.stepsDir, `${index}.sh`);
    await writeFile(file, text.endsWith('\n') ? text : text + '\n', { mode: 0o700 });
    return file;
  }

  private start(
    index: number,
    command: string[],
    cwd: string,
    env: Record<string, string>,
    noOutputTimeoutMs: number | undefined,
    readOnly: string[] = [],
  ): { proc: StepProcess; flush: () => void } {
    const out = new MaskingStream(this.secrets, (t) => this.sink.output(index, 'out', t));
    const err = new MaskingStream(this.secrets, (t) => this.sink.output(index, 'err', t));
    const proc = startStepProcess({
      command,
      cwd,
      env,
      layout: this.layout,
      readOnly,
      noOutputTimeoutMs,
      onOutput: (stream, data) => (stream === 'out' ? out : err).write(data),
    });
    return {
      proc,
      flush: () => {
        out.end();
        err.end();
      },
    };
  }

  private describeEnd(index: number, end: ProcessEnd, noOutputTimeoutMs: number): StepResult {
    switch (end.kind) {
      case 'exited':
        if (end.exitCode === 0) return { status: 'success', exitCode: 0 };
        this.print(index, `\nExited with code exit status ${end.exitCode}\n`);
        return { status: 'failed', exitCode: end.exitCode };
      case 'timedout':
        this.print(
          index,
          `\nToo long with no output (exceeded ${formatGoDuration(noOutputTimeoutMs)}): context deadline exceeded\n`,
        );
        return { status: 'timedout', exitCode: null };
      case 'killed':
        return { status: 'canceled', exitCode: null };
      case 'spawn_error':
        this.print(index, `\nThe step could not start: ${end.message}\n`);
        return { status: 'failed', exitCode: null };
      default: {
        const never: never = end;
        throw new Error(`unknown process end ${JSON.stringify(never)}`);
      }
    }
  }

  private async prepareShell(run: RunStep, index: number) {
    const script = await this.writeScript(index, run.command);
    const cwd = this.layout.resolve(run.workingDirectory, this.layout.workingDirectory);
    await mkdir(this.layout.toHost(cwd), { recursive: true });
    const command = shellArgv(run.shell ?? this.spec.shell ?? defaultShell(), script);
    return { command, cwd, env: { ...this.env, ...run.environment } };
  }

  async runShell(run: RunStep, index: number): Promise<StepResult> {
    const { command, cwd, env } = await this.prepareShell(run, index);
    const attempts = 1 + Math.max(0, Math.min(run.maxAutoReruns, MAX_AUTO_RERUNS));
    for (let attempt = 1; ; attempt++) {
      if (this.canceled) return { status: 'canceled', exitCode: null };
      const { proc, flush } = this.start(index, command, cwd, env, run.noOutputTimeoutMs);
      this.running.add(proc);
      const end = await proc.done;
      this.running.delete(proc);
      flush();
      const result = this.describeEnd(index, end, run.noOutputTimeoutMs);
      if (result.status !== 'failed' || attempt >= attempts || this.canceled) return result;
      this.print(
        index,
        `\nRerunning the step (attempt ${attempt + 1} of ${attempts})` +
          (run.autoRerunDelayMs ? ` after ${formatGoDuration(run.autoRerunDelayMs)}` : '') +
          '\n\n',
      );
      await sleep(run.autoRerunDelayMs, undefined, { signal: this.signal }).catch(() => undefined); // a cancel ends the wait; the loop sees it
    }
  }

  private startBackground(run: RunStep, index: number): void {
    const task = (async () => {
      let result: StepResult;
      try {
        const { command, cwd, env } = await this.prepareShell(run, index);
        const { proc, flush } = this.start(index, command, cwd, env, run.noOutputTimeoutMs);
        this.backgroundProcs.add(proc);
        if (this.canceled) proc.kill();
        const end = await proc.done;
        this.backgroundProcs.delete(proc);
        flush();
        if (end.kind === 'killed' && !this.canceled) {
          // stopped because the job's other steps are done: CircleCI does the same, and it is no failure
          this.print(index, '\nBackground step stopped at the end of the job\n');
          result = { status: 'success', exitCode: null };
        } else {
          result = this.describeEnd(index, end, run.noOutputTimeoutMs);
        }
      } catch (err) {
        this.print(index, `\nThe step could not start: ${(err as Error).message}\n`);
        result = { status: 'failed', exitCode: null };
      }
      this.record(result);
      await this.sink.stepEnd(index, result.status, result.exitCode);
    })();
    this.background.push(task);
  }

  /** the end of the task: background steps still running are stopped */
  async stopBackground(): Promise<void> {
    for (const p of this.backgroundProcs) p.kill();
    await Promise.all(this.background);
  }

  private async runCheckout(step: Step, index: number): Promise<StepResult> {
    const p = 'path' in step && typeof step.path === 'string' ? step.path : undefined;
    const dir = this.layout.resolve(p, this.layout.workingDirectory);
    const script = await this.writeScript(index, checkoutScript(this.spec.checkout, dir));
    const local = localRepoPath(this.spec.checkout.repoUrl);
    const env = { ...this.env, GIT_TERMINAL_PROMPT: '0' };
    if (this.canceled) return { status: 'canceled', exitCode: null };
    const { proc, flush } = this.start(
      index,
      [defaultShell().startsWith('/bin/bash') ? '/bin/bash' : '/bin/sh', script],
      this.layout.workingDirectory,
      env,
      undefined,
      local ? [local] : [],
    );
    this.running.add(proc);
    const end = await proc.done;
    this.running.delete(proc);
    flush();
    return this.describeEnd(index, end, 0);
  }
}

function unsupportedExecutor(spec: TaskSpec): string | null {
  switch (spec.executor.type) {
    case 'docker':
      return 'this agent has no Docker executor yet: the job uses `docker:`; run it with a `machine:` executor or a self-hosted runner resource class';
    case 'macos':
      return 'this agent cannot run `macos:` executor jobs';
    case 'machine':
    case 'none':
      return null;
    default: {
      const never: never = spec.executor;
      return `this agent cannot run \`${(never as { type: string }).type}\` executor jobs`;
    }
  }
}

function executorLabel(spec: TaskSpec): string {
  const e = spec.executor;
  if (e.type === 'machine')
    return `machine${e.image ? ` (image ${e.image}, run on the host executor)` : ' (host executor)'}`;
  return `${e.type === 'none' ? 'self-hosted runner' : e.type} (host executor)`;
}

/** Removes the task directory; a job may have left read-only directories (Go's module cache does), so retry after chmod. */
async function removeTaskDir(root: string, logger: Logger | undefined): Promise<void> {
  try {
    await rm(root, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    // most likely permissions: make everything writable and try once more
    spawnSync('chmod', ['-R', 'u+rwX', root], { stdio: 'ignore' });
    await rm(root, { recursive: true, force: true }).catch((err: unknown) =>
      logger?.warn({ err: (err as Error).message, dir: root }, 'could not remove the task directory'),
    );
  }
}

export async function runTask(spec: TaskSpec, sink: TaskSink, opts: RunTaskOptions): Promise<TaskResult> {
  const refused = unsupportedExecutor(spec);
  if (refused) return { status: 'infrastructure_fail', message: refused };

  await sink.stepStart(0, {
    name: 'Spin up environment',
    type: 'spin_up',
    background: false,
    startedAt: new Date(),
  });
  let layout: TaskLayout | undefined;
  let run: TaskRun | undefined;
  try {
    let sandbox;
    try {
      sandbox = detectSandbox(opts.sandbox);
      layout = await createTaskLayout(spec, opts.workRoot, sandbox.kind);
    } catch (err) {
      const message = `Could not prepare the environment: ${(err as Error).message}`;
      sink.output(0, 'err', message + '\n');
      await sink.stepEnd(0, 'failed', null);
      return { status: 'infrastructure_fail', message };
    }
    const env = buildJobEnvironment(spec, layout);
    sink.output(
      0,
      'out',
      [
        `Executor: ${executorLabel(spec)}`,
        `Resource class: ${spec.resourceClass}`,
        `Sandbox: ${sandbox.kind === 'bwrap' ? 'bubblewrap (system directories read-only, only the task directory writable)' : 'none'}`,
        ...(sandbox.warning ? [`Warning: ${sandbox.warning}`] : []),
        `Working directory: ${layout.workingDirectory}`,
        `Task: ${spec.jobName} #${spec.jobNumber}, parallel run ${spec.nodeIndex + 1} of ${spec.nodeTotal}`,
        '',
      ].join('\n'),
    );
    await sink.stepEnd(0, 'success', 0);
    if (opts.signal.aborted) return { status: 'canceled' };

    await sink.stepStart(1, {
      name: 'Preparing environment variables',
      type: 'preparing_environment_variables',
      background: false,
      startedAt: new Date(),
    });
    sink.output(
      1,
      'out',
      `Using environment variables:\n${Object.keys(env)
        .sort()
        .map((k) => `  ${k}\n`)
        .join('')}`,
    );
    await sink.stepEnd(1, 'success', 0);

    run = new TaskRun(spec, sink, layout, env, opts.signal);
    for (const [i, step] of spec.steps.entries()) {
      if (run.canceled) break;
      if (!run.shouldRun(step)) continue;
      await run.runConfigStep(step, FIRST_CONFIG_STEP_INDEX + i);
    }
    await run.stopBackground();
    if (run.canceled) return { status: 'canceled' };
    if (run.timedout) return { status: 'timedout' };
    return { status: run.failed ? 'failed' : 'success' };
  } finally {
    if (run) {
      await run.stopBackground();
      run.dispose();
    }
    if (layout) await removeTaskDir(layout.root, opts.logger);
  }
}
