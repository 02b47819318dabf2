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
  TASK_LABEL,
  registryOf,
  resourceLimits,
  type DockerExecutorOptions,
  type Limits,
} from './docker.js';

const dockerExecutors = new WeakMap<DockerExecutorOptions, DockerExecutor>();

/** the executor for a task, or the message of why this agent cannot run it */
export function executorFor(
  spec: TaskSpec,
  opts: { workRoot: string; sandbox: SandboxMode; logger?: Logger; docker?: DockerExecutorOptions },
): Executor | string {
  switch (spec.executor.type) {
    case 'docker': {
      if (!opts.docker)
        return 'this agent has no Docker executor: the job uses `docker:`; start the agent with a Docker engine, or run the job with a `machine:` executor or a self-hosted runner resource class';
      // one executor per options object: pulls in flight and the engine's facts are shared between tasks
      let ex = dockerExecutors.get(opts.docker);
      if (!ex) {
        ex = new DockerExecutor({ logger: opts.logger, ...opts.docker });
        dockerExecutors.set(opts.docker, ex);
      }
      return ex;
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
