// Docker job start: task claimed → first step running, for a one-step `docker:` job whose image is
// already in the engine (the busybox test image), over 30 jobs, through the real server, scheduler
// and a local agent driving a real dockerd (our own, unless DOCKER_HOST is set).
//
// "Claimed" is the task's started_at, set by the server in the claim statement. "Running" is
// measured twice, both on the agent: the step's started_at (the agent is about to exec the step in
// the primary container) and the time of the step's first output chunk (the step's process printed,
// so it certainly runs). Both clocks are this machine's. The span covers the executor's prepare
// (image check, container create + start), steps 0 and 1, and the exec of step 2.
import { readObjectText } from '../src/storage/index.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage, startDockerd } from '../test/harness/docker.js';
import { fmt, makeGitRepo, percentile, runPipeline, withServer } from './lib.js';

const JOBS = Number(process.env.BENCH_DOCKER_JOBS ?? 30);
const WARMUP = 2;
const CONFIG = `version: 2.1
jobs:
  one:
    docker:
      - image: ${BUSYBOX_IMAGE}
    steps:
      - run: echo first line
workflows:
  w:
    jobs: [one]
`;

export interface DockerStartFigures {
  jobs: number;
  /** claimed → step 2 started_at (ms) */
  p50: number;
  p90: number;
  max: number;
  /** claimed → first output chunk of step 2 (ms) */
  outputP50: number;
  outputP90: number;
  outputMax: number;
  /** step 0 "Spin up environment" (container create + start) start → end, p50 (ms) */
  spinUpP50: number;
}

interface Row {
  claimed: Date;
  step_started: Date;
  output_key: string | null;
  spin_start: Date;
  spin_end: Date;
}

export async function benchDockerStart(): Promise<DockerStartFigures> {
  const own = process.env.DOCKER_HOST ? undefined : await startDockerd();
  const host = process.env.DOCKER_HOST ?? own!.host;
  try {
    ensureBusyboxImage(host);
    // the server reads DOCKER_HOST to give its local agents `docker:*` and pass the engine on
    process.env.DOCKER_HOST = host;
    return await withServer({ TORUS_LOCAL_AGENTS: '1' }, async (server) => {
      const repo = makeGitRepo({ '.circleci/config.yml': CONFIG });
      const project = await server.engine.createProject({
        orgName: 'bench',
        name: 'docker-start',
        vcsUrl: `file://${repo}`,
      });
      const started: number[] = [];
      const output: number[] = [];
      const spinUp: number[] = [];
      for (let i = 0; i < JOBS + WARMUP; i++) {
        // wait for the workflow to end so each job starts on an idle agent and engine
        const { pipelineId, status } = await runPipeline(server, project.id, { pollMs: 10 });
        if (status !== 'success') throw new Error(`docker job ${i} ended ${status}`);
        if (i < WARMUP) continue;
        const r = await server.res.db.query<Row>(
          `SELECT t.started_at AS claimed, s.started_at AS step_started, s.output_key,
                  s0.started_at AS spin_start, s0.stopped_at AS spin_end
           FROM tasks t JOIN jobs j ON j.id = t.job_id JOIN workflows w ON w.id = j.workflow_id
           JOIN steps s ON s.task_id = t.id AND s.step_index = 2
           JOIN steps s0 ON s0.task_id = t.id AND s0.step_index = 0 WHERE w.pipeline_id = $1`,
          [pipelineId],
        );
        const row = r.rows[0];
        if (!row?.output_key) throw new Error(`docker job ${i}: no step 2 with output`);
        const text = await readObjectText(server.res.store, row.output_key);
        const first = JSON.parse(text!.split('\n')[0]!) as { time: string };
        spinUp.push(row.spin_end.getTime() - row.spin_start.getTime());
        started.push(row.step_started.getTime() - row.claimed.getTime());
        output.push(new Date(first.time).getTime() - row.claimed.getTime());
      }
      return {
        jobs: started.length,
        p50: percentile(started, 50),
        p90: percentile(started, 90),
        max: Math.max(...started),
        outputP50: percentile(output, 50),
        outputP90: percentile(output, 90),
        outputMax: Math.max(...output),
        spinUpP50: percentile(spinUp, 50),
      };
    });
  } finally {
    if (own) {
      delete process.env.DOCKER_HOST;
      await own.stop();
    }
  }
}

export function printDockerStart(r: DockerStartFigures): void {
  console.log(
    `docker job start (claimed → step 2 started, ${r.jobs} jobs, local image): p50 ${fmt(r.p50)}, p90 ${fmt(r.p90)}, max ${fmt(r.max)} ` +
      `(target p50 ≤ 1500 ms, ${(r.p50 / 1500).toFixed(2)}× target)`,
  );
  console.log(
    `docker job start (claimed → step 2 first output): p50 ${fmt(r.outputP50)}, p90 ${fmt(r.outputP90)}, max ${fmt(r.outputMax)} ` +
      `(${(r.outputP50 / 1500).toFixed(2)}× target); of which spin-up (step 0) p50 ${fmt(r.spinUpP50)}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printDockerStart(await benchDockerStart());
  process.exit(0);
}
