// runTask: one task's step lifecycle on any Executor (host or Docker): prepares the environment
// ("Spin up environment"), runs each step inside it, reports each step's start, output and end to a
// TaskSink, and disposes of the environment whatever happens.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../ops/index.js';
import type { StepStatus, TaskOutcome, TaskSpec } from '../scheduler/protocol.js';
import type { Step } from '../config/model.js';
import {
  ExecutorError,
  resolveJobPath,
  type Environment,
  type ExecEnd,
  type ExecHandle,
  type Executor,
} from './executor.js';
import { executorFor, HostEnvironment, type DockerExecutorOptions } from './executors/index.js';
import { formatGoDuration, MaskingStream, maskableSecrets } from './output.js';
import type { SandboxMode } from './sandbox.js';
import { prepareHostSsh, type JobSsh } from './ssh-agent.js';
import { asRunStep, checkoutScript, shellArgv, unsupportedStepMessage, type RunStep } from './steps.js';
import {
  checkoutInto,
  haltRequested,
  prepareJobTools,
  STEP_HANDLERS,
  type BlobClient,
} from './steps/index.js';
export type FinalStepStatus = Exclude<StepStatus, 'running'>;

/** Where a running task reports; the HTTP client implements it. */
export interface TaskSink {
  stepStart(
    index: number,
    info: { name: string; type: string; background: boolean; startedAt: Date },
  ): Promise<void>;
  /** buffered by the sink */
  output(index: number, stream: 'out' | 'err', data: string): void;
  /**
   * While the sink holds more output than it wants to (the server takes it slower than steps print
   * it), a promise that settles once it has room: steps stop reading their processes' output until then.
   */
  backpressure?(): Promise<void> | undefined;
  stepEnd(index: number, status: FinalStepStatus, exitCode: number | null): Promise<void>;
}

export interface RunTaskOptions {
  workRoot: string;
  sandbox: SandboxMode;
  /** abort = cancel */
  signal: AbortSignal;
  logger?: Logger;
  /** runs `docker:` jobs on this Docker engine; without it they end as infrastructure_fail */
  docker?: DockerExecutorOptions;
  /** runs every job on this executor instead (tests) */
  executor?: Executor;
  /** the server's blob routes for this task (caches, workspaces, artifacts, test results) */
  blobs?: BlobClient;
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
  private readonly running = new Set<ExecHandle>();
  private readonly background: Promise<void>[] = [];
  private readonly backgroundProcs = new Set<ExecHandle>();
  private readonly secrets: string[];
  private readonly onAbort = () => {
    for (const p of this.running) p.kill();
    for (const p of this.backgroundProcs) p.kill();
  };

