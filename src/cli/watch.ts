// `torus pipeline watch`: follows a pipeline in the terminal — job states as they change and the
// output of running steps as it is printed — until every workflow is final.
import type { ApiClient } from './client.js';

interface Pipeline {
  id: string;
  number: number;
  state: string;
  project_slug: string;
  errors: Array<{ type: string; message: string }>;
}
interface Workflow {
  id: string;
  name: string;
  status: string;
}
interface WorkflowJob {
  id: string;
  name: string;
  status: string;
  job_number?: number;
}
interface V11Action {
  name: string;
  status: string;
  index: number;
  step: number;
  output_url?: string;
  has_output?: boolean;
}
interface V11Job {
  steps: Array<{ name: string; actions: V11Action[] }>;
}

const FINAL_WORKFLOW = new Set(['success', 'failed', 'error', 'canceled', 'not_run', 'unauthorized']);
const FINAL_JOB = new Set([
  'success',
  'failed',
  'timedout',
  'infrastructure_fail',
  'canceled',
  'not_run',
  'unauthorized',
  'terminated-unknown',
]);
const POLL_MS = 400;

export async function watchPipeline(
  client: ApiClient,
  pipelineId: string,
  print: (line: string) => void,
): Promise<boolean> {
  const jobStatus = new Map<string, string>();
  // printed message count per job/step/index, so each output line is shown once
  const printed = new Map<string, number>();
  let announced = false;
  for (;;) {
    const p = await client.get<Pipeline>(`/api/v2/pipeline/${pipelineId}`);
    if (!announced) {
      print(`Pipeline #${p.number} of ${p.project_slug} (${p.id})`);
      announced = true;
    }
    if (p.state === 'errored') {
      for (const e of p.errors) print(`  error (${e.type}): ${e.message}`);
      return false;
    }
    const wfs = (await client.get<{ items: Workflow[] }>(`/api/v2/pipeline/${pipelineId}/workflow`)).items;
    for (const wf of wfs) {
      const jobs = (await client.get<{ items: WorkflowJob[] }>(`/api/v2/workflow/${wf.id}/job`)).items;
      for (const j of jobs) {
        const key = `${wf.name}/${j.name}`;
        if (jobStatus.get(j.id) !== j.status) {
          jobStatus.set(j.id, j.status);
          print(`[${key}] ${j.status}${j.job_number ? ` (job #${j.job_number})` : ''}`);
        }
        if (j.job_number && j.status === 'queued')
          await printWaitReasons(client, p.project_slug, j.job_number, key, printed, print);
        if (j.job_number && (j.status === 'running' || FINAL_JOB.has(j.status))) {
          await printNewOutput(client, p.project_slug, j.job_number, key, printed, print);
        }
      }
    }
    if (p.state !== 'created' && wfs.length > 0 && wfs.every((w) => FINAL_WORKFLOW.has(w.status))) {
      for (const w of wfs) print(`Workflow ${w.name}: ${w.status}`);
      return wfs.every((w) => w.status === 'success');
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** A queued job that waits for an agent says why (no agent serves its resource class, …), once per reason. */
async function printWaitReasons(
  client: ApiClient,
  slug: string,
  jobNumber: number,
  label: string,
  printed: Map<string, number>,
  print: (line: string) => void,
): Promise<void> {
  const details = await client.get<{ messages?: Array<{ type: string; message: string }> }>(
    `/api/v2/project/${slug}/job/${jobNumber}`,
  );
  for (const m of details.messages ?? []) {
    const key = `${jobNumber}:msg:${m.message}`;
    if (printed.has(key)) continue;
    printed.set(key, 1);
    print(`[${label}] waiting: ${m.message}`);
  }
}

async function printNewOutput(
  client: ApiClient,
  slug: string,
  jobNumber: number,
  label: string,
  printed: Map<string, number>,
  print: (line: string) => void,
): Promise<void> {
  const done = printed.get(`${jobNumber}:done`);
  if (done) return;
  const job = await client.get<V11Job>(`/api/v1.1/project/${slug}/${jobNumber}`);
  let allFinal = true;
  for (const step of job.steps) {
    for (const a of step.actions) {
      if (a.status === 'running') allFinal = false;
      if (!a.output_url) continue;
      const key = `${jobNumber}:${a.step}:${a.index}`;
      const seen = printed.get(key) ?? 0;
      if (seen < 0) continue;
      const messages = await client.get<Array<{ type: string; message: string }>>(
        new URL(a.output_url).pathname + new URL(a.output_url).search,
      );
      const text = messages
        .slice(seen)
        .map((m) => m.message)
        .join('');
      if (seen === 0 && (messages.length > 0 || a.status !== 'running')) print(`[${label}] ▸ ${a.name}`);
      for (const line of text.split('\n')) if (line.length > 0) print(`[${label}]   ${line}`);
      printed.set(key, a.status === 'running' ? messages.length : -1);
    }
  }
  const status = job as unknown as { status?: string };
  if (allFinal && status.status && FINAL_JOB.has(status.status)) printed.set(`${jobNumber}:done`, 1);
}
