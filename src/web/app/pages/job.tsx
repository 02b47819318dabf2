// One job: its status, timing and executor, why it waits (the scheduler's messages), the parallel
// run to look at, and its steps: each collapsible, with its status and duration, the command, the
// output streaming live and a link to the raw text. Running and failed steps open by themselves.
// Beside the steps, tabs for the job's test results (failed first) and its artifacts; the tab is
// kept in the address (`?tab=tests`) so it can be linked to.
import { useEffect, useRef, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useLocation, useParams, useSearch } from 'wouter';
import {
  allPages,
  api,
  slugPath,
  type Artifact,
  type JobDetails,
  type JobSteps,
  type StepAction,
  type TestResult,
} from '../api';
import {
  ActionButton,
  Breadcrumbs,
  EmptyCard,
  PageUnready,
  QueryView,
  StatusBadge,
  StatusIcon,
  Tabs,
  useNow,
} from '../components';
import { elapsed, formatDuration } from '../format';
import { OutputView } from '../output-view';
import { isActive, statusLabel } from '../status';

/** a job that can still change is re-read this often (new steps, status) */
const JOB_REFRESH_MS = 2_000;
/** tests and artifacts arrive at the end of their steps: re-read while the job runs */
const RESULTS_REFRESH_MS = 5_000;

const TABS = ['steps', 'tests', 'artifacts'] as const;
type Tab = (typeof TABS)[number];

/** results that count as failed (JUnit's failure and error, and CircleCI's own names) */
const FAILED_RESULTS = new Set(['failure', 'failed', 'error']);
const SKIPPED_RESULTS = new Set(['skipped', 'skip']);

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
  const tests = useQuery({
    queryKey: ['job-tests', slug, jobNumber],
    queryFn: () => allPages<TestResult>(`/api/v2/project/${slugPath(slug)}/${jobNumber}/tests`),
    refetchInterval: active ? RESULTS_REFRESH_MS : false,
  });
  const artifacts = useQuery({
    queryKey: ['job-artifacts', slug, jobNumber],
    queryFn: () => allPages<Artifact>(`/api/v2/project/${slugPath(slug)}/${jobNumber}/artifacts`),
    refetchInterval: active ? RESULTS_REFRESH_MS : false,
  });
  // the last step stores tests and artifacts just before the job ends: read them once more then
  const seenActive = details.data ? isActive(details.data.status) : undefined;
  const wasActive = useRef(seenActive);
  useEffect(() => {
    if (wasActive.current === true && seenActive === false) {
      void client.invalidateQueries({ queryKey: ['job-tests', slug, jobNumber] });
      void client.invalidateQueries({ queryKey: ['job-artifacts', slug, jobNumber] });
    }
    wasActive.current = seenActive;
  }, [seenActive, client, slug, jobNumber]);
  const [run, setRun] = useState(0);
  const now = useNow(active);
  const search = useSearch();
  const [location, navigate] = useLocation();
  const asked = new URLSearchParams(search).get('tab');
  const tab: Tab = TABS.find((t) => t === asked) ?? 'steps';
  const setTab = (t: Tab) => navigate(t === 'steps' ? location : `${location}?tab=${t}`, { replace: true });

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
  if (details.isPending || details.isError)
    return <PageUnready query={details} what="the job" crumbs={crumbs} />;
  const d = details.data;
  const failedTests = tests.data?.filter((t) => FAILED_RESULTS.has(t.result)).length ?? 0;
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
      <Tabs
        label="Job details"
        selected={tab}
        onSelect={setTab}
        tabs={[
          { key: 'steps', label: 'Steps' },
          {
            key: 'tests',
            label: (
              <>
                Tests <Count n={tests.data?.length} failed={failedTests} />
              </>
            ),
          },
          {
            key: 'artifacts',
            label: (
              <>
                Artifacts <Count n={artifacts.data?.length} />
              </>
            ),
          },
        ]}
      >
        {tab === 'steps' ? (
          <section className="steps" aria-label="Steps">
            <QueryView
              query={steps}
              what="steps"
              isEmpty={(data) => data.steps.length === 0}
              empty={
                <p className="card empty">
                  {isActive(d.status) ? 'The job has not started yet.' : 'This job ran no steps.'}
                </p>
              }
            >
              {(data) =>
                data.steps.map((s) => {
                  const a = s.actions.find((x) => x.index === run);
                  return a ? (
                    <Step key={`${run}-${a.step}`} slug={slug} job={jobNumber} action={a} now={now} />
                  ) : null;
                })
              }
            </QueryView>
          </section>
        ) : tab === 'tests' ? (
          <QueryView
            query={tests}
            what="tests"
            empty={
              <EmptyCard title={`No test results${active ? ' yet' : ''}`}>
                A job stores them with <code>store_test_results</code> (JUnit XML, or Cucumber JSON).
              </EmptyCard>
            }
          >
            {(all) => <TestsPanel all={all} />}
          </QueryView>
        ) : (
          <QueryView
            query={artifacts}
            what="artifacts"
            empty={
              <EmptyCard title={`No artifacts${active ? ' yet' : ''}`}>
                A job uploads files with <code>store_artifacts</code>.
              </EmptyCard>
            }
          >
            {(all) => <ArtifactsPanel all={all} parallel={d.parallelism > 1} />}
          </QueryView>
        )}
      </Tabs>
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
            <OutputView url={outputPath} label={`Output of ${a.name}`} rawUrl={rawPath} />
          ) : (
            <p className="muted output-none">No output.</p>
          )}
        </div>
      )}
    </section>
  );
}

