// One pipeline: what triggered it (branch, commit, who), its errors, and each workflow drawn as a
// graph of its jobs with the workflow's actions (cancel, rerun from start or from failed). Kept live
// by the server's pipeline event stream; a rerun's new workflow replaces the old one on the page,
// the earlier runs listed below it. A second tab shows the pipeline's configuration: the source
// as committed, and as processed (orbs, commands, parameters and matrices expanded).
import { useEffect, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useLocation, useParams, useSearch } from 'wouter';
import {
  api,
  slugPath,
  type Page,
  type Pipeline,
  type PipelineConfig,
  type Workflow,
  type WorkflowJob,
} from '../api';
import {
  ActionButton,
  Breadcrumbs,
  ErrorNote,
  PageUnready,
  QueryView,
  StatusBadge,
  Tabs,
  useNow,
} from '../components';
import { elapsed, pipelineDuration, shortSha, timeAgo } from '../format';
import { isActive, pipelineStatus } from '../status';
import { WorkflowGraph } from '../workflow-graph';

/** without the event stream (a proxy that buffers it, say), pages still refresh at this pace */
const FALLBACK_REFRESH_MS = 5_000;

interface PipelineEvent {
  pipeline: Pipeline;
  workflows: Workflow[];
}

/** Follows `/api/v2/torus/pipeline/{id}/events`: every change re-reads the workflows and their jobs. */
function usePipelineEvents(pipelineId: string | undefined): void {
  const client = useQueryClient();
  useEffect(() => {
    if (!pipelineId) return;
    const events = new EventSource(`/api/v2/torus/pipeline/${pipelineId}/events`);
    events.addEventListener('pipeline', (e: MessageEvent<string>) => {
      const data = JSON.parse(e.data) as PipelineEvent;
      client.setQueryData(['workflows', pipelineId], { items: data.workflows, next_page_token: null });
      client.setQueryData(['pipeline', data.pipeline.project_slug, data.pipeline.number], data.pipeline);
      void client.invalidateQueries({ queryKey: ['workflow-jobs'] });
    });
    return () => events.close();
  }, [client, pipelineId]);
}

export function PipelinePage() {
  const { vcs, org, repo, number, workflowId } = useParams<{
    vcs: string;
    org: string;
    repo: string;
    number: string;
    workflowId?: string;
  }>();
  const slug = `${vcs}/${org}/${repo}`;
  const pipeline = useQuery({
    queryKey: ['pipeline', slug, Number(number)],
    queryFn: () => api<Pipeline>(`/api/v2/project/${slugPath(slug)}/pipeline/${number}`),
  });
  const id = pipeline.data?.id;
  const workflows = useQuery({
    queryKey: ['workflows', id],
    queryFn: () => api<Page<Workflow>>(`/api/v2/pipeline/${id}/workflow`),
    enabled: Boolean(id),
    refetchInterval: (q) =>
      !q.state.data || q.state.data.items.some((w) => isActive(w.status)) ? FALLBACK_REFRESH_MS : false,
  });
  usePipelineEvents(id);
  const now = useNow(Boolean(workflows.data?.items.some((w) => isActive(w.status))));
  const [location, navigate] = useLocation();
  const tab = new URLSearchParams(useSearch()).get('tab') === 'config' ? 'config' : 'workflows';
  const setTab = (t: 'workflows' | 'config') =>
    navigate(t === 'config' ? `${location}?tab=config` : location, { replace: true });

  const crumbs = [
    { label: 'Projects', href: '/' },
    { label: repo, href: `/pipelines/${slugPath(slug)}` },
    { label: `Pipeline #${number}` },
  ];
  if (pipeline.isPending || pipeline.isError)
    return <PageUnready query={pipeline} what="the pipeline" crumbs={crumbs} />;
  const p = pipeline.data;
  // the newest run of each workflow name first; earlier runs (before a rerun) after it
  const all = [...(workflows.data?.items ?? [])].sort(
    (a, b) => Date.parse(b.created_at) - Date.parse(a.created_at),
  );
  const latest = new Map<string, Workflow>();
  for (const w of all) if (!latest.has(w.name)) latest.set(w.name, w);
  const current = [...latest.values()].sort((a, b) => a.name.localeCompare(b.name));
  const earlier = all.filter((w) => latest.get(w.name) !== w);

  return (
    <>
      <Breadcrumbs items={crumbs} />
      <div className="page-head">
        <h1>
          Pipeline <span className="muted">#</span>
          {p.number}
        </h1>
      </div>
      <dl className="facts card">
        <div>
          <dt>{p.vcs.tag !== undefined ? 'Tag' : 'Branch'}</dt>
          <dd>
            <span className="branch">{p.vcs.tag ?? p.vcs.branch}</span>
          </dd>
        </div>
        <div>
          <dt>Commit</dt>
          <dd>
            <span className="mono">{shortSha(p.vcs.revision)}</span>
            {p.vcs.commit && <span className="commit-subject"> {p.vcs.commit.subject}</span>}
          </dd>
        </div>
        <div>
          <dt>Triggered</dt>
          <dd>
            {p.trigger.actor.login !== p.trigger.type && `by ${p.trigger.actor.login} `}via {p.trigger.type},{' '}
            <time dateTime={p.created_at} title={new Date(p.created_at).toLocaleString()}>
              {timeAgo(p.created_at, now)}
            </time>
          </dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd>
            <StatusBadge status={pipelineStatus(p.state, workflows.data?.items)} />
          </dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd className="mono">{pipelineDuration(workflows.data?.items, now)}</dd>
        </div>
      </dl>
      {p.errors.length > 0 && (
        <div className="card errors" role="alert">
          <h2>This pipeline could not run</h2>
          <ul>
            {p.errors.map((e, i) => (
              <li key={i}>
                <pre>{e.message}</pre>
              </li>
            ))}
          </ul>
        </div>
      )}
      <Tabs
        label="Pipeline details"
        selected={tab}
        onSelect={setTab}
        tabs={[
          { key: 'workflows', label: 'Workflows' },
          { key: 'config', label: 'Configuration' },
        ]}
      >
        {tab === 'config' ? (
          <ConfigPanel pipelineId={p.id} />
        ) : (
          <>
            {workflows.isError && <ErrorNote error={workflows.error} />}
            {workflows.data && current.length === 0 && p.errors.length === 0 && (
              <p className="muted">No workflows ran in this pipeline{isActive(p.state) ? ' yet' : ''}.</p>
            )}
            {current.map((w) => (
              <WorkflowCard
                key={w.id}
                workflow={w}
                now={now}
                highlighted={
                  w.id === workflowId || earlier.some((e) => e.id === workflowId && e.name === w.name)
                }
              />
            ))}
            {earlier.length > 0 && (
              <details className="earlier">
                <summary>Earlier runs ({earlier.length})</summary>
                {earlier.map((w) => (
                  <WorkflowCard key={w.id} workflow={w} now={now} highlighted={w.id === workflowId} />
                ))}
              </details>
            )}
          </>
        )}
      </Tabs>
    </>
  );
}

