// The Docker executor, through the Engine API (dockerode; dockerd or podman's Docker API): the first
// image is the primary container where steps run through exec, the others are service containers in
// its network namespace (localhost reaches them). Images are pulled once (only when missing), with
// `auth` or `aws_auth` (an ECR token exchange) credentials that are never printed. Every container
// of a task carries the label io.torus.task=<taskId> and is removed (with its volumes) on dispose;
// and the agent process's label, so that what a dead agent left is swept later (./orphans.ts).
import { randomUUID } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable, type Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import type { DockerImage } from '../../config/model.js';
import type { Logger } from '../../ops/index.js';
import type { TaskSpec } from '../../scheduler/protocol.js';
import { maskSecrets } from '../output.js';
import { REMOTE_DOCKER_LABEL, RemoteDockerProxy, removeRemoteDockerObjects } from './remote-docker-proxy.js';
import {
  AGENT_PROCESS_LABEL,
  agentProcessId,
  recordSocketDirOwner,
  removeSocketDir,
  sweepEngineOrphans,
  sweepSocketDirOrphans,
  taskEnded,
  taskStarted,
  type SweepResult,
} from './orphans.js';
import {
  ExecutorError,
  resolveJobPath,
  type Environment,
  type ExecEnd,
  type ExecHandle,
  type ExecRequest,
  type Executor,
} from '../executor.js';

export const TASK_LABEL = 'io.torus.task';
/** CircleCI's label that keeps a primary image's ENTRYPOINT */
const PRESERVE_ENTRYPOINT_LABEL = 'com.circleci.preserve-entrypoint';
const TASK_DIR = '/tmp/.torus';
/** where the primary container sees the host directory of its remote Docker socket */
export const REMOTE_DOCKER_MOUNT = '/run/torus-docker';
const KILL_GRACE_MS = 1_000;
/** after the step's main process exits, how long its output may stay open (a stray child holding it) */
const PIPE_DRAIN_MS = 300;
const EXEC_POLL_MS = 500;
const GiB = 2 ** 30;
/** how often, at most, a task's start also sweeps what dead agents left in the engine */
export const ORPHAN_SWEEP_INTERVAL_MS = 10 * 60_000;

export interface DockerExecutorOptions {
  /** the engine; default: dockerode's defaults (DOCKER_HOST, else /var/run/docker.sock) */
  docker?: Docker;
  /** the ECR API endpoint for aws_auth (default: AWS's, by region) */
  ecrEndpoint?: string;
  /** what the host offers (default: the engine's NCPU and MemTotal); limits are clamped to it */
  hostResources?: { cpus: number; memoryBytes: number };
  /** the primary container's network (default: 'bridge' when the engine has it, else 'none') */
  network?: string;
  /**
   * `setup_remote_docker`: jobs that have the step reach this engine through a filtering proxy on a
   * Unix socket in `socketDir` (default: the OS's temp dir), which the engine must see at the same path.
   * Absent: the step fails saying how to enable it (TORUS_AGENT_REMOTE_DOCKER=1).
   */
  remoteDocker?: { socketDir?: string };
  logger?: Logger;
}

/** CircleCI's Docker resource classes: vCPUs and GB of RAM */
export const DOCKER_RESOURCE_CLASSES: Record<string, { cpus: number; memoryGB: number }> = {
  small: { cpus: 1, memoryGB: 2 },
  medium: { cpus: 2, memoryGB: 4 },
  'medium+': { cpus: 3, memoryGB: 6 },
  large: { cpus: 4, memoryGB: 8 },
  xlarge: { cpus: 8, memoryGB: 16 },
  '2xlarge': { cpus: 16, memoryGB: 32 },
  '2xlarge+': { cpus: 20, memoryGB: 40 },
  'arm.medium': { cpus: 2, memoryGB: 8 },
  'arm.large': { cpus: 4, memoryGB: 16 },
  'arm.xlarge': { cpus: 8, memoryGB: 32 },
  'arm.2xlarge': { cpus: 16, memoryGB: 64 },
};

export interface Limits {
  cpus: number;
  memoryBytes: number;
  /** lines for the job's output */
  notes: string[];
}

function formatGB(bytes: number): string {
  const gb = bytes / GiB;
  return `${Number.isInteger(gb) ? gb : gb.toFixed(gb < 1 ? 2 : 1)} GB`;
}

