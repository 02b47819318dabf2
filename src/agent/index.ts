// The build agent: claims tasks from the server over HTTP and runs their steps on an executor:
// the host (bubblewrap sandbox where available) or Docker (containers through the Engine API).
// See README.md for the step lifecycle.
export {
  runTask,
  FIRST_CONFIG_STEP_INDEX,
  type TaskSink,
  type RunTaskOptions,
  type TaskResult,
  type FinalStepStatus,
} from './task.js';
export { runAgent, OUTPUT_FLUSH_MS, OUTPUT_FLUSH_BYTES, AGENT_VERSION, type AgentOptions } from './client.js';
export {
  ExecutorError,
  type Executor,
  type Environment,
  type ExecRequest,
  type ExecEnd,
  type ExecHandle,
} from './executor.js';
export {
  DockerExecutor,
  HostExecutor,
  executorFor,
  resourceLimits,
  type DockerExecutorOptions,
} from './executors/index.js';
export { detectSandbox, type SandboxMode, type SandboxKind } from './sandbox.js';
export { formatGoDuration, MASK } from './output.js';