  constructor(
    private readonly spec: TaskSpec,
    private readonly sink: TaskSink,
    private readonly environment: Environment,
    private readonly signal: AbortSignal,
    private readonly blobs: BlobClient | undefined,
    /** the in-job circleci command on PATH and where it finds timings and the halt marker */
    private readonly toolEnv: Record<string, string>,
    private readonly workRoot: string,
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

  get env(): Record<string, string> {
    return { ...this.environment.jobEnvironment, ...this.toolEnv };
  }

  print(index: number, text: string): void {
    this.sink.output(index, 'out', text);
  }

  shouldRun(step: Step): boolean {
    // CircleCI stores artifacts and test results also after a failure (not after a cancel)
    if ((step.type === 'store_artifacts' || step.type === 'store_test_results') && step.when !== 'on_fail')
      return true;
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
      else if (Object.hasOwn(STEP_HANDLERS, step.type)) result = await this.runBuiltIn(step, index);
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

  /** a built-in step (save_cache, store_artifacts, …): its output is masked like a shell step's */
  private async runBuiltIn(step: Step, index: number): Promise<StepResult> {
    if (this.canceled) return { status: 'canceled', exitCode: null };
    const out = new MaskingStream(this.secrets, (t) => this.sink.output(index, 'out', t));
    try {
      const result = await STEP_HANDLERS[step.type]!(step, {
        spec: this.spec,
        environment: this.environment,
        env: this.env,
        index,
        print: (text) => out.write(text),
        signal: this.signal,
        blobs: this.blobs,
      });
      return this.canceled && result.status !== 'success' ? { status: 'canceled', exitCode: null } : result;
    } finally {
      out.end();
    }
  }

  private record(result: StepResult): void {
    if (result.status === 'failed') this.failed = true;
    if (result.status === 'timedout') {
      this.failed = true;
      this.timedout = true;
    }
  }

  private async writeScript(index: number, text: string): Promise<string> {
    const file = `${this.environment.taskDirectory}/steps/${index}.sh`;
    await this.environment.writeFile(file, text.endsWith('\n') ? text : text + '\n', 0o700);
    return file;
  }

  private start(
    index: number,
    argv: string[],
    cwd: string,
    env: Record<string, string>,
    noOutputTimeoutMs: number | undefined,
  ): { proc: ExecHandle; flush: () => void } {
    const out = new MaskingStream(this.secrets, (t) => this.sink.output(index, 'out', t));
    const err = new MaskingStream(this.secrets, (t) => this.sink.output(index, 'err', t));
    const proc = this.environment.exec({
      argv,
      cwd,
      env,
      noOutputTimeoutMs,
      onOutput: (stream, data) => {
        (stream === 'out' ? out : err).write(data);
        return this.sink.backpressure?.();
      },
    });
    return {
      proc,
      flush: () => {
        out.end();
        err.end();
      },
    };
  }

  private describeEnd(index: number, end: ExecEnd, noOutputTimeoutMs: number): StepResult {
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
    const cwd = resolveJobPath(
      run.workingDirectory,
      this.environment.homeDirectory,
      this.environment.workingDirectory,
    );
    const command = shellArgv(run.shell ?? this.spec.shell ?? this.environment.defaultShell, script);
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
        if (this.canceled || this.stopping) proc.kill();
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

  private stopping = false;

  /** the end of the task: background steps still running are stopped */
  async stopBackground(): Promise<void> {
    this.stopping = true;
    for (const p of this.backgroundProcs) p.kill();
    await Promise.all(this.background);
  }

  private async runCheckout(step: Step, index: number): Promise<StepResult> {
    const p = 'path' in step && typeof step.path === 'string' ? step.path : undefined;
    const dir = resolveJobPath(p, this.environment.homeDirectory, this.environment.workingDirectory);
    if (this.environment.kind === 'docker') {
      // images need no git: the agent clones and copies the tree (with .git) into the container
      const out = new MaskingStream(this.secrets, (t) => this.print(index, t));
      try {
        return await checkoutInto(this.environment, this.spec, dir, (t) => out.write(t), {
          workRoot: this.workRoot,
          signal: this.signal,
        });
      } finally {
        out.end();
      }
    }
    const script = await this.writeScript(index, checkoutScript(this.spec.checkout, dir));
    const env = { ...this.env, GIT_TERMINAL_PROMPT: '0' };
    if (this.canceled) return { status: 'canceled', exitCode: null };
    const shell = this.environment.defaultShell.startsWith('/bin/bash') ? '/bin/bash' : '/bin/sh';
    const { proc, flush } = this.start(
      index,
      [shell, script],
      this.environment.workingDirectory,
      env,
      undefined,
    );
    this.running.add(proc);
    const end = await proc.done;
    this.running.delete(proc);
    flush();
    return this.describeEnd(index, end, 0);
  }
}

export async function runTask(spec: TaskSpec, sink: TaskSink, opts: RunTaskOptions): Promise<TaskResult> {
  const executor = opts.executor ?? executorFor(spec, opts);
  if (typeof executor === 'string') return { status: 'infrastructure_fail', message: executor };

  await sink.stepStart(0, {
    name: 'Spin up environment',
    type: 'spin_up',
    background: false,
    startedAt: new Date(),
  });
  let environment: Environment | undefined;
  let run: TaskRun | undefined;
  let ssh: JobSsh | undefined;
  try {
    try {
      environment = await executor.prepare(spec, (text) => sink.output(0, 'out', text), opts.signal);
    } catch (err) {
      const e =
        err instanceof ExecutorError
          ? err
          : new ExecutorError(
              `Could not prepare the environment: ${(err as Error).message}`,
              'infrastructure_fail',
            );
      if (opts.signal.aborted) {
        await sink.stepEnd(0, 'canceled', null);
        return { status: 'canceled' };
      }
      sink.output(0, 'err', e.message + '\n');
      await sink.stepEnd(0, 'failed', null);
      return { status: e.status, message: e.message };
    }
    // machine jobs get an ssh-agent and an ~ that OpenSSH honours, as on CircleCI (docker jobs: the image's)
    if (environment instanceof HostEnvironment) {
      ssh = await prepareHostSsh(environment.layout, environment.jobEnvironment, opts.logger);
      for (const note of ssh.notes) sink.output(0, 'out', note + '\n');
    }
    sink.output(
      0,
      'out',
      `Task: ${spec.jobName} #${spec.jobNumber}, parallel run ${spec.nodeIndex + 1} of ${spec.nodeTotal}\n`,
    );
    await sink.stepEnd(0, 'success', 0);
    if (opts.signal.aborted) return { status: 'canceled' };

    await sink.stepStart(1, {
      name: 'Preparing environment variables',
      type: 'preparing_environment_variables',
      background: false,
      startedAt: new Date(),
    });
    let toolEnv: Record<string, string>;
    try {
      toolEnv = {
        ...ssh?.env,
        ...(await prepareJobTools(environment, spec, opts.blobs, (t) => sink.output(1, 'out', t))),
      };
    } catch (err) {
      const message = `Could not install the in-job circleci command: ${(err as Error).message}`;
      sink.output(1, 'err', message + '\n');
      await sink.stepEnd(1, 'failed', null);
      return { status: 'infrastructure_fail', message };
    }
    sink.output(
      1,
      'out',
      `Using environment variables:\n${Object.keys({ ...environment.jobEnvironment, ...toolEnv })
        .sort()
        .map((k) => `  ${k}\n`)
        .join('')}`,
    );
    await sink.stepEnd(1, 'success', 0);

    run = new TaskRun(spec, sink, environment, opts.signal, opts.blobs, toolEnv, opts.workRoot);
    for (const [i, step] of spec.steps.entries()) {
      if (run.canceled) break;
      if (!run.shouldRun(step)) continue;
      const index = FIRST_CONFIG_STEP_INDEX + i;
      await run.runConfigStep(step, index);
      // `circleci step halt` (only a shell step can call it) ends the job successfully here
      if ((step.type === 'run' || step.type === 'deploy') && !run.failed && !run.canceled) {
        const halted = await haltRequested(environment, run.env).catch((err: unknown) => {
          opts.logger?.warn({ err: (err as Error).message }, 'could not check for circleci step halt');
          return false;
        });
        if (halted) break;
      }
    }
    await run.stopBackground();
    if (run.canceled) return { status: 'canceled' };
    if (run.timedout) return { status: 'timedout' };
    return { status: run.failed ? 'failed' : 'success' };
  } finally {
    try {
      if (run) {
        await run.stopBackground();
        run.dispose();
      }
    } finally {
      // after the steps (background ones too), before the task directory holding its socket goes
      await ssh?.stop();
      if (environment) {
        await environment
          .dispose()
          .catch((err: unknown) =>
            opts.logger?.error(
              { err: (err as Error).message, taskId: spec.taskId },
              'could not remove the task environment',
            ),
          );
      }
    }
  }
}