/** the limits of a resource class, clamped to what the host has */
export function resourceLimits(resourceClass: string, host: { cpus: number; memoryBytes: number }): Limits {
  const name = resourceClass.replace(/\.gen2$/, '');
  const notes: string[] = [];
  let cls = DOCKER_RESOURCE_CLASSES[name];
  if (!cls) {
    cls = DOCKER_RESOURCE_CLASSES.medium as { cpus: number; memoryGB: number };
    notes.push(`Resource class ${resourceClass} is not a Docker resource class: using medium's limits`);
  }
  const wantMem = cls.memoryGB * GiB;
  const cpus = Math.min(cls.cpus, host.cpus);
  const memoryBytes = Math.min(wantMem, host.memoryBytes);
  notes.push(
    `Resource class: ${resourceClass} (${cls.cpus} vCPU${cls.cpus > 1 ? 's' : ''}, ${cls.memoryGB} GB RAM)`,
  );
  if (cpus < cls.cpus || memoryBytes < wantMem) {
    notes.push(
      `This host has ${host.cpus} CPU${host.cpus > 1 ? 's' : ''} and ${formatGB(host.memoryBytes)} of memory: ` +
        `the job is limited to ${cpus} vCPU${cpus > 1 ? 's' : ''} and ${formatGB(memoryBytes)} instead`,
    );
  }
  return { cpus, memoryBytes, notes };
}

/** the registry an image reference names (Docker Hub for bare names) */
export function registryOf(image: string): string {
  const first = image.split('/')[0] ?? '';
  if (image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost'))
    return first;
  return 'docker.io';
}

const ECR_HOST = /^\d+\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;

type AuthConfig = { username: string; password: string; serveraddress: string };

function sanitizeName(s: string): string {
  return s.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 100);
}

function engineAddress(docker: Docker): string {
  const m = docker.modem as unknown as { socketPath?: string; host?: string; port?: number };
  return m.socketPath ?? (m.host ? `${m.host}:${m.port ?? ''}` : 'its default address');
}

/** what the task's containers carry: the task, and the agent process that made them (for the orphan sweep) */
function taskLabels(taskId: string): Record<string, string> {
  return { [TASK_LABEL]: taskId, [AGENT_PROCESS_LABEL]: agentProcessId() };
}

/** what identifies the job's remote Docker objects: the task label (as its containers) and the proxy's mark */
export function remoteDockerLabels(taskId: string): Record<string, string> {
  return { [TASK_LABEL]: taskId, [REMOTE_DOCKER_LABEL]: taskId };
}

/** the engine's Unix socket, when dockerode reaches it through one */
function engineSocketOf(docker: Docker): string | undefined {
  return (docker.modem as unknown as { socketPath?: string }).socketPath;
}

function daemonMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string; reason?: string };
  return (e.json?.message ?? e.message ?? String(err)).trim();
}

export class DockerExecutor implements Executor {
  readonly docker: Docker;
  private readonly pulls = new Map<string, Promise<void>>();
  private hostInfo?: Promise<{ cpus: number; memoryBytes: number; network: string; version: string }>;
  private lastSweepAt = -Infinity;
  private sweeping?: Promise<void>;

  constructor(private readonly opts: DockerExecutorOptions = {}) {
    this.docker = opts.docker ?? new Docker();
  }

  private get socketRoot(): string {
    return this.opts.remoteDocker?.socketDir ?? path.join(tmpdir(), 'torus-remote-docker');
  }

  /**
   * Removes what tasks of dead agent processes of this host (and tasks this process no longer runs)
   * left in the engine and in the remote Docker socket directory: see ./orphans.ts.
   */
  async sweepOrphans(): Promise<SweepResult> {
    const [engine, dirs] = await Promise.all([
      sweepEngineOrphans(this.docker, TASK_LABEL),
      sweepSocketDirOrphans(this.socketRoot),
    ]);
    return {
      tasks: [...new Set([...engine.tasks, ...dirs.tasks])],
      errors: [...engine.errors, ...dirs.errors],
    };
  }

  /**
   * A sweep in the background: at the agent's start, on a task's start, at most every
   * ORPHAN_SWEEP_INTERVAL_MS.
   */
  sweepNowAndThen(): void {
    if (this.sweeping || performance.now() - this.lastSweepAt < ORPHAN_SWEEP_INTERVAL_MS) return;
    this.lastSweepAt = performance.now();
    const log = this.opts.logger;
    this.sweeping = this.sweepOrphans()
      .then(
        (r) => {
          if (r.tasks.length)
            log?.info({ tasks: r.tasks }, 'removed what ended tasks left in the Docker engine');
          if (r.errors.length) log?.warn({ errors: r.errors }, 'could not remove all that ended tasks left');
        },
        (err: unknown) =>
          log?.warn({ err: (err as Error).message }, 'could not sweep the Docker engine for leftovers'),
      )
      .finally(() => (this.sweeping = undefined));
  }

  private info() {
    this.hostInfo ??= (async () => {
      const [info, version, networks] = await Promise.all([
        this.docker.info() as Promise<{ NCPU: number; MemTotal: number }>,
        this.docker.version(),
        this.opts.network ? Promise.resolve([]) : this.docker.listNetworks(),
      ]);
      return {
        cpus: this.opts.hostResources?.cpus ?? info.NCPU,
        memoryBytes: this.opts.hostResources?.memoryBytes ?? info.MemTotal,
        network: this.opts.network ?? (networks.some((n) => n.Name === 'bridge') ? 'bridge' : 'none'),
        version: `${version.Version} (API ${version.ApiVersion})`,
      };
    })();
    this.hostInfo.catch(() => (this.hostInfo = undefined));
    return this.hostInfo;
  }