function WorkflowCard({
  workflow: w,
  now,
  highlighted,
}: {
  workflow: Workflow;
  now: number;
  highlighted: boolean;
}) {
  const client = useQueryClient();
  const jobs = useQuery({
    queryKey: ['workflow-jobs', w.id],
    queryFn: () => api<Page<WorkflowJob>>(`/api/v2/workflow/${w.id}/job`),
    refetchInterval: isActive(w.status) ? FALLBACK_REFRESH_MS : false,
  });
  const refresh = () => client.invalidateQueries({ queryKey: ['workflows', w.pipeline_id] });
  const failed = ['failed', 'error', 'failing', 'canceled'].includes(w.status);
  return (
    <section className={`card workflow${highlighted ? ' highlighted' : ''}`} aria-labelledby={`wf-${w.id}`}>
      <header className="workflow-head">
        <h2 id={`wf-${w.id}`}>{w.name}</h2>
        <StatusBadge status={w.status} />
        <span className="muted mono">{elapsed(w.created_at, w.stopped_at, now)}</span>
        <div className="workflow-actions">
          {isActive(w.status) && (
            <ActionButton
              label="Cancel"
              busyLabel="Canceling…"
              variant="danger"
              ariaLabel={`Cancel workflow ${w.name}`}
              run={() => api(`/api/v2/workflow/${w.id}/cancel`, { method: 'POST' }).then(refresh)}
            />
          )}
          {!isActive(w.status) && failed && (
            <ActionButton
              label="Rerun from failed"
              busyLabel="Rerunning…"
              ariaLabel={`Rerun workflow ${w.name} from failed`}
              run={() =>
                api(`/api/v2/workflow/${w.id}/rerun`, { method: 'POST', body: { from_failed: true } }).then(
                  refresh,
                )
              }
            />
          )}
          {!isActive(w.status) && (
            <ActionButton
              label="Rerun"
              busyLabel="Rerunning…"
              ariaLabel={`Rerun workflow ${w.name} from start`}
              run={() => api(`/api/v2/workflow/${w.id}/rerun`, { method: 'POST', body: {} }).then(refresh)}
            />
          )}
        </div>
      </header>
      <QueryView query={jobs} what="jobs">
        {(data) => <WorkflowGraph workflow={w} jobs={data.items} now={now} />}
      </QueryView>
    </section>
  );
}

type ConfigView = 'source' | 'compiled' | 'setup-config' | 'compiled-setup-config';

const CONFIG_VIEWS: Array<{ key: ConfigView; label: string }> = [
  { key: 'source', label: 'Source' },
  { key: 'compiled', label: 'Processed' },
  { key: 'setup-config', label: 'Setup source' },
  { key: 'compiled-setup-config', label: 'Setup processed' },
];

/** `GET /api/v2/pipeline/{id}/config`: the source and processed config, and a setup config's too */
function ConfigPanel({ pipelineId }: { pipelineId: string }) {
  const config = useQuery({
    queryKey: ['pipeline-config', pipelineId],
    queryFn: () => api<PipelineConfig>(`/api/v2/pipeline/${pipelineId}/config`),
  });
  return (
    <QueryView query={config} what="the configuration">
      {(data) => <ConfigViews config={data} />}
    </QueryView>
  );
}

function ConfigViews({ config }: { config: PipelineConfig }) {
  const [view, setView] = useState<ConfigView>('source');
  const views = CONFIG_VIEWS.filter((v) => config[v.key] !== undefined);
  const text = config[view] ?? '';
  return (
    <section className="card config" aria-label="Configuration">
      <div className="config-head" role="radiogroup" aria-label="Which configuration">
        {views.map((v) => (
          <label key={v.key} className={`run-tab${v.key === view ? ' selected' : ''}`}>
            <input
              type="radio"
              name="config-view"
              className="sr-only"
              value={v.key}
              checked={v.key === view}
              onChange={() => setView(v.key)}
            />
            {v.label}
          </label>
        ))}
      </div>
      {text ? (
        <pre
          className="config-text"
          tabIndex={0}
          aria-label={`${views.find((v) => v.key === view)?.label} configuration`}
        >
          {text}
        </pre>
      ) : (
        <p className="muted config-none">
          {view === 'compiled'
            ? 'The configuration did not compile: see the errors above.'
            : 'No configuration.'}
        </p>
      )}
    </section>
  );
}
