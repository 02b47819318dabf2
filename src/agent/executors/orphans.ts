// Orphans in the Docker engine: what a Docker-executor task left behind because the agent process
// running it died mid-task (SIGKILL, out of memory, a crash, a reboot) and never disposed of it: the
// task's containers and, with setup_remote_docker, the containers, networks, volumes and images the
// job made through its proxy, and the proxy's socket directory. Each of them names the agent
// process that made it (AGENT_PROCESS_LABEL: host, boot, pid, the pid's start time, and a nonce for
// this instance of the module). A sweep removes what belongs to a gone agent process of this host,
// and what this one made for a task it no longer runs. Several agents may share one engine: objects
// of live agent processes, of other hosts' agents, and without the label are never touched.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { removeRemoteDockerObjects } from './remote-docker-proxy.js';

/** on every container, network, volume and image a Docker-executor task makes: the agent process that made it */
export const AGENT_PROCESS_LABEL = 'io.torus.agent-process';
/** next to a remote Docker socket directory `<id>`: `<id>.owner`, the owner and task as JSON */
const OWNER_SUFFIX = '.owner';

function readProc(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // no procfs (or the process is gone): the caller decides what that means
    return undefined;
  }
}

/** a process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid, it names one process */
function startTicks(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // the command name (field 2) may hold spaces and parentheses: count from the last ')'
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

const BOOT_ID = readProc('/proc/sys/kernel/random/boot_id')?.trim() ?? 'unknown';
const HOST = hostname();
const SELF = [HOST, BOOT_ID, process.pid, startTicks(process.pid) ?? 'unknown', randomUUID()].join('/');

/** the AGENT_PROCESS_LABEL value of this process */
export function agentProcessId(): string {
  return SELF;
}

/** tasks this process has objects in the engine for (from the start of prepare to the end of dispose) */
const liveTasks = new Set<string>();

export function taskStarted(taskId: string): void {
  liveTasks.add(taskId);
}

export function taskEnded(taskId: string): void {
  liveTasks.delete(taskId);
}

/** True when `owner` names an agent process of this host that no longer runs. */
export function agentProcessGone(owner: string): boolean {
  const [host, boot, pidText, ticks, nonce, ...rest] = owner.split('/');
  if (rest.length || !nonce || host !== HOST || BOOT_ID === 'unknown') return false;
  // an agent process does not outlive a reboot
  if (boot !== BOOT_ID) return true;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const now = startTicks(pid);
  if (now !== undefined) return now !== ticks; // the pid was reused by another process
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** an object (or socket directory) made for `taskId` by `owner` is left over */
function isOrphan(owner: string, taskId: string): boolean {
  if (owner === SELF) return !liveTasks.has(taskId);
  return agentProcessGone(owner);
}

export interface SweepResult {
  /** the tasks whose leftovers were removed, as `<taskId>` */
  tasks: string[];
  /** what could not be removed */
  errors: string[];
}

/** Removes the Docker objects of every task whose agent process is gone (see the module comment). */
export async function sweepEngineOrphans(docker: Docker, taskLabel: string): Promise<SweepResult> {
  const filters = { label: [AGENT_PROCESS_LABEL] };
  const [containers, networks, volumes, images] = await Promise.all([
    docker.listContainers({ all: true, filters }),
    docker.listNetworks({ filters }),
    docker.listVolumes({ filters }).then((r) => r.Volumes ?? []),
    docker.listImages({ filters }),
  ]);
  const owners = new Map<string, { owner: string; taskId: string }>();
  for (const labels of [
    ...containers.map((c) => c.Labels),
    ...networks.map((n) => n.Labels),
    ...volumes.map((v) => v.Labels),
    ...images.map((i) => i.Labels),
  ]) {
    const owner = labels?.[AGENT_PROCESS_LABEL];
    const taskId = labels?.[taskLabel];
    if (owner && taskId && isOrphan(owner, taskId)) owners.set(`${owner}\n${taskId}`, { owner, taskId });
  }
  const result: SweepResult = { tasks: [], errors: [] };
  for (const { owner, taskId } of owners.values()) {
    const errors = await removeRemoteDockerObjects(
      docker,
      { [taskLabel]: taskId, [AGENT_PROCESS_LABEL]: owner },
      [],
    );
    result.tasks.push(taskId);
    result.errors.push(...errors.map((e) => `task ${taskId}: ${e}`));
  }
  return result;
}

/** records who made a remote Docker socket directory, for sweepSocketDirOrphans */
export async function recordSocketDirOwner(dir: string, taskId: string): Promise<void> {
  await writeFile(dir + OWNER_SUFFIX, JSON.stringify({ owner: SELF, taskId }), { mode: 0o600 });
}

export async function removeSocketDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await rm(dir + OWNER_SUFFIX, { force: true });
}

/** Removes the remote Docker socket directories under `root` whose agent process is gone. */
export async function sweepSocketDirOrphans(root: string): Promise<SweepResult> {
  const result: SweepResult = { tasks: [], errors: [] };
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    // no remote Docker task ever ran here: nothing to sweep
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result;
    throw err;
  }
  for (const name of names.filter((n) => n.endsWith(OWNER_SUFFIX))) {
    const dir = path.join(root, name.slice(0, -OWNER_SUFFIX.length));
    let record: { owner?: unknown; taskId?: unknown };
    try {
      record = JSON.parse(await readFile(path.join(root, name), 'utf8')) as typeof record;
    } catch (err) {
      // removed by its task meanwhile, or half-written by one starting: not an orphan we can judge
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
      continue;
    }
    if (typeof record.owner !== 'string' || typeof record.taskId !== 'string') continue;
    if (!isOrphan(record.owner, record.taskId)) continue;
    try {
      await removeSocketDir(dir);
      result.tasks.push(record.taskId);
    } catch (err) {
      result.errors.push(`${dir}: ${(err as Error).message}`);
    }
  }
  return result;
}
