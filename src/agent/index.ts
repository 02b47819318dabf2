// The build agent: claims tasks from the server over HTTP and runs their steps on the host
// executor (bubblewrap sandbox where available). See README.md for the step lifecycle.
export {
  runTask,
  FIRST_CONFIG_STEP_INDEX,
  type TaskSink,
  type RunTaskOptions,
  type TaskResult,
  type FinalStepStatus,
} from './task.js';
export { runAgent, OUTPUT_FLUSH_MS, OUTPUT_FLUSH_BYTES, AGENT_VERSION, type AgentOptions } from './client.js';
export { detectSandbox, type SandboxMode, type SandboxKind } from './sandbox.js';
export { formatGoDuration, MASK } from './output.js';
