// Throughput: 300 one-step `echo` jobs through the local agents, in jobs per second, wall clock from
// the first trigger to the last job's end.
import { fmt, makeGitRepo, withServer } from './lib.js';

const JOBS = Number(process.env.BENCH_JOBS ?? 300);
const PER_PIPELINE = 30;
const THROUGHPUT_ENV: Record<string, string> = process.env.BENCH_AGENTS
  ? { TORUS_LOCAL_AGENTS: process.env.BENCH_AGENTS }
  : {};

function config(n: number): string {
  const names = Array.from({ length: n }, (_, i) => `j${i}`);
  return `version: 2.1
jobs:
${names.map((j) => `  ${j}:\n    machine: true\n    steps:\n      - run: echo ${j}\n`).join('')}
workflows:
  w:
    jobs: [${names.join(', ')}]
`;
}

export async function benchThroughput(): Promise<{ jobs: number; seconds: number; perSecond: number }> {
  return withServer(THROUGHPUT_ENV, async (server) => {
    const repo = makeGitRepo({ '.circleci/config.yml': config(PER_PIPELINE) });
    const project = await server.engine.createProject({
      orgName: 'bench',
      name: 'throughput',
      vcsUrl: `file://${repo}`,
    });
    const pipelines = Math.ceil(JOBS / PER_PIPELINE);
    const t0 = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < pipelines; i++) {
      ids.push(
        (await server.engine.triggerPipeline({ projectId: project.id, branch: 'main', triggerType: 'api' }))
          .id,
      );
    }
    for (;;) {
      const r = await server.res.db.query<{ done: number; total: number }>(
        `SELECT count(*) FILTER (WHERE j.status IN ('success','failed','infrastructure_fail','timedout','canceled')) AS done,
                count(*) AS total
         FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE w.pipeline_id = ANY($1::uuid[])`,
        [ids],
      );
      const row = r.rows[0]!;
      if (row.total === pipelines * PER_PIPELINE && row.done === row.total) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (performance.now() - t0) / 1000;
    const failed = await server.res.db.query<{ n: number }>(
      `SELECT count(*) AS n FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE w.pipeline_id = ANY($1::uuid[]) AND j.status <> 'success'`,
      [ids],
    );
    if (failed.rows[0]!.n > 0) throw new Error(`${failed.rows[0]!.n} jobs did not succeed`);
    return { jobs: pipelines * PER_PIPELINE, seconds, perSecond: (pipelines * PER_PIPELINE) / seconds };
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchThroughput();
  console.log(
    `throughput: ${r.jobs} jobs in ${fmt(r.seconds * 1000)} = ${r.perSecond.toFixed(1)} jobs/s (target ≥ 10; ratio ${(r.perSecond / 10).toFixed(2)}× target)`,
  );
}
