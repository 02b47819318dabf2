// Executors: where a task's steps run. `executorFor` picks one for a task (host for machine and
// runner jobs, Docker for docker jobs when the agent has an engine) or says why none can run it.
import type { TaskSpec } from '../../scheduler/protocol.js';
import type { Executor } from '../executor.js';
import type { SandboxMode } from '../sandbox.js';
import type { Logger } from '../../ops/index.js';
import { DockerExecutor, type DockerExecutorOptions } from './docker.js';
import { HostExecutor } from './host.js';

export { HostExecutor, HostEnvironment, type HostExecutorOptions } from './host.js';
export {
  DockerExecutor,
  DockerEnvironment,
  DOCKER_RESOURCE_CLASSES,
  ORPHAN_SWEEP_INTERVAL_MS,
  TASK_LABEL,
  registryOf,
  resourceLimits,
  type DockerExecutorOptions,
  type Limits,
} from './docker.js';

export { AGENT_PROCESS_LABEL, agentProcessGone, type SweepResult } from './orphans.js';

const dockerExecutors = new WeakMap<DockerExecutorOptions, DockerExecutor>();

/** one executor per options object: pulls in flight and the engine's facts are shared between tasks */
function dockerExecutor(docker: DockerExecutorOptions, logger: Logger | undefined): DockerExecutor {
  let ex = dockerExecutors.get(docker);
  if (!ex) {
    ex = new DockerExecutor({ logger, ...docker });
    dockerExecutors.set(docker, ex);
  }
  return ex;
}

/**
 * Removes what Docker-executor tasks of dead agent processes of this host left in the engine (their
 * containers; with setup_remote_docker, what the jobs made through the proxy).
 */
export function sweepDockerOrphans(docker: DockerExecutorOptions, logger?: Logger) {
  return dockerExecutor(docker, logger).sweepOrphans();
}

/**
 * The same in the background, logging what it removed or could not: for an agent's start (each
 * Docker task's start also sweeps, at most every ORPHAN_SWEEP_INTERVAL_MS).
 */
export function sweepDockerOrphansSoon(docker: DockerExecutorOptions, logger?: Logger): void {
  dockerExecutor(docker, logger).sweepNowAndThen();
}

/** the executor for a task, or the message of why this agent cannot run it */
export function executorFor(
  spec: TaskSpec,
  opts: { workRoot: string; sandbox: SandboxMode; logger?: Logger; docker?: DockerExecutorOptions },
): Executor | string {
  switch (spec.executor.type) {
    case 'docker': {
      if (!opts.docker)
        return 'this agent has no Docker executor: the job uses `docker:`; start the agent with a Docker engine, or run the job with a `machine:` executor or a self-hosted runner resource class';
      return dockerExecutor(opts.docker, opts.logger);
    }
    case 'macos':
      return 'this agent cannot run `macos:` executor jobs';
    case 'machine':
    case 'none':
      return new HostExecutor({ workRoot: opts.workRoot, sandbox: opts.sandbox, logger: opts.logger });
    default: {
      const never: never = spec.executor;
      return `this agent cannot run \`${(never as { type: string }).type}\` executor jobs`;
    }
  }
}
