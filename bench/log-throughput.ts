// Log throughput: one step printing 1 GiB (BENCH_LOG_MB to change it) of 100-character lines on the
// host executor, through a real `torus server` process and its local agent (a child of the server):
// MB/s from the step's start to its output stored (the step seen ended through the API, which the
// server records in the same transaction as the output object's key), and the resident memory
// growth of the agent and the server above idle while it streams (VmRSS sampled every 200 ms).
// The server uses PGlite (the default); BENCH_DATABASE_URL=postgres://… runs it on a fresh database
// created there instead (and dropped after).
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import pg from 'pg';
import { api, startTorusServer } from '../test/harness/torus.js';
import { waitFor } from '../test/harness/net.js';
import { createProjectViaApi, triggerPipelineViaApi } from './lib.js';

const MB = Number(process.env.BENCH_LOG_MB ?? 1024);
const SAMPLE_MS = 200;
/** how often the job is read while the step prints (each read is work for the server measured) */
const POLL_MS = 1_000;
const MIB = 1024 * 1024;
/**
 * what the step prints: lines of 100 bytes, by `yes` (the cheapest printer at hand: the step's own
 * CPU time is taken from the two processes measured on a 2-core machine); `yes` ends by SIGPIPE
 */
const PRINTED_BYTES = MB * MIB + Math.floor((MB * MIB) / 100);

function config(job: string, command: string): string {
  return `version: 2.1
jobs:
  ${job}:
    machine: true
    steps:
      - run:
          name: ${job}
          command: |
            ${command}
workflows:
  w:
    jobs: [${job}]
`;
}

export interface LogThroughputFigures {
  /** the server's database */
  database: 'PGlite' | 'PostgreSQL';
  /** bytes the step printed */
  bytes: number;
  /** step start → step seen ended with its output stored */
  seconds: number;
  mbPerSecond: number;
  /** size of the stored output object (JSON lines) */
  storedBytes: number;
  agentIdleMb: number;
  agentPeakMb: number;
  serverIdleMb: number;
  serverPeakMb: number;
  /** CPU time (user + system) each process spent from the pipeline's trigger to the step's end */
  agentCpuSeconds: number;
  serverCpuSeconds: number;
}