function Count({ n, failed = 0 }: { n: number | undefined; failed?: number }) {
  if (n === undefined) return null;
  return (
    <span className={`tab-count${failed > 0 ? ' tone-failed' : ''}`}>
      {failed > 0 ? `${failed} failed / ${n}` : n}
    </span>
  );
}

/** the job's test results, failed first (then skipped, then passed), each with its message and time */
function TestsPanel({ all }: { all: TestResult[] }) {
  const [filter, setFilter] = useState('');
  const rank = (t: TestResult) => (FAILED_RESULTS.has(t.result) ? 0 : SKIPPED_RESULTS.has(t.result) ? 1 : 2);
  const sorted = [...all].sort((a, b) => rank(a) - rank(b) || b.run_time - a.run_time);
  const f = filter.trim().toLowerCase();
  const shown = f
    ? sorted.filter((t) => `${t.classname} ${t.name} ${t.file}`.toLowerCase().includes(f))
    : sorted;
  const failed = all.filter((t) => rank(t) === 0).length;
  const skipped = all.filter((t) => rank(t) === 1).length;
  return (
    <section className="card tests" aria-label="Test results">
      <div className="tests-head">
        <p className="tests-summary">
          <strong className={failed ? 'error-text' : ''}>{failed} failed</strong>
          {' · '}
          {all.length - failed - skipped} passed
          {skipped > 0 && ` · ${skipped} skipped`}
          {' · '}
          <span className="mono">
            {formatDuration(all.reduce((sum, t) => sum + t.run_time, 0) * 1000)}
          </span>{' '}
          in all
        </p>
        <label className="sr-only" htmlFor="tests-filter">
          Filter tests
        </label>
        <input
          id="tests-filter"
          type="search"
          placeholder="Filter tests"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
        />
      </div>
      <ul className="test-list">
        {shown.map((t, i) => {
          const status = rank(t) === 0 ? 'failed' : rank(t) === 1 ? 'canceled' : 'success';
          return (
            <li key={i} className={`test test-${status}`} data-result={t.result}>
              <div className="test-line">
                <StatusIcon status={status} />
                <span className="sr-only">{t.result}</span>
                <span className="test-name">
                  {t.classname && <span className="muted">{t.classname} › </span>}
                  {t.name}
                </span>
                {t.file && <span className="muted small mono test-file">{t.file}</span>}
                <span className="mono small test-time">{formatDuration(t.run_time * 1000)}</span>
              </div>
              {t.message && (
                <details className="test-message" open={rank(t) === 0}>
                  <summary>{rank(t) === 0 ? 'Failure message' : 'Message'}</summary>
                  <pre>{t.message}</pre>
                </details>
              )}
            </li>
          );
        })}
        {shown.length === 0 && <li className="muted test">No test matches “{filter}”.</li>}
      </ul>
    </section>
  );
}

/** the job's artifacts, each opening in a new tab; grouped by parallel run when there are several */
function ArtifactsPanel({ all, parallel }: { all: Artifact[]; parallel: boolean }) {
  const nodes = [...new Set(all.map((a) => a.node_index))].sort((a, b) => a - b);
  return (
    <section className="card artifacts" aria-label="Artifacts">
      {nodes.map((n) => (
        <div key={n}>
          {parallel && <h3 className="artifacts-node">Run {n}</h3>}
          <ul className="artifact-list">
            {all
              .filter((a) => a.node_index === n)
              .sort((a, b) => a.path.localeCompare(b.path))
              .map((a) => (
                <li key={`${a.node_index}/${a.path}`}>
                  {/* the server's address, made same-origin: the session cookie opens it */}
                  <a href={new URL(a.url, window.location.href).pathname} target="_blank" rel="noopener">
                    <span className="mono">{a.path}</span>
                  </a>
                </li>
              ))}
          </ul>
        </div>
      ))}
    </section>
  );
}