  async prepare(spec: TaskSpec, print: (text: string) => void, signal: AbortSignal): Promise<Environment> {
    if (spec.executor.type !== 'docker' || spec.executor.images.length === 0) {
      throw new ExecutorError('The docker executor needs at least one image', 'failed');
    }
    const images = spec.executor.images;
    this.sweepNowAndThen();
    let host;
    try {
      host = await this.info();
    } catch (err) {
      throw new ExecutorError(
        `Cannot reach the Docker engine at ${engineAddress(this.docker)}: ${daemonMessage(err)}`,
        'infrastructure_fail',
      );
    }
    print(`Executor: docker (Docker engine ${host.version})\n`);
    const limits = resourceLimits(spec.resourceClass, host);
    for (const n of limits.notes) print(n + '\n');

    const containers: Docker.Container[] = [];
    let remoteDockerDir: string | undefined;
    const removeAll = async () => {
      try {
        if (remoteDockerDir) await removeSocketDir(remoteDockerDir);
        await removeContainers(containers);
      } finally {
        taskEnded(spec.taskId); // what could not be removed is the sweep's
      }
    };
    taskStarted(spec.taskId);
    try {
      for (const img of images) {
        if (signal.aborted) throw new ExecutorError('canceled', 'failed');
        await this.ensureImage(img, spec, print);
      }
      const [primaryImage, ...serviceImages] = images as [DockerImage, ...DockerImage[]];
      const labels = taskLabels(spec.taskId);
      const primaryInspect = await this.docker.getImage(primaryImage.image).inspect();
      const keepEntrypoint =
        primaryImage.entrypoint !== undefined ||
        primaryImage.command !== undefined ||
        primaryInspect.Config?.Labels?.[PRESERVE_ENTRYPOINT_LABEL] === 'true';
      print(`Starting container ${primaryImage.image}\n`);
      const start = async (image: string, options: Docker.ContainerCreateOptions) => {
        try {
          const c = await this.docker.createContainer(options);
          containers.push(c);
          await c.start();
          return c;
        } catch (err) {
          const code = (err as { statusCode?: number }).statusCode ?? 500;
          const message = daemonMessage(err);
          // podman answers an image without a command with a 500 where dockerd gives a 400: the config's fault either way
          const userError = (code >= 400 && code < 500) || /no command or entrypoint provided/i.test(message);
          throw new ExecutorError(
            `Could not start container ${image}: ${message}`,
            userError ? 'failed' : 'infrastructure_fail',
          );
        }
      };
      remoteDockerDir = await this.remoteDockerDir(spec);
      const primary = await start(primaryImage.image, {
        name: sanitizeName(`torus-${spec.taskId}-0`),
        Image: primaryImage.image,
        Labels: labels,
        User: primaryImage.user,
        Env: Object.entries(primaryImage.environment).map(([k, v]) => `${k}=${v}`),
        // CircleCI ignores the primary image's entrypoint unless asked to keep it: a long sleep keeps the container up for exec
        ...(keepEntrypoint
          ? { Entrypoint: primaryImage.entrypoint, Cmd: primaryImage.command }
          : { Entrypoint: ['/bin/sh', '-c', 'while :; do sleep 86400; done'], Cmd: [] }),
        HostConfig: {
          NetworkMode: host.network,
          NanoCpus: Math.round(limits.cpus * 1e9),
          Memory: limits.memoryBytes,
          MemorySwap: limits.memoryBytes,
          Init: true,
          ...(remoteDockerDir
            ? {
                Mounts: [
                  {
                    Type: 'bind' as const,
                    Source: remoteDockerDir,
                    Target: REMOTE_DOCKER_MOUNT,
                    ReadOnly: true,
                  },
                ],
              }
            : {}),
        },
      });
      for (const [i, svc] of serviceImages.entries()) {
        print(`Starting service container ${svc.image}${svc.name ? ` as ${svc.name}` : ''}\n`);
        await start(svc.image, {
          name: sanitizeName(`torus-${spec.taskId}-${i + 1}`),
          Image: svc.image,
          Labels: labels,
          User: svc.user,
          Env: Object.entries(svc.environment).map(([k, v]) => `${k}=${v}`),
          Entrypoint: svc.entrypoint,
          Cmd: svc.command,
          HostConfig: { NetworkMode: `container:${primary.id}` },
        });
      }
      if (signal.aborted) throw new ExecutorError('canceled', 'failed');
      const env = await DockerEnvironment.create(this.docker, primary, containers, spec, limits, {
        enabled: Boolean(this.opts.remoteDocker),
        dir: remoteDockerDir,
      });
      print(`Working directory: ${env.workingDirectory}\n`);
      return env;
    } catch (err) {
      await removeAll().catch((e: unknown) =>
        this.opts.logger?.error(
          { err: (e as Error).message, taskId: spec.taskId },
          'could not remove containers',
        ),
      );
      if (err instanceof ExecutorError) throw err;
      throw new ExecutorError(
        `Could not start the job's containers: ${daemonMessage(err)}`,
        'infrastructure_fail',
      );
    }
  }

