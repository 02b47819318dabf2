// The real `torus agent --local` process whose server goes away mid-task: it takes no new work,
// finishes (or drops) the task in hand, and exits — never lingers as an orphan. Also: SIGTERM mid-task.
// And an agent killed (SIGKILL) mid-task leaves no ssh-agent behind; what its Docker task left in the
// engine (containers, and what the job made with setup_remote_docker) the next agent removes.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, requireDocker } from '../../test/harness/docker.js';
import { buildDockerCliImage, staticDockerCli } from '../../test/harness/docker-cli.js';
import { waitFor } from '../../test/harness/net.js';
import { dockerAt } from '../../test/harness/podman.js';
import { requireSshTools, sshAgentsUnder } from '../../test/harness/ssh.js';
import type { CompleteRequest, TaskSpec } from '../scheduler/protocol.js';
import { AGENT_API_PREFIX } from '../scheduler/protocol.js';
import { TASK_LABEL } from './executors/index.js';
import { parseAgentBody, processesMatching, runStep, taskSpec } from './testing.js';

const TOKEN = 'orphan-test-token';
const ENTRY = fileURLToPath(new URL('../../bin/torus.js', import.meta.url));
const LEASE_MS = 2_000;
const HEARTBEAT_MS = 200;

interface FakeTask {
  leaseId: string;
  lost: boolean;
  stepStarts: number[];
  output: string;
  complete?: CompleteRequest;
}

/** The agent protocol's server side, in memory: one queue, leases, and a switch to lose a lease. */
class FakeServer {
  queue: TaskSpec[] = [];
  readonly tasks = new Map<string, FakeTask>();
  claims = 0;
  /** task requests are received but never answered (a hung server) */
  hang = false;
  private server: Server | undefined;
  private port = 0;
  url = '';

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    const addr = server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    this.url = `http://127.0.0.1:${this.port}`;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    const body = parseAgentBody(Buffer.concat(parts), req.headers);
    const send = (status: number, json?: unknown) => {
      res.writeHead(status, json ? { 'content-type': 'application/json' } : {});
      res.end(json ? JSON.stringify(json) : undefined);
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { message: 'Invalid token' });
    const url = req.url ?? '';
    if (url === `${AGENT_API_PREFIX}/claim`) {
      this.claims += 1;
      const spec = this.queue.shift();
      if (!spec) {
        await new Promise((r) => setTimeout(r, Math.min(Number(body.waitMs), 100)));
        return send(204);
      }
      const task: FakeTask = { leaseId: `lease-${spec.taskId}`, lost: false, stepStarts: [], output: '' };
      this.tasks.set(spec.taskId, task);
      return send(200, { task: spec, leaseId: task.leaseId, leaseMs: LEASE_MS, heartbeatMs: HEARTBEAT_MS });
    }
    const m =
      /^\/api\/agent\/v1\/tasks\/([^/]+)\/(heartbeat|complete|steps\/(\d+)\/(start|output|end|report))$/.exec(
        url,
      );
    const task = m ? this.tasks.get(decodeURIComponent(m[1] ?? '')) : undefined;
    if (!m || !task) return send(404, { message: 'not found' });
    if (this.hang) return; // never answers
    if (task.lost || body.leaseId !== task.leaseId) return send(409, { message: 'lease lost' });
    switch (m[4] ?? m[2] ?? '') {
      case 'heartbeat':
        return send(200, { cancel: false });
      case 'start':
        task.stepStarts.push(Number(m[3]));
        return send(204);
      case 'output':
        for (const c of body.chunks as Array<{ data: string }>) task.output += c.data;
        return send(204);
      case 'end':
        return send(204);
      case 'report':
        task.stepStarts.push(Number(m[3]));
        for (const c of body.chunks as Array<{ data: string }>) task.output += c.data;
        return send(204);
      case 'complete':
        task.complete = body as unknown as CompleteRequest;
        return send(204);
      default:
        return send(404, { message: 'not found' });
    }
  }
}

interface Agent {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  log: () => string;
}

let workRoot: string;
const agents: Agent[] = [];
const servers: FakeServer[] = [];

beforeAll(() => {
  workRoot = mkdtempSync(path.join(tmpdir(), 'torus-agent-orphan-'));
});

afterEach(async () => {
  for (const a of agents.splice(0)) {
    if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    await a.exited;
  }
  for (const s of servers.splice(0)) await s.stop();
});

