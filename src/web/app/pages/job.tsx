// One job: its status, timing and executor, why it waits (the scheduler's messages), the parallel
// run to look at, and its steps: each collapsible, with its status and duration, the command, the
// output streaming live and a link to the raw text. Running and failed steps open by themselves.
import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useParams } from 'wouter';
import { api, slugPath, type JobDetails, type JobSteps, type StepAction } from '../api';
import {
  ActionButton,
  Breadcrumbs,
  ErrorNote,
  Loading,
  StatusBadge,
  StatusIcon,
  useNow,
} from '../components';
import { elapsed, formatDuration } from '../format';
import { OutputView } from '../output-view';
import { isActive, statusLabel } from '../status';

/** a job that can still change is re-read this often (new steps, status) */
const JOB_REFRESH_MS = 2_000;

export function JobPage() {
  const { vcs, org, repo, number, workflowId, job } = useParams<{
    vcs: string;
    org: string;
    repo: string;
    number: string;
    workflowId: string;
    job: string;
  }>();
  const slug = `${vcs}/${org}/${repo}`;
  const jobNumber = Number(job);
  const client = useQueryClient();
  const details = useQuery({
    queryKey: ['job', slug, jobNumber],
    queryFn: () => api<JobDetails>(`/api/v2/project/${slugPath(slug)}/job/${jobNumber}`),
    refetchInterval: (q) => (!q.state.data || isActive(q.state.data.status) ? JOB_REFRESH_MS : false),
  });
  const active = !details.data || isActive(details.data.status);
  const steps = useQuery({
    queryKey: ['job-steps', slug, jobNumber],
    queryFn: () => api<JobSteps>(`/api/v1.1/project/${slugPath(slug)}/${jobNumber}`),
    refetchInterval: active ? JOB_REFRESH_MS : false,
  });
  const [run, setRun] = useState(0);
  const now = useNow(active);

  const pipelineHref = `/pipelines/${slugPath(slug)}/${number}`;
  const crumbs = [
    { label: 'Projects', href: '/' },
    { label: repo, href: `/pipelines/${slugPath(slug)}` },
    { label: `Pipeline #${number}`, href: pipelineHref },
    {
      label: details.data?.latest_workflow.name ?? 'workflow',
      href: `${pipelineHref}/workflows/${workflowId}`,
    },
    { label: details.data?.name ?? `job ${job}` },
  ];
  if (details.isPending) return <Loading what="the job" />;
  if (details.isError)
    return (
      <>
        <Breadcrumbs items={crumbs} />
        <ErrorNote error={details.error} />
      </>
    );
  const d = details.data;
  const refresh = () =>
    Promise.all([
      client.invalidateQueries({ queryKey: ['job', slug, jobNumber] }),
      client.invalidateQueries({ queryKey: ['job-steps', slug, jobNumber] }),
    ]);

  return (
    <>
      <Breadcrumbs items={crumbs} />
      <div className="page-head">
        <h1>
          {d.name} <span className="muted">#{d.number}</span>
        </h1>
        <StatusBadge status={d.status} />
        <div className="page-actions">
          {['running', 'queued', 'blocked'].includes(d.status) && (
            <ActionButton
              label="Cancel job"
              busyLabel="Canceling…"
              variant="danger"
              run={() =>
                api(`/api/v2/project/${slugPath(slug)}/job/${jobNumber}/cancel`, { method: 'POST' }).then(
                  refresh,
                )
              }
            />
          )}
        </div>
      </div>
      <dl className="facts card">
        <div>
          <dt>Duration</dt>
          <dd className="mono">{d.started_at ? elapsed(d.started_at, d.stopped_at, now) : '–'}</dd>
        </div>
        <div>
          <dt>Queued</dt>
          <dd className="mono">
            {d.queued_at && d.started_at
              ? formatDuration(Date.parse(d.started_at) - Date.parse(d.queued_at))
              : '–'}
          </dd>
        </div>
        <div>
          <dt>Executor</dt>
          <dd>
            {d.executor.type} · {d.executor.resource_class}
          </dd>
        </div>
        <div>
          <dt>Workflow</dt>
          <dd>
            <Link href={`${pipelineHref}/workflows/${workflowId}`}>{d.latest_workflow.name}</Link>
          </dd>
        </div>
      </dl>
      {d.messages.length > 0 && (
        <ul className="card messages">
          {d.messages.map((m, i) => (
            <li key={i} className={`message message-${m.type}`}>
              {m.message}
            </li>
          ))}
        </ul>
      )}
      {d.parallel_runs.length > 1 && (
        <div className="runs" role="group" aria-label="Parallel runs">
          {d.parallel_runs.map((r) => (
            <button
              key={r.index}
              type="button"
              className={`run-tab${r.index === run ? ' selected' : ''}`}
              aria-pressed={r.index === run}
              onClick={() => setRun(r.index)}
            >
              <StatusIcon status={r.status} size={14} /> Run {r.index}
            </button>
          ))}
        </div>
      )}
      <section className="steps" aria-label="Steps">
        {steps.isPending ? (
          <Loading what="steps" />
        ) : steps.isError ? (
          <ErrorNote error={steps.error} />
        ) : steps.data.steps.length === 0 ? (
          <p className="card empty">
            {isActive(d.status) ? 'The job has not started yet.' : 'This job ran no steps.'}
          </p>
        ) : (
          steps.data.steps.map((s) => {
            const a = s.actions.find((x) => x.index === run);
            return a ? (
              <Step key={`${run}-${a.step}`} slug={slug} job={jobNumber} action={a} now={now} />
            ) : null;
          })
        )}
      </section>
    </>
  );
}

function Step({ slug, job, action: a, now }: { slug: string; job: number; action: StepAction; now: number }) {
  const [chosen, setChosen] = useState<boolean | undefined>();
  // a step seen running stays open when it finishes, until the reader closes it
  if (chosen === undefined && a.status === 'running') setChosen(true);
  const expanded = chosen ?? ['running', 'failed', 'timedout'].includes(a.status);
  const id = `step-${a.step}-${a.index}`;
  const outputPath = `/api/v2/project/${slugPath(slug)}/job/${job}/output?step=${a.step}&index=${a.index}&follow=true`;
  const rawPath = `/api/v1.1/project/${slugPath(slug)}/${job}/output/${a.step}/${a.index}?file=true`;
  return (
    <section className={`card step${expanded ? ' expanded' : ''}`} data-step={a.name}>
      <h2 className="step-head">
        <button
          type="button"
          aria-expanded={expanded}
          aria-controls={id}
          onClick={() => setChosen(!expanded)}
        >
          <span className="chevron" aria-hidden="true" />
          <StatusIcon status={a.status} />
          <span className="step-name">{a.name}</span>
          {a.background && <span className="tag-small">background</span>}
          <span className="sr-only">{statusLabel(a.status)}</span>
          <span className="step-time mono">{elapsed(a.start_time, a.end_time, now)}</span>
        </button>
      </h2>
      {expanded && (
        <div id={id} className="step-body">
          {a.bash_command && (
            <details className="command">
              <summary>Command</summary>
              <pre>{a.bash_command}</pre>
            </details>
          )}
          {a.has_output || a.status === 'running' ? (
            <OutputView url={outputPath} label={`Output of ${a.name}`} />
          ) : (
            <p className="muted output-none">No output.</p>
          )}
          <p className="step-links">
            <a href={rawPath} target="_blank" rel="noopener">
              Raw output
            </a>
          </p>
        </div>
      )}
    </section>
  );
}
