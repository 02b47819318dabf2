// setup_remote_docker: gives a docker-executor job a Docker engine for `docker build`, `docker run`,
// `docker compose`: the agent's own engine, through a per-task proxy that keeps the job's objects
// labelled and inside its sandbox (../executors/remote-docker-proxy.ts), with DOCKER_HOST set for the
// steps that follow. CircleCI's docs: "Only use setup_remote_docker key for jobs where your primary
// executor is a Docker container. If your job uses a VM rather than a container (for example, your
// executor is machine) you do not need to use the setup_remote_docker key" — a no-op there.
import type { Step } from '../../config/model.js';
import { DockerEnvironment } from '../executors/index.js';
import type { StepHandler, StepResult } from './context.js';

const SUCCESS: StepResult = { status: 'success', exitCode: 0 };
const FAILED: StepResult = { status: 'failed', exitCode: null };

function args(step: Step): Record<string, unknown> {
  return 'args' in step && step.args && typeof step.args === 'object' ? step.args : {};
}

export const setupRemoteDocker: StepHandler = async (step, ctx) => {
  const a = args(step);
  const { environment } = ctx;
  if (!(environment instanceof DockerEnvironment)) {
    ctx.print(
      "setup_remote_docker is only needed by jobs with a `docker:` executor: this job runs on the agent's host, where `docker` uses the host's Docker engine when it has one. Nothing to do.\n",
    );
    return SUCCESS;
  }
  let remote: { dockerHost: string; engine: string };
  try {
    remote = await environment.setupRemoteDocker();
  } catch (err) {
    ctx.print(`${(err as Error).message}\n`);
    return FAILED;
  }
  ctx.print(`Remote Docker: the agent's ${remote.engine}, through a proxy for this job\n`);
  if (a.version !== undefined && a.version !== null && a.version !== '') {
    // YAML may read `version: 20.10` as a number
    const asked = typeof a.version === 'number' ? String(a.version) : JSON.stringify(a.version);
    ctx.print(`version ${asked} requested: Torus uses the agent's engine, ${remote.engine}\n`);
  }
  if (a.docker_layer_caching === true) {
    ctx.print(
      "Docker layer caching: layers are shared with the agent's engine cache (every job on this agent's engine builds with it)\n",
    );
  }
  ctx.print(
    `DOCKER_HOST=${remote.dockerHost} for the following steps\n` +
      "Like CircleCI's remote engine, it cannot see the job's files: bind mounts of host paths are refused (use `docker cp`, a build context or a volume), and so are privileged containers, host namespaces, devices and added capabilities. Containers the job starts are reachable through the engine only (`docker exec`, `docker logs`).\n",
  );
  // a hint, not a failure: the job may install the CLI in a later step (as CircleCI's docs show)
  let found = '';
  const probe = environment.exec({
    argv: ['/bin/sh', '-c', 'command -v docker || true'],
    cwd: environment.workingDirectory,
    env: ctx.env,
    onOutput: (_stream, data) => {
      found += data;
    },
  });
  await probe.done;
  if (!found.trim()) {
    ctx.print(
      "The primary image has no `docker` command: install the Docker CLI in a step before using it (CircleCI's convenience images have it)\n",
    );
  }
  return SUCCESS;
};

export const REMOTE_DOCKER_STEP_HANDLERS: Record<string, StepHandler> = {
  setup_remote_docker: setupRemoteDocker,
};