  /**
   * The host directory that will hold the task's remote Docker socket, made now because a mount
   * cannot be added to a running container: only for jobs with `setup_remote_docker`, when the
   * operator enabled it and the engine listens on a Unix socket of this host (so it sees the path).
   */
  private async remoteDockerDir(spec: TaskSpec): Promise<string | undefined> {
    if (!this.opts.remoteDocker || !spec.steps.some((s) => s.type === 'setup_remote_docker'))
      return undefined;
    if (!engineSocketOf(this.docker)) return undefined;
    const root = this.socketRoot;
    await mkdir(root, { recursive: true, mode: 0o711 });
    // unguessable and not listable: other users of the host must not find the socket
    const dir = path.join(root, randomUUID());
    await mkdir(dir, { mode: 0o711 });
    await chmod(dir, 0o711); // the job's user (any uid) must reach the socket inside
    await recordSocketDirOwner(dir, spec.taskId);
    return dir;
  }

  /** pulls the image unless the engine has it; concurrent tasks share one pull */
  private async ensureImage(img: DockerImage, spec: TaskSpec, print: (text: string) => void): Promise<void> {
    const name = img.image;
    try {
      await this.docker.getImage(name).inspect();
      print(`Using local image ${name}\n`);
      return;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) {
        throw new ExecutorError(`Cannot inspect image ${name}: ${daemonMessage(err)}`, 'infrastructure_fail');
      }
    }
    const registry = registryOf(name);
    print(`Pulling image ${name} from ${registry}\n`);
    let pull = this.pulls.get(name);
    if (!pull) {
      pull = this.pull(img, spec, registry).finally(() => this.pulls.delete(name));
      this.pulls.set(name, pull);
    }
    const started = Date.now();
    await pull;
    print(`Pulled image ${name} in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
  }

  private async pull(img: DockerImage, spec: TaskSpec, registry: string): Promise<void> {
    const name = img.image;
    const auth = await this.credentials(img, spec, registry);
    const secrets = auth ? [auth.password, auth.username].filter((s) => s.length >= 4) : [];
    const fail = (reason: string, status: 'failed' | 'infrastructure_fail') =>
      new ExecutorError(
        `Failed to pull image ${name} from registry ${registry}: ${maskSecrets(reason, secrets)}`,
        status,
      );
    const classify = (reason: string) =>
      /not found|manifest unknown|unauthorized|denied|authentication required|no basic auth|forbidden|invalid reference|does not exist/i.test(
        reason,
      )
        ? 'failed'
        : 'infrastructure_fail';
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await this.docker.pull(name, auth ? { authconfig: auth } : {})) as NodeJS.ReadableStream;
    } catch (err) {
      const reason = daemonMessage(err);
      throw fail(reason, classify(reason));
    }
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(stream, (err: Error | null, events: { error?: string }[]) => {
        const reason = err ? daemonMessage(err) : events.find((e) => e.error)?.error;
        if (reason) reject(fail(reason, classify(reason)));
        else resolve();
      });
    });
  }

  /** registry credentials for an image: `auth`, or `aws_auth` exchanged for an ECR token; never printed */
  private async credentials(
    img: DockerImage,
    spec: TaskSpec,
    registry: string,
  ): Promise<AuthConfig | undefined> {
    if (img.auth)
      return { username: img.auth.username, password: img.auth.password, serveraddress: registry };
    const ecr = ECR_HOST.exec(registry);
    let aws = img.awsAuth;
    // CircleCI also uses the job's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for ECR images without aws_auth
    if (!aws && ecr && spec.environment.AWS_ACCESS_KEY_ID && spec.environment.AWS_SECRET_ACCESS_KEY) {
      aws = {
        accessKeyId: spec.environment.AWS_ACCESS_KEY_ID,
        secretAccessKey: spec.environment.AWS_SECRET_ACCESS_KEY,
      };
    }
    if (!aws) return undefined;
    if (aws.oidcRoleArn && !aws.accessKeyId) {
      throw new ExecutorError(
        `Cannot pull image ${img.image}: aws_auth with oidc_role_arn is not supported by this Torus release; use aws_access_key_id and aws_secret_access_key`,
        'failed',
      );
    }
    if (!aws.accessKeyId || !aws.secretAccessKey) {
      throw new ExecutorError(
        `Cannot pull image ${img.image} from registry ${registry}: aws_auth needs aws_access_key_id and aws_secret_access_key (is the variable they name set?)`,
        'failed',
      );
    }
    const region =
      ecr?.[1] ?? spec.environment.AWS_REGION ?? spec.environment.AWS_DEFAULT_REGION ?? 'us-east-1';
    const client = new ECRClient({
      region,
      endpoint: this.opts.ecrEndpoint,
      credentials: { accessKeyId: aws.accessKeyId, secretAccessKey: aws.secretAccessKey },
      maxAttempts: 2,
    });
    try {
      const out = await client.send(new GetAuthorizationTokenCommand({}));
      const token = out.authorizationData?.[0]?.authorizationToken;
      if (!token) throw new Error('the answer held no authorization token');
      const decoded = Buffer.from(token, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new Error('the authorization token is not user:password');
      return {
        username: decoded.slice(0, colon),
        password: decoded.slice(colon + 1),
        serveraddress: registry,
      };
    } catch (err) {
      if (err instanceof ExecutorError) throw err;
      const reason = maskSecrets((err as Error).message, [aws.secretAccessKey, aws.accessKeyId]);
      const e = err as { $metadata?: { httpStatusCode?: number } };
      const status =
        e.$metadata?.httpStatusCode && e.$metadata.httpStatusCode < 500 ? 'failed' : 'infrastructure_fail';
      throw new ExecutorError(
        `Failed to pull image ${img.image} from registry ${registry}: the ECR authorization token request (region ${region}) failed: ${reason}`,
        status,
      );
    } finally {
      client.destroy();
    }
  }
}

async function removeContainers(containers: Docker.Container[]): Promise<void> {
  const errors: string[] = [];
  // services first: they live in the primary's network namespace
  for (const c of [...containers].reverse()) {
    try {
      await c.remove({ force: true, v: true });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) errors.push(daemonMessage(err));
    }
  }
  if (errors.length) throw new Error(errors.join('; '));
}

/** kills every process whose environment carries TORUS_EXEC_ID=<id> (a step and everything it started) */
const KILL_SCRIPT = `for f in /proc/[0-9]*/environ; do
  case "$(cat "$f" 2>/dev/null)" in *"TORUS_EXEC_ID=$1"*) p=\${f%/environ}; kill -$2 \${p#/proc/} 2>/dev/null;; esac
done; exit 0`;

export class DockerEnvironment implements Environment {
  readonly kind = 'docker';
  readonly taskDirectory = TASK_DIR;
  private readonly ensured = new Set<string>();
  private readonly live = new Set<() => void>();
  private remoteDocker: {
    taskId: string;
    enabled: boolean;
    /** host directory mounted at REMOTE_DOCKER_MOUNT */
    dir?: string;
    proxy?: RemoteDockerProxy;
    engine?: string;
  } = { taskId: '', enabled: false };

  private constructor(
    private readonly docker: Docker,
    readonly primary: Docker.Container,
    private readonly containers: Docker.Container[],
    readonly homeDirectory: string,
    readonly workingDirectory: string,
    readonly jobEnvironment: Record<string, string>,
    readonly defaultShell: string,
    private readonly owner: { uid: number; gid: number },
    private readonly limits: Limits,
  ) {}

  static async create(
    docker: Docker,
    primary: Docker.Container,
    containers: Docker.Container[],
    spec: TaskSpec,
    limits: Limits,
    remoteDocker: { enabled: boolean; dir?: string } = { enabled: false },
  ): Promise<DockerEnvironment> {
    const probe = await runSimple(primary, [
      '/bin/sh',
      '-c',
      'echo "$HOME"; id -u; id -g; if [ -x /bin/bash ]; then echo bash; else echo sh; fi',
    ]);
    if (probe.exitCode !== 0) {
      throw new ExecutorError(
        `The primary container cannot run /bin/sh (exit ${probe.exitCode}): ${probe.output.trim()}; CircleCI's primary images need a shell`,
        'failed',
      );
    }
    const [home = '/root', uid = '0', gid = '0', shell = 'sh'] = probe.output.trim().split('\n');
    const workingDirectory = resolveJobPath(spec.workingDirectory || '~/project', home || '/');
    const env = new DockerEnvironment(
      docker,
      primary,
      containers,
      home || '/',
      workingDirectory,
      {
        ...spec.environment,
        BASH_ENV: `${TASK_DIR}/bash_env`,
        CIRCLE_WORKING_DIRECTORY: workingDirectory,
      },
      shell === 'bash' ? '/bin/bash -eo pipefail' : '/bin/sh -eo pipefail',
      { uid: Number(uid) || 0, gid: Number(gid) || 0 },
      limits,
    );
    env.remoteDocker = { ...remoteDocker, taskId: spec.taskId };
    await env.ensureDirs([workingDirectory, `${TASK_DIR}/steps`]);
    await env.writeFile(`${TASK_DIR}/bash_env`, '');
    return env;
  }

  private async ensureDirs(dirs: string[]): Promise<void> {
    const missing = dirs.filter((d) => !this.ensured.has(d));
    if (missing.length === 0) return;
    const r = await runSimple(this.primary, ['mkdir', '-p', '--', ...missing]);
    if (r.exitCode !== 0) throw new Error(`cannot create ${missing.join(', ')}: ${r.output.trim()}`);
    for (const d of missing) this.ensured.add(d);
  }

  exec(req: ExecRequest): ExecHandle {
    const id = randomUUID();
    let ending: 'timedout' | 'killed' | undefined;
    let settle: ((end: ExecEnd) => void) | undefined;
    let stream: Duplex | undefined;
    const timers = new Set<NodeJS.Timeout>();
    const later = (ms: number, fn: () => void) => {
      const t = setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms);
      timers.add(t);
    };
    const killer = (signal: 'TERM' | 'KILL') =>
      runSimple(this.primary, ['/bin/sh', '-c', KILL_SCRIPT, 'sh', id, signal], '0').catch(() => undefined);
    const kill = (why: 'timedout' | 'killed') => {
      if (ending) return;
      ending = why;
      void killer('TERM');
      later(KILL_GRACE_MS, () => void killer('KILL'));
      // the output did not end after everything was killed: stop waiting for it
      later(KILL_GRACE_MS * 3, () => {
        stream?.destroy();
        settle?.({ kind: why });
      });
    };
    let watchdog: NodeJS.Timeout | undefined;
    const armWatchdog = () => {
      if (!req.noOutputTimeoutMs || ending) return;
      if (watchdog) clearTimeout(watchdog);
      watchdog = setTimeout(() => kill('timedout'), req.noOutputTimeoutMs);
    };
    const decoders = { out: new StringDecoder('utf8'), err: new StringDecoder('utf8') };
    const demux = new DemuxWritable((name, chunk) => {
      armWatchdog();
      const text = decoders[name].write(chunk);
      return text ? req.onOutput(name, text) : undefined;
    });
    const endOutput = async () => {
      // the frames already read are all passed on (some may wait on backpressure) before the decoders end
      await new Promise<void>((resolve) => demux.end(() => resolve()));
      for (const name of ['out', 'err'] as const) {
        const rest = decoders[name].end();
        if (rest) await req.onOutput(name, rest);
      }
    };
    const onKill = () => kill('killed');
    this.live.add(onKill);

    const done = (async (): Promise<ExecEnd> => {
      try {
        await this.ensureDirs([req.cwd]);
      } catch (err) {
        return { kind: 'spawn_error', message: (err as Error).message };
      }
      if (ending) return { kind: ending };
      let exec: Docker.Exec;
      try {
        exec = await this.primary.exec({
          Cmd: req.argv,
          Env: [...Object.entries(req.env).map(([k, v]) => `${k}=${v}`), `TORUS_EXEC_ID=${id}`],
          WorkingDir: req.cwd,
          AttachStdout: true,
          AttachStderr: true,
        });
        stream = (await exec.start({ hijack: true, stdin: false })) as Duplex;
      } catch (err) {
        return { kind: 'spawn_error', message: await this.explainFailure(daemonMessage(err)) };
      }
      // killed while the exec was being created: the killer may have run before the process existed
      if (ending) {
        void killer('TERM');
        later(KILL_GRACE_MS, () => void killer('KILL'));
      }
      // piped, so a step printing faster than the server takes its output waits (backpressure)
      stream.pipe(demux, { end: false });
      armWatchdog();
      const s = stream;
      const end = await new Promise<ExecEnd | 'ended'>((resolve) => {
        settle = resolve;
        s.once('end', () => resolve('ended'));
        s.once('close', () => resolve('ended'));
        s.once('error', () => resolve('ended'));
        // the main process may exit while a child it left holds the output open
        const poll = () =>
          later(EXEC_POLL_MS, () => {
            exec.inspect().then(
              (info) => {
                if (info.Running) return poll();
                later(PIPE_DRAIN_MS, () => {
                  void killer('KILL');
                  s.destroy();
                  resolve('ended');
                });
              },
              () => poll(),
            );
          });
        poll();
      });
      if (watchdog) clearTimeout(watchdog);
      for (const t of timers) clearTimeout(t);
      await endOutput();
      if (ending) return { kind: ending };
      if (end !== 'ended') return end;
      let info;
      try {
        info = await exec.inspect();
      } catch (e) {
        return { kind: 'spawn_error', message: await this.explainFailure(daemonMessage(e)) };
      }
      const exitCode = info.ExitCode ?? -1;
      if (exitCode === 137) {
        const why = await this.oomMessage();
        if (why) await req.onOutput('err', `\n${why}\n`);
      }
      return { kind: 'exited', exitCode };
    })().finally(() => {
      this.live.delete(onKill);
      if (watchdog) clearTimeout(watchdog);
    });
    return { done, kill: onKill };
  }

  /** a step killed by SIGKILL: was it the container's memory limit? */
  private async oomMessage(): Promise<string | undefined> {
    try {
      const info = await this.primary.inspect();
      const kills = await this.oomKills();
      const more = kills > this.oomKillsSeen;
      this.oomKillsSeen = kills;
      if (info.State.OOMKilled || more) {
        return `The step was killed because the container ran out of memory (limit ${formatGB(this.limits.memoryBytes)}); use a larger resource_class or lower the job's memory use`;
      }
    } catch {
      // the container is gone: explainFailure on the next step says so
    }
    return undefined;
  }

  private oomKillsSeen = 0;

  /** how many processes the kernel killed at the container's memory limit (cgroup v1 and v2), read inside it */
  private async oomKills(): Promise<number> {
    const r = await runSimple(
      this.primary,
      [
        '/bin/sh',
        '-c',
        'sed -n "s/^oom_kill //p" /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null',
      ],
      '0',
    ).catch(() => ({ exitCode: 1, output: '' }));
    return Number(r.output.trim().split('\n')[0]) || 0;
  }

  private async explainFailure(message: string): Promise<string> {
    try {
      const info = await this.primary.inspect();
      if (!info.State.Running) {
        return (
          `the primary container is not running (exit code ${info.State.ExitCode}` +
          (info.State.OOMKilled
            ? `, killed because it ran out of memory: limit ${formatGB(this.limits.memoryBytes)}`
            : '') +
          `): ${message}`
        );
      }
    } catch {
      return `the primary container is gone: ${message}`;
    }
    return message;
  }

  async writeFile(pathInside: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const dir = path.posix.dirname(pathInside);
    await this.ensureDirs([dir]);
    const pack = tar.pack();
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    pack.entry(
      { name: path.posix.basename(pathInside), mode, uid: this.owner.uid, gid: this.owner.gid },
      body,
    );
    pack.finalize();
    await this.primary.putArchive(pack, { path: dir });
  }

  async readTar(baseDir: string, paths: string[]): Promise<NodeJS.ReadableStream> {
    const pack = tar.pack();
    const run = async () => {
      for (const p of paths) {
        const full = p.startsWith('/') ? path.posix.normalize(p) : path.posix.join(baseDir, p);
        const prefix = (
          p.startsWith('/') ? path.posix.normalize(p).slice(1) : path.posix.normalize(p)
        ).replace(/\/$/, '');
        const base = path.posix.basename(full);
        let archive: NodeJS.ReadableStream;
        try {
          archive = await this.primary.getArchive({ path: full });
        } catch (err) {
          throw new Error(`cannot read ${full}: ${daemonMessage(err)}`);
        }
        const rename = (name: string) =>
          name === base || name.startsWith(base + '/') ? prefix + name.slice(base.length) : name;
        await new Promise<void>((resolve, reject) => {
          const extract = tar.extract();
          extract.on('entry', (header, stream, next) => {
            header.name = rename(header.name);
            if (header.type === 'link' && header.linkname) header.linkname = rename(header.linkname);
            stream.on('error', reject);
            stream.pipe(pack.entry(header, (e) => (e ? reject(e) : next())));
          });
          extract.on('finish', resolve);
          extract.on('error', reject);
          archive.on('error', reject);
          archive.pipe(extract);
        });
      }
      pack.finalize();
    };
    run().catch((err: Error) => pack.destroy(err));
    return Promise.resolve(pack);
  }

  async writeTar(dir: string, input: NodeJS.ReadableStream): Promise<void> {
    await this.ensureDirs([dir]);
    const pack = tar.pack();
    const extract = tar.extract();
    // the files belong to the container's user, as if the job had written them; so do directories
    // the archive only implies (the engine would create those as root)
    const dirs = new Set<string>();
    extract.on('entry', (header, stream, next) => {
      header.uid = this.owner.uid;
      header.gid = this.owner.gid;
      const parts = header.name
        .replace(/^\.?\//, '')
        .replace(/\/$/, '')
        .split('/');
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join('/');
        if (dirs.has(parent)) continue;
        dirs.add(parent);
        pack.entry({
          name: parent,
          type: 'directory',
          mode: 0o755,
          uid: this.owner.uid,
          gid: this.owner.gid,
        });
      }
      if (header.type === 'directory') dirs.add(parts.join('/'));
      stream.pipe(pack.entry(header, (e) => (e ? pack.destroy(e) : next())));
    });
    extract.on('finish', () => pack.finalize());
    extract.on('error', (e: Error) => pack.destroy(e));
    input.on('error', (e: Error) => extract.destroy(e));
    input.pipe(extract);
    const failed = new Promise<never>((_, reject) => pack.once('error', reject));
    await Promise.race([this.primary.putArchive(pack, { path: dir }), failed]);
  }

  /**
   * `setup_remote_docker`: starts the task's Docker API proxy on the socket the primary container
   * sees and points the following steps' DOCKER_HOST at it (they read jobEnvironment afresh).
   * Throws with the message the job shows when the agent cannot offer it.
   */
  async setupRemoteDocker(): Promise<{ dockerHost: string; engine: string }> {
    const rd = this.remoteDocker;
    const dockerHost = `unix://${REMOTE_DOCKER_MOUNT}/docker.sock`;
    if (rd.proxy && rd.engine) return { dockerHost, engine: rd.engine };
    if (!rd.enabled) {
      throw new Error(
        "Remote Docker is not enabled on this agent. Its operator can enable it by starting the agent with TORUS_AGENT_REMOTE_DOCKER=1: the job's docker commands then use the agent's Docker engine through a proxy that keeps them inside the job's sandbox. Or run the job with a `machine:` executor, where Docker needs no setup.",
      );
    }
    const engineSocket = engineSocketOf(this.docker);
    if (!rd.dir || !engineSocket) {
      throw new Error(
        `Remote Docker needs the agent's Docker engine on a Unix socket of the agent's host (this agent uses ${engineAddress(this.docker)}); its operator can point DOCKER_HOST at a local engine, or run the job with a \`machine:\` executor`,
      );
    }
    const version = (await this.docker.version()) as Docker.DockerVersion & {
      Components?: { Name: string }[];
    };
    const podman = version.Components?.some((c) => /podman/i.test(c.Name));
    const engine = `${podman ? 'podman' : 'Docker engine'} ${version.Version} (API ${version.ApiVersion})`;
    const labels = remoteDockerLabels(rd.taskId);
    const proxy = new RemoteDockerProxy({
      engineSocket,
      labels,
      stamp: { [AGENT_PROCESS_LABEL]: agentProcessId() },
      limits: this.limits,
    });
    await proxy.listen(path.join(rd.dir, 'docker.sock'));
    rd.proxy = proxy;
    rd.engine = engine;
    this.jobEnvironment.DOCKER_HOST = dockerHost;
    // CircleCI's remote engine spoke TLS; this socket does not, and the CLI would try TLS on it
    delete this.jobEnvironment.DOCKER_TLS_VERIFY;
    delete this.jobEnvironment.DOCKER_CERT_PATH;
    return { dockerHost, engine };
  }

  async dispose(): Promise<void> {
    for (const k of [...this.live]) k();
    try {
      await removeContainers(this.containers);
    } finally {
      try {
        await this.disposeRemoteDocker();
      } finally {
        taskEnded(this.remoteDocker.taskId); // what could not be removed is the sweep's
      }
    }
  }

  /** whatever the job made through its proxy goes, whatever the outcome */
  private async disposeRemoteDocker(): Promise<void> {
    const rd = this.remoteDocker;
    if (!rd.dir) return;
    const errors: string[] = [];
    try {
      if (rd.proxy) {
        await rd.proxy.close();
        errors.push(
          ...(await removeRemoteDockerObjects(this.docker, remoteDockerLabels(rd.taskId), rd.proxy.tags)),
        );
      }
    } finally {
      await removeSocketDir(rd.dir);
    }
    if (errors.length)
      throw new Error(`could not remove what the job made with remote Docker: ${errors.join('; ')}`);
  }
}

