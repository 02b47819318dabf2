// What a built-in step (save_cache, store_artifacts, …) is given to do its work: the task, its
// environment (host or containers), a way to print into the step's output, and the server's blob
// routes (src/api/agent-blobs.ts) for artifacts, test results, caches and workspace layers.
import type { Readable } from 'node:stream';
import type { Step } from '../../config/model.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import type { Environment } from '../executor.js';
import type { TestCase } from '../junit.js';

export interface StepResult {
  status: 'success' | 'failed' | 'timedout' | 'canceled';
  exitCode: number | null;
}

export type BlobEncoding = 'zstd' | 'gzip' | 'none';

/** The agent side of the blob routes; every call carries the task's lease (409 → LeaseLost). */
export interface BlobClient {
  putArtifact(path: string, body: Readable): Promise<{ path: string; size: number }>;
  putTestResults(tests: TestCase[]): Promise<{ count: number }>;
  testTimings(): Promise<{ source: 'branch' | 'default-branch' | 'none'; tests: TestCase[] }>;
  /** `file`: the archive as a file this agent may read (BlobClientOptions.direct, a filesystem store) */
  lookupCache(
    keys: string[],
  ): Promise<{ key: string; size: number; encoding: BlobEncoding; file?: string } | null>;
  getCache(key: string): Promise<Readable | null>;
  /** a file for this agent to write a new cache archive into (then putCache with `{file}`); null: send it */
  stageCache(): Promise<string | null>;
  /** false when the key exists already (caches are immutable; a staged file is then removed) */
  putCache(key: string, body: Readable | { file: string }, encoding: BlobEncoding): Promise<boolean>;
  putWorkspaceLayer(body: Readable, encoding: BlobEncoding): Promise<{ layerId: string }>;
  workspaceLayers(): Promise<Array<{ id: string; jobName: string; size: number; encoding: BlobEncoding }>>;
  getWorkspaceLayer(id: string): Promise<Readable>;
}

export interface StepContext {
  spec: TaskSpec;
  environment: Environment;
  /** the job's environment (built-ins, project/context variables, job `environment`) */
  env: Record<string, string>;
  /** step output index */
  index: number;
  print(text: string): void;
  signal: AbortSignal;
  /** absent when the agent runs without a server (unit tests): such steps fail saying so */
  blobs: BlobClient | undefined;
}

export type StepHandler = (step: Step, ctx: StepContext) => Promise<StepResult>;