afterAll(() => {
  rmSync(workRoot, { recursive: true, force: true });
});

async function startServer(): Promise<FakeServer> {
  const s = new FakeServer();
  await s.start();
  servers.push(s);
  return s;
}

/** starts `torus agent --local` the way the local launcher does: an IPC channel to this process */
function startLocalAgent(
  serverUrl: string,
  name: string,
  opts: { resourceClass?: string; env?: Record<string, string> } = {},
): Agent {
  const child = spawn(
    process.execPath,
    [
      ENTRY,
      'agent',
      '--server',
      serverUrl,
      '--resource-class',
      opts.resourceClass ?? 'machine:medium',
      '--sandbox',
      'auto',
      '--name',
      name,
      '--work-dir',
      path.join(workRoot, name),
      '--local',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TORUS_AGENT_TOKEN: TOKEN,
        TORUS_LOG_LEVEL: 'debug',
        ...opts.env,
      },
    },
  );
  let log = '';
  child.stdout?.on('data', (b: Buffer) => (log += String(b)));
  child.stderr?.on('data', (b: Buffer) => (log += String(b)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const agent = { child, exited, log: () => log };
  agents.push(agent);
  return agent;
}

/** resolves to the exit, or fails with the agent's log when it does not exit in time */
async function exitWithin(agent: Agent, ms: number): Promise<{ code: number | null; at: number }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the agent did not exit within ${ms} ms; its log:\n${agent.log()}`)),
      ms,
    );
  });
  try {
    return await Promise.race([agent.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** a task whose config step prints `started`, sleeps, prints `finished` */
async function runningTask(
  server: FakeServer,
  marker: string,
  seconds: number,
): Promise<{ spec: TaskSpec; task: FakeTask }> {
  const spec = taskSpec([
    runStep(`echo started; sleep ${seconds}.${marker}; echo finished`, { name: 'Slow' }),
  ]);
  server.queue.push(spec);
  const task = await waitFor(() => {
    const t = server.tasks.get(spec.taskId);
    return t?.output.includes('started') ? t : undefined;
  }, 20_000);
  return { spec, task };
}

describe('torus agent --local whose server goes away mid-task', { timeout: 40_000 }, () => {
  it('finishes the task, reports it, takes no new work and exits when the server stays up', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'keep');
    const { task } = await runningTask(server, '4101', 2);
    agent.child.disconnect();
    const claimsAtDisconnect = server.claims;
    server.queue.push(taskSpec([runStep('echo must not run')]));
    const exit = await exitWithin(agent, 10_000);
    expect(exit.code).toBe(0);
    expect(task.complete?.status).toBe('success');
    expect(task.output.endsWith('started\nfinished\n')).toBe(true);
    expect(server.claims).toBe(claimsAtDisconnect);
    expect(server.queue).toHaveLength(1);
  });

  it('drops the task and exits when the restarted server answers 409', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'lost');
    const { task } = await runningTask(server, '4102', 30);
    agent.child.disconnect();
    task.lost = true;
    const exit = await exitWithin(agent, 5_000);
    expect(exit.code).toBe(0);
    expect(task.complete).toBeUndefined();
    await waitFor(() => processesMatching('sleep 30.4102').length === 0, 3_000);
  });

  it('gives up when the lease would have expired and exits when the server is gone for good', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'gone');
    const { task } = await runningTask(server, '4103', 1);
    agent.child.disconnect();
    await server.stop();
    const stoppedAt = Date.now();
    const exit = await exitWithin(agent, 1_000 + LEASE_MS + 5_000);
    expect(exit.code).toBe(0);
    expect(exit.at - stoppedAt).toBeGreaterThanOrEqual(900); // it finished the step first
    expect(task.complete).toBeUndefined();
  });

  it.each([
    ['its parent process is killed with SIGKILL', false],
    ['its parent is killed but the IPC channel stays open (held by another process)', true],
  ])('finishes the task and exits when %s', async (_name, leak) => {
    const server = await startServer();
    // a stand-in for `torus server`: starts the agent the way the local launcher does, then is killed
    const launcher = `
      const { spawn } = require('node:child_process');
      const agent = spawn(process.execPath, JSON.parse(process.argv[1]), { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], env: JSON.parse(process.argv[2]) });
      if (process.argv[3] === 'leak') {
        // a long-lived process that holds this side of the agent's channel open
        const holder = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', agent.channel.fd] });
        console.log(agent.pid, holder.pid);
      } else console.log(agent.pid);
      setInterval(() => undefined, 1000);
    `;
    const args = [
      ENTRY,
      'agent',
      '--server',
      server.url,
      '--resource-class',
      'machine:medium',
      '--sandbox',
      'auto',
      '--name',
      'killed',
      '--work-dir',
      path.join(workRoot, 'killed'),
      '--local',
    ];
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, TORUS_AGENT_TOKEN: TOKEN };
    const parent = spawn(
      process.execPath,
      ['-e', launcher, JSON.stringify(args), JSON.stringify(env), leak ? 'leak' : ''],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let pidText = '';
    parent.stdout?.on('data', (b: Buffer) => (pidText += String(b)));
    const [agentPid, holderPid] = await waitFor(
      () => (pidText.includes('\n') ? pidText.trim().split(' ').map(Number) : undefined),
      10_000,
    );
    if (agentPid === undefined) throw new Error(`no agent pid in ${pidText}`);
    const alive = () => {
      try {
        process.kill(agentPid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      const { task } = await runningTask(server, '4109', 2);
      parent.kill('SIGKILL');
      server.queue.push(taskSpec([runStep('echo must not run')]));
      await waitFor(() => !alive(), 10_000);
      expect(task.complete?.status).toBe('success');
      expect(task.output.endsWith('started\nfinished\n')).toBe(true);
      expect(server.queue).toHaveLength(1);
    } finally {
      if (alive()) process.kill(agentPid, 'SIGKILL');
      parent.kill('SIGKILL');
      if (holderPid) process.kill(holderPid, 'SIGKILL');
    }
  });

  it('finishes and reports through a server restart that honours the lease, then exits', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'restart');
    const { task } = await runningTask(server, '4106', 2);
    agent.child.disconnect();
    await server.stop();
    await new Promise((r) => setTimeout(r, LEASE_MS / 2));
    await server.start();
    const exit = await exitWithin(agent, 10_000);
    expect(exit.code).toBe(0);
    expect(task.complete?.status).toBe('success');
  });

  it('drops the task and exits when the server comes back after the lease expired (409)', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'late');
    const { task } = await runningTask(server, '4107', 1);
    agent.child.disconnect();
    await server.stop();
    task.lost = true;
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    await server.start();
    const exit = await exitWithin(agent, 10_000);
    expect(exit.code).toBe(0);
    expect(task.complete).toBeUndefined();
  });

  it('gives up and exits when the server goes for good while the step runs on past the lease', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'gone-long');
    await runningTask(server, '4104', 30);
    agent.child.disconnect();
    await server.stop();
    const exit = await exitWithin(agent, LEASE_MS + 5_000);
    expect(exit.code).toBe(0);
    await waitFor(() => processesMatching('sleep 30.4104').length === 0, 3_000);
  });
});

describe('torus agent --local whose server is gone before it is up', { timeout: 30_000 }, () => {
  it('takes no work and exits at once', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'early');
    agent.child.disconnect(); // the server died while the agent was still loading
    server.queue.push(taskSpec([runStep('echo must not run')]));
    const exit = await exitWithin(agent, 10_000);
    expect(exit.code).toBe(0);
    expect(server.queue).toHaveLength(1);
  });
});

describe('torus agent told to stop (SIGTERM) mid-task', { timeout: 30_000 }, () => {
  it('stops the step, reports the task and exits promptly', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'term');
    const { task } = await runningTask(server, '4105', 30);
    const at = Date.now();
    agent.child.kill('SIGTERM');
    const exit = await exitWithin(agent, 5_000);
    expect(exit.code).toBe(0);
    expect(exit.at - at).toBeLessThan(4_000);
    expect(task.complete?.status).toBe('infrastructure_fail');
    await waitFor(() => processesMatching('sleep 30.4105').length === 0, 3_000);
  });

  it('exits within its shutdown deadline even when the server hangs', async () => {
    const server = await startServer();
    const agent = startLocalAgent(server.url, 'hung');
    await runningTask(server, '4108', 30);
    server.hang = true;
    const at = Date.now();
    agent.child.kill('SIGTERM');
    const exit = await exitWithin(agent, 12_000);
    expect(exit.code).toBe(0);
    expect(exit.at - at).toBeLessThan(8_000); // 5 s to report, not the 15 s request timeout
    await waitFor(() => processesMatching('sleep 30.4108').length === 0, 3_000);
  });
});

const hasSsh = requireSshTools('the ssh-agent of a killed agent');

describe.runIf(hasSsh)(
  'torus agent killed (SIGKILL) mid-task on the host executor',
  { timeout: 30_000 },
  () => {
    it("leaves no ssh-agent of the task's behind", async () => {
      const server = await startServer();
      const agent = startLocalAgent(server.url, 'ssh-killed');
      await runningTask(server, '4110', 30);
      const dir = path.join(workRoot, 'ssh-killed');
      expect(sshAgentsUnder(dir)).toHaveLength(1);
      agent.child.kill('SIGKILL');
      await agent.exited;
      await waitFor(() => sshAgentsUnder(dir).length === 0, 5_000);
      await waitFor(() => processesMatching('sleep 30.4110').length === 0, 5_000);
    });
  },
);

const hasDocker = requireDocker('sweeping what a killed agent left in the Docker engine');
const cli = hasDocker ? staticDockerCli('sweeping what a killed agent left in the Docker engine') : undefined;

describe.runIf(hasDocker && cli)(
  'torus agent killed (SIGKILL) mid-task with remote Docker',
  { timeout: 120_000 },
  () => {
    const host = process.env.TORUS_TEST_DOCKER_HOST ?? '';
    const docker = dockerAt(host);
    const image = `torus-orphan-test/docker-cli:${process.pid}`;
    let socketDir: string;

    beforeAll(async () => {
      socketDir = mkdtempSync(path.join(tmpdir(), 'torus-orphan-rd-'));
      await buildDockerCliImage(docker, cli!, image);
    });
    afterAll(async () => {
      await docker.getImage(image).remove({ force: true });
      rmSync(socketDir, { recursive: true, force: true });
    });

    it('leaves its containers, volumes and networks, which the next agent on the host removes as it starts', async () => {
      const server = await startServer();
      const env = {
        DOCKER_HOST: host,
        TORUS_AGENT_REMOTE_DOCKER: '1',
        TORUS_AGENT_REMOTE_DOCKER_DIR: socketDir,
      };
      const killed = startLocalAgent(server.url, 'rd-killed', { resourceClass: 'docker:small', env });
      const spec = taskSpec(
        [
          { type: 'setup_remote_docker', name: 'Setup a remote Docker engine', when: 'on_success', args: {} },
          runStep(
            [
              'docker volume create "job-vol-$$" >/dev/null',
              'docker network create "job-net-$$" >/dev/null',
              `docker run -d --network none ${BUSYBOX_IMAGE} sleep 300 >/dev/null`,
              'echo started',
              'sleep 300',
            ].join('\n'),
            { name: 'use remote docker' },
          ),
        ],
        { executor: { type: 'docker', images: [{ image, environment: {} }] }, resourceClass: 'small' },
      );
      server.queue.push(spec);
      await waitFor(() => server.tasks.get(spec.taskId)?.output.includes('started'), 60_000);
      killed.child.kill('SIGKILL');
      await killed.exited;

      const label = [`${TASK_LABEL}=${spec.taskId}`];
      const left = async () => [
        (await docker.listContainers({ all: true, filters: { label } })).length,
        ((await docker.listVolumes({ filters: { label } })).Volumes ?? []).length,
        (await docker.listNetworks({ filters: { label } })).length,
        readdirSync(socketDir).length,
      ];
      // the primary container and the job's, its volume and network, the socket directory and its owner record
      expect(await left()).toEqual([2, 1, 1, 2]);

      // the next agent on the host sweeps at its start, before it has any work
      const next = startLocalAgent(server.url, 'rd-next', { resourceClass: 'docker:small', env });
      await waitFor(async () => (await left()).every((n) => n === 0), 30_000);
      const other = taskSpec([runStep('echo next')], {
        executor: { type: 'docker', images: [{ image: BUSYBOX_IMAGE, environment: {} }] },
        resourceClass: 'small',
      });
      server.queue.push(other);
      await waitFor(() => server.tasks.get(other.taskId)?.complete, 30_000);
      expect(server.tasks.get(other.taskId)?.complete?.status).toBe('success');
      next.child.kill('SIGTERM');
      await next.exited;
    });
  },
);