/** runs a short command in the container and collects its output */
async function runSimple(
  container: Docker.Container,
  argv: string[],
  user?: string,
): Promise<{ exitCode: number; output: string }> {
  const exec = await container.exec({ Cmd: argv, AttachStdout: true, AttachStderr: true, User: user });
  const stream = (await exec.start({ hijack: true, stdin: false })) as Duplex;
  const chunks: Buffer[] = [];
  const collect = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  container.modem.demuxStream(stream, collect, collect);
  await new Promise<void>((resolve) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', () => resolve());
  });
  const info = await exec.inspect();
  return { exitCode: info.ExitCode ?? -1, output: Buffer.concat(chunks).toString('utf8') };
}

/**
 * Docker's multiplexed exec stream (8-byte frame headers: stream type, 3 zero bytes, length) split
 * into stdout and stderr, one frame at a time, each passed on before the next is read: unlike
 * docker-modem's demuxStream, a slow consumer slows the stream down instead of being buffered for.
 */
class DemuxWritable extends Writable {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (stream: 'out' | 'err', data: Buffer) => void | Promise<void>) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    void this.drainFrames().then(
      () => cb(),
      (err: unknown) => cb(err as Error),
    );
  }

  private async drainFrames(): Promise<void> {
    while (this.pending.length >= 8) {
      const type = this.pending[0];
      const length = this.pending.readUInt32BE(4);
      if (type !== 0 && type !== 1 && type !== 2) {
        // not multiplexed (a TTY exec): everything is stdout
        const all = this.pending;
        this.pending = Buffer.alloc(0);
        await this.onFrame('out', all);
        return;
      }
      if (this.pending.length < 8 + length) return;
      const data = this.pending.subarray(8, 8 + length);
      this.pending = this.pending.subarray(8 + length);
      if (type !== 0) await this.onFrame(type === 2 ? 'err' : 'out', data);
    }
  }
}
