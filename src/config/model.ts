// The compiler's output model: a processed configuration in CircleCI's 2.0 shape, normalized and
// typed for the rest of Torus (pipelines build workflows from it, the agent runs its steps).
// Everything 2.1 adds (orbs, commands, executors, parameters, matrix, when/unless) is gone here.

/** `pipeline.*` values known when a pipeline is compiled, keyed by their full name ('pipeline.git.branch'). */
export type PipelineValues = Record<string, string | number | boolean | null>;

/** Pipeline parameter values supplied by a trigger (API, CLI, schedule). */
export type PipelineParameters = Record<string, string | number | boolean>;

export interface ConfigError {
  /** stable, e.g. 'TORUS_E_CONFIG_YAML', 'TORUS_E_CONFIG_UNKNOWN_JOB' */
  code: string;
  message: string;
  file?: string;
  line?: number;
  column?: number;
  hint?: string;
}

export interface DockerImage {
  image: string;
  name?: string;
  entrypoint?: string[];
  command?: string[];
  user?: string;
  environment: Record<string, string>;
  auth?: { username: string; password: string };
  awsAuth?: { accessKeyId?: string; secretAccessKey?: string; oidcRoleArn?: string };
}

export type ExecutorSpec =
  | { type: 'docker'; images: DockerImage[] }
  | { type: 'machine'; image?: string; dockerLayerCaching?: boolean }
  | { type: 'macos'; xcode: string }
  /** a job with no executor keys: CircleCI treats a bare `resource_class: ns/name` job as a self-hosted runner job */
  | { type: 'none' };

export type StepWhen = 'on_success' | 'on_fail' | 'always';

export type Step =
  | { type: 'checkout'; name: string; path?: string; when: StepWhen }
  | {
      type: 'run';
      name: string;
      command: string;
      shell?: string;
      environment: Record<string, string>;
      workingDirectory?: string;
      /** default 10 minutes */
      noOutputTimeoutMs: number;
      when: StepWhen;
      background: boolean;
      maxAutoReruns?: number;
      autoRerunDelayMs?: number;
    }
  /**
   * Every other built-in step, with its arguments as written after processing: save_cache,
   * restore_cache, persist_to_workspace, attach_workspace, store_artifacts, store_test_results,
   * add_ssh_keys, setup_remote_docker, deploy, …
   */
  | { type: string & {}; name: string; when: StepWhen; args: Record<string, unknown> };

export interface CompiledJob {
  executor: ExecutorSpec;
  /** as written, or the executor's default ('medium') */
  resourceClass: string;
  /** as written ('~/project' by default); the agent expands '~' */
  workingDirectory: string;
  shell?: string;
  parallelism: number;
  environment: Record<string, string>;
  steps: Step[];
}

export type RequiredStatus = 'success' | 'failed' | 'canceled' | 'unauthorized' | 'not_run';

export interface Requirement {
  /** a workflow job name (after matrix expansion: one entry per expanded job) */
  name: string;
  /** the statuses that satisfy it; `['success']` for a bare name, all five for `terminal` */
  statuses: RequiredStatus[];
}

export interface BranchTagFilter {
  /** strings, or '/regex/' forms matched against the whole name */
  only?: string[];
  ignore?: string[];
}

export interface JobFilters {
  branches?: BranchTagFilter;
  tags?: BranchTagFilter;
}

export interface WorkflowJob {
  /** unique within the workflow */
  name: string;
  /** key into CompiledConfig.jobs; absent for approval jobs */
  job?: string;
  type: 'build' | 'approval' | 'no-op';
  requires: Requirement[];
  filters: JobFilters;
  context: string[];
  serialGroup?: string;
}

export interface ScheduleTrigger {
  cron: string;
  filters: JobFilters;
}

export interface CompiledWorkflow {
  name: string;
  jobs: WorkflowJob[];
  triggers: ScheduleTrigger[];
  maxAutoReruns?: number;
}

export interface CompiledConfig {
  /** the `version:` written in the source (2, 2.0 or 2.1) */
  sourceVersion: '2' | '2.1';
  /** `setup: true`: a dynamic-configuration setup config */
  setup: boolean;
  jobs: Record<string, CompiledJob>;
  /** workflows whose `when`/`unless` let them run, in source order */
  workflows: CompiledWorkflow[];
}

export interface CompileOptions {
  /** for error locations; default '.circleci/config.yml' */
  filename?: string;
  pipelineValues?: PipelineValues;
  pipelineParameters?: PipelineParameters;
  /** refuse sources larger than this before parsing; default 4 MiB */
  maxBytes?: number;
  /** looks up orb sources (later issue: the registry); absent means orbs are an error */
  orbResolver?: OrbResolver;
  /** read the text only with the position-keeping reader (tests comparing the two readers) */
  exactRead?: boolean;
}

export interface OrbResolver {
  /** the packed YAML source of `namespace/name@version` (version may be partial or 'volatile') */
  resolve(ref: string): Promise<{ version: string; source: string } | null>;
}

export type CompileResult =
  | {
      ok: true;
      config: CompiledConfig;
      /** the processed configuration, as `circleci config process` prints it */
      processedYaml: string;
    }
  | { ok: false; errors: ConfigError[] };