/** user + system CPU seconds of a process so far (/proc/<pid>/stat, in clock ticks of 1/100 s) */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** the server's local agent: its child running `torus agent` */
function agentPid(serverPid: number): number | undefined {
  for (const t of readdirSync(`/proc/${serverPid}/task`)) {
    const kids = readFileSync(`/proc/${serverPid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean);
    for (const k of kids) {
      const cmd = readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('agent')) return Number(k);
    }
  }
  return undefined;
}

interface V11Job {
  status: string;
  steps: Array<{
    actions: Array<{
      index: number;
      step: number;
      status: string;
      start_time: string | null;
      end_time: string | null;
    }>;
  }>;
}

/** a new database on the PostgreSQL server of `base`, and how to drop it */
async function freshDatabase(base: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `bench_${randomBytes(6).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE ${name}`) };
}

export async function benchLogThroughput(): Promise<LogThroughputFigures> {
  const base = process.env.BENCH_DATABASE_URL;
  const database = base ? await freshDatabase(base) : undefined;
  const server = await startTorusServer({
    localAgents: 1,
    ...(database ? { env: { TORUS_DATABASE_URL: database.url } } : {}),
  }).catch(async (err: unknown) => {
    await database?.drop();
    throw err;
  });
  const stopSampling: Array<() => void> = [];
  try {
    const serverPid = server.proc.pid!;
    const project = (name: string, command: string) =>
      createProjectViaApi(server, name, config(name, command));
    const warmSlug = await project('warm', 'echo warm');
    const slug = await project('loud', `set +o pipefail; yes ${'a'.repeat(99)} | head -c ${PRINTED_BYTES}`);

    // one small job first, so both processes have loaded the code paths they use; then idle
    const warm = await triggerPipelineViaApi(server, warmSlug, { pollMs: 20 });
    await waitFor(
      async () =>
        (await api<V11Job>(server.url, 'GET', `/api/v1.1/project/${warmSlug}/${warm.jobNumber}`)).body
          .status === 'success',
      60_000,
      50,
    );
    const agent = await waitFor(() => agentPid(serverPid) ?? false, 30_000, 50);
    await new Promise((r) => setTimeout(r, 2_000));
    const idle = { agent: [] as number[], server: [] as number[] };
    for (let i = 0; i < 5; i++) {
      idle.agent.push(rssMb(agent));
      idle.server.push(rssMb(serverPid));
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
    }
    const agentIdleMb = Math.max(...idle.agent);
    const serverIdleMb = Math.max(...idle.server);

    let agentPeakMb = agentIdleMb;
    let serverPeakMb = serverIdleMb;
    const timer = setInterval(() => {
      agentPeakMb = Math.max(agentPeakMb, rssMb(agent) || 0);
      serverPeakMb = Math.max(serverPeakMb, rssMb(serverPid) || 0);
    }, SAMPLE_MS);
    stopSampling.push(() => clearInterval(timer));

    const cpuBefore = { agent: cpuSeconds(agent), server: cpuSeconds(serverPid) };
    const loud = await triggerPipelineViaApi(server, slug, { pollMs: 20 });
    let startedAt: number | undefined;
    let endedAt: number | undefined;
    let status = '';
    for (;;) {
      const job = (await api<V11Job>(server.url, 'GET', `/api/v1.1/project/${slug}/${loud.jobNumber}`)).body;
      const action = job.steps?.flatMap((s) => s.actions).find((a) => a.step === 2);
      if (action?.start_time) startedAt ??= new Date(action.start_time).getTime();
      if (action && action.status !== 'running') {
        // the server's record of the step's end: polling seldom then costs no precision
        endedAt = action.end_time ? new Date(action.end_time).getTime() : Date.now();
        status = action.status;
        break;
      }
      if (['failed', 'infrastructure_fail', 'canceled', 'timedout'].includes(job.status))
        throw new Error(`the job ended ${job.status} before step 2 ended:\n${server.output()}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    clearInterval(timer);
    const agentCpuSeconds = cpuSeconds(agent) - cpuBefore.agent;
    const serverCpuSeconds = cpuSeconds(serverPid) - cpuBefore.server;
    if (status !== 'success') throw new Error(`the printing step ended ${status}`);

    const storedBytes = storedSize(server.dataDir);
    const bytes = PRINTED_BYTES;
    const seconds = (endedAt - startedAt!) / 1000;
    return {
      database: database ? 'PostgreSQL' : 'PGlite',
      bytes,
      seconds,
      mbPerSecond: bytes / 1e6 / seconds,
      storedBytes,
      agentIdleMb,
      agentPeakMb,
      serverIdleMb,
      serverPeakMb,
      agentCpuSeconds,
      serverCpuSeconds,
    };
  } finally {
    for (const s of stopSampling) s();
    await server.kill('SIGTERM');
    await database?.drop();
    if (!process.env.BENCH_KEEP) rmSync(server.dataDir, { recursive: true, force: true });
    else console.log('kept', server.dataDir);
  }
}

/** the size of the largest step's output objects under the data directory (output/<task>/<step>/…) */
function storedSize(dataDir: string): number {
  const perStep = new Map<string, number>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (p.includes('/output/')) perStep.set(dir, (perStep.get(dir) ?? 0) + statSize(p));
    }
  };
  walk(dataDir);
  return Math.max(0, ...perStep.values());
}

function statSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

export function printLogThroughput(r: LogThroughputFigures): void {
  const agentGrowth = r.agentPeakMb - r.agentIdleMb;
  const serverGrowth = r.serverPeakMb - r.serverIdleMb;
  console.log(
    `log throughput: ${(r.bytes / 1e6).toFixed(0)} MB printed, stored in ${r.seconds.toFixed(1)} s = ${r.mbPerSecond.toFixed(1)} MB/s ` +
      `(target ≥ 100 MB/s, ${(r.mbPerSecond / 100).toFixed(2)}× target); stored output ${(r.storedBytes / 1e6).toFixed(0)} MB; ` +
      `server on ${r.database}`,
  );
  console.log(
    `log memory growth above idle: agent ${agentGrowth.toFixed(0)} MB (idle ${r.agentIdleMb.toFixed(0)}, peak ${r.agentPeakMb.toFixed(0)}), ` +
      `server ${serverGrowth.toFixed(0)} MB (idle ${r.serverIdleMb.toFixed(0)}, peak ${r.serverPeakMb.toFixed(0)}) ` +
      `(target < 150 MB each, ${(Math.max(agentGrowth, serverGrowth) / 150).toFixed(2)}× target)`,
  );
  const gb = r.bytes / 1e9;
  console.log(
    `log CPU per GB printed: agent ${(r.agentCpuSeconds / gb).toFixed(1)} s, server ${(r.serverCpuSeconds / gb).toFixed(1)} s`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printLogThroughput(await benchLogThroughput());
  process.exit(0);
}
