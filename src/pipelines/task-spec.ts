// What the scheduler receives when a job is queued: its queue key (resource class) and one TaskSpec
// per parallel run, with CircleCI's built-in environment variables.
import type { CompiledJob, ExecutorSpec } from '../config/model.js';
import type { TaskSpec } from '../scheduler/protocol.js';

/**
 * The queue key of a job's tasks: `docker:<class>`, `machine:<class>`, `macos:<class>`; a
 * self-hosted runner class (`namespace/name`) and a job without executor use the class as is.
 */
export function queueKeyOf(executor: ExecutorSpec, resourceClass: string): string {
  if (resourceClass.includes('/')) return resourceClass;
  switch (executor.type) {
    case 'docker':
      return `docker:${resourceClass}`;
    case 'machine':
      return `machine:${resourceClass}`;
    case 'macos':
      return `macos:${resourceClass}`;
    case 'none':
      return resourceClass;
    default: {
      const never: never = executor;
      throw new Error(`unknown executor ${JSON.stringify(never)}`);
    }
  }
}

export interface TaskContext {
  job: { id: string; name: string; number: number };
  compiled: CompiledJob;
  workflow: { id: string; workspaceId: string };
  pipeline: { id: string; number: number; branch: string | null; tag: string | null; revision: string };
  project: { id: string; slug: string; name: string; orgId: string; orgName: string; vcsUrl: string };
  /** the URL agents clone from */
  checkoutUrl: string;
  /** settings.url, without a trailing slash */
  serverUrl: string;
  previousBuildNum?: number | null;
  username?: string | null;
}

export function buildUrlOf(
  ctx: Pick<TaskContext, 'serverUrl' | 'project' | 'pipeline' | 'workflow' | 'job'>,
): string {
  return `${ctx.serverUrl}/pipelines/${ctx.project.slug}/${ctx.pipeline.number}/workflows/${ctx.workflow.id}/jobs/${ctx.job.number}`;
}

/**
 * CircleCI's built-in variables for one parallel run. The job's own `environment` wins over them
 * (CircleCI's order of precedence: run step, job, built-in, context, project).
 */
export function builtInEnvironment(ctx: TaskContext, nodeIndex: number): Record<string, string> {
  const env: Record<string, string> = {
    CI: 'true',
    CIRCLECI: 'true',
    CIRCLE_SHA1: ctx.pipeline.revision,
    CIRCLE_BUILD_NUM: String(ctx.job.number),
    CIRCLE_BUILD_URL: buildUrlOf(ctx),
    CIRCLE_JOB: ctx.job.name,
    CIRCLE_NODE_INDEX: String(nodeIndex),
    CIRCLE_NODE_TOTAL: String(Math.max(1, ctx.compiled.parallelism)),
    CIRCLE_PIPELINE_ID: ctx.pipeline.id,
    CIRCLE_PROJECT_ID: ctx.project.id,
    CIRCLE_ORGANIZATION_ID: ctx.project.orgId,
    CIRCLE_PROJECT_REPONAME: ctx.project.name,
    CIRCLE_PROJECT_USERNAME: ctx.project.orgName,
    CIRCLE_REPOSITORY_URL: ctx.project.vcsUrl,
    CIRCLE_WORKFLOW_ID: ctx.workflow.id,
    CIRCLE_WORKFLOW_JOB_ID: ctx.job.id,
    CIRCLE_WORKFLOW_WORKSPACE_ID: ctx.workflow.workspaceId,
  };
  if (ctx.pipeline.branch) env.CIRCLE_BRANCH = ctx.pipeline.branch;
  if (ctx.pipeline.tag) env.CIRCLE_TAG = ctx.pipeline.tag;
  if (ctx.username) env.CIRCLE_USERNAME = ctx.username;
  if (ctx.previousBuildNum) env.CIRCLE_PREVIOUS_BUILD_NUM = String(ctx.previousBuildNum);
  return env;
}

export function buildTaskSpecs(ctx: TaskContext): {
  resourceClass: string;
  specs: Omit<TaskSpec, 'taskId'>[];
} {
  const resourceClass = queueKeyOf(ctx.compiled.executor, ctx.compiled.resourceClass);
  const total = Math.max(1, ctx.compiled.parallelism);
  const specs: Omit<TaskSpec, 'taskId'>[] = [];
  for (let nodeIndex = 0; nodeIndex < total; nodeIndex++) {
    const spec: Omit<TaskSpec, 'taskId'> = {
      jobId: ctx.job.id,
      jobNumber: ctx.job.number,
      jobName: ctx.job.name,
      projectSlug: ctx.project.slug,
      nodeIndex,
      nodeTotal: total,
      executor: ctx.compiled.executor,
      resourceClass,
      workingDirectory: ctx.compiled.workingDirectory,
      environment: { ...builtInEnvironment(ctx, nodeIndex), ...ctx.compiled.environment },
      steps: ctx.compiled.steps,
      checkout: {
        repoUrl: ctx.checkoutUrl,
        revision: ctx.pipeline.revision,
        ...(ctx.pipeline.branch ? { branch: ctx.pipeline.branch } : {}),
        ...(ctx.pipeline.tag ? { tag: ctx.pipeline.tag } : {}),
      },
      secrets: [],
    };
    if (ctx.compiled.shell !== undefined) spec.shell = ctx.compiled.shell;
    specs.push(spec);
  }
  return { resourceClass, specs };
}
