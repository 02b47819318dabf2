// A project's pipelines, newest first: status (read from the workflows), number, workflows,
// branch and commit, trigger, duration; filtered by branch (kept in the address), refreshed while
// anything runs, and a form to trigger a new pipeline.
import { useState, type FormEvent } from 'react';
import { useInfiniteQuery, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useLocation, useParams, useSearch } from 'wouter';
import { api, slugPath, type Page, type Pipeline, type Project, type Workflow } from '../api';
import {
  Breadcrumbs,
  EmptyCard,
  ErrorNote,
  FormError,
  Loading,
  StatusBadge,
  StatusIcon,
  useNow,
  useSubmit,
} from '../components';
import { pipelineDuration, shortSha, timeAgo } from '../format';
import { readParameters, type ParamRow, type ParamType } from '../parameters';
import { isActive, pipelineStatus } from '../status';

/** the list re-reads its pipelines this often (new ones appear, states change) */
const LIST_REFRESH_MS = 5_000;
/** a row whose workflows still run re-reads them this often */
const ROW_REFRESH_MS = 3_000;

export function PipelinesPage() {
  const { vcs, org, repo } = useParams<{ vcs: string; org: string; repo: string }>();
  const slug = `${vcs}/${org}/${repo}`;
  const branch = new URLSearchParams(useSearch()).get('branch') ?? '';
  const [, navigate] = useLocation();
  const project = useQuery({
    queryKey: ['project', slug],
    queryFn: () => api<Project>(`/api/v2/project/${slugPath(slug)}`),
  });
  const pipelines = useInfiniteQuery({
    queryKey: ['pipelines', slug, branch],
    queryFn: ({ pageParam }) => {
      const q = new URLSearchParams();
      if (branch) q.set('branch', branch);
      if (pageParam) q.set('page-token', pageParam);
      return api<Page<Pipeline>>(`/api/v2/project/${slugPath(slug)}/pipeline?${q.toString()}`);
    },
    initialPageParam: '',
    getNextPageParam: (last) => last.next_page_token ?? undefined,
    refetchInterval: LIST_REFRESH_MS,
  });
  const setBranch = (b: string) =>
    navigate(`/pipelines/${slugPath(slug)}${b ? `?branch=${encodeURIComponent(b)}` : ''}`, { replace: true });
  const items = pipelines.data?.pages.flatMap((p) => p.items) ?? [];
  const branches = [...new Set(items.map((p) => p.vcs.branch).filter((b): b is string => Boolean(b)))];

  return (
    <>
      <Breadcrumbs items={[{ label: 'Projects', href: '/' }, { label: project.data?.name ?? repo }]} />
      <div className="page-head">
        <h1>
          <span className="muted">{org} /</span> {project.data?.name ?? repo}
        </h1>
        <div className="page-actions">
          <Link href={`/settings/project/${slugPath(slug)}`} className="btn btn-secondary">
            Project settings
          </Link>
          {project.data && <TriggerForm project={project.data} branch={branch} />}
        </div>
      </div>
      {project.isError && <ErrorNote error={project.error} />}
      <BranchFilter branch={branch} branches={branches} onChange={setBranch} />
      {pipelines.isPending ? (
        <Loading what="pipelines" />
      ) : pipelines.isError ? (
        <ErrorNote error={pipelines.error} />
      ) : items.length === 0 ? (
        <EmptyCard title={`No pipelines${branch ? ` on ${branch}` : ''} yet`}>
          Trigger one with the button above, a git hook, or the API.
        </EmptyCard>
      ) : (
        <div className="card table-card">
          <table className="pipelines">
            <caption className="sr-only">Pipelines{branch ? ` on branch ${branch}` : ''}</caption>
            <thead>
              <tr>
                <th scope="col">Status</th>
                <th scope="col">Pipeline</th>
                <th scope="col">Workflows</th>
                <th scope="col">Branch / commit</th>
                <th scope="col">Trigger</th>
                <th scope="col" className="num">
                  Duration
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((p) => (
                <PipelineRow key={p.id} pipeline={p} />
              ))}
            </tbody>
          </table>
          {pipelines.hasNextPage && (
            <div className="table-foot">
              <button
                type="button"
                className="btn btn-secondary"
                onClick={() => void pipelines.fetchNextPage()}
                disabled={pipelines.isFetchingNextPage}
              >
                {pipelines.isFetchingNextPage ? 'Loading…' : 'Show older pipelines'}
              </button>
            </div>
          )}
        </div>
      )}
    </>
  );
}

function BranchFilter({
  branch,
  branches,
  onChange,
}: {
  branch: string;
  branches: string[];
  onChange: (b: string) => void;
}) {
  const [draft, setDraft] = useState(branch);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onChange(draft.trim());
  };
  return (
    <form className="filter" onSubmit={submit} role="search" aria-label="Filter pipelines">
      <label htmlFor="branch-filter">Branch</label>
      <input
        id="branch-filter"
        list="branch-options"
        placeholder="all branches"
        value={draft}
        onChange={(e) => setDraft(e.target.value)}
      />
      <datalist id="branch-options">
        {branches.map((b) => (
          <option key={b} value={b} />
        ))}
      </datalist>
      <button type="submit" className="btn btn-secondary">
        Filter
      </button>
      {branch && (
        <button
          type="button"
          className="btn btn-link"
          onClick={() => {
            setDraft('');
            onChange('');
          }}
        >
          All branches
        </button>
      )}
    </form>
  );
}

function TriggerForm({ project, branch }: { project: Project; branch: string }) {
  const [open, setOpen] = useState(false);
  const [kind, setKind] = useState<'branch' | 'tag'>('branch');
  const [target, setTarget] = useState(branch || project.vcs_info.default_branch);
  const [params, setParams] = useState<ParamRow[]>([]);
  const { busy, error, submit } = useSubmit({ leavesPage: true });
  const [, navigate] = useLocation();
  const client = useQueryClient();
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit(() => {
      const parameters = readParameters(params);
      return api<{ number: number }>(`/api/v2/project/${slugPath(project.slug)}/pipeline`, {
        method: 'POST',
        body: {
          [kind]: target.trim(),
          ...(Object.keys(parameters).length ? { parameters } : {}),
        },
      }).then(async (created) => {
        await client.invalidateQueries({ queryKey: ['pipelines', project.slug] });
        navigate(`/pipelines/${slugPath(project.slug)}/${created.number}`);
      });
    });
  };
  const update = (i: number, change: Partial<ParamRow>) =>
    setParams((rows) => rows.map((r, j) => (j === i ? { ...r, ...change } : r)));
  if (!open) {
    return (
      <button type="button" className="btn btn-primary" onClick={() => setOpen(true)}>
        Trigger pipeline
      </button>
    );
  }
  return (
    <form className="trigger-form card" onSubmit={onSubmit} aria-label="Trigger a pipeline">
      <div className="trigger-target">
        <select
          aria-label="Ref type"
          value={kind}
          onChange={(e) => {
            const k = e.target.value as 'branch' | 'tag';
            setKind(k);
            if (k === 'tag' && target === project.vcs_info.default_branch) setTarget('');
          }}
        >
          <option value="branch">Branch</option>
          <option value="tag">Tag</option>
        </select>
        <input
          aria-label={kind === 'branch' ? 'Branch' : 'Tag'}
          value={target}
          onChange={(e) => setTarget(e.target.value)}
          placeholder={kind === 'branch' ? project.vcs_info.default_branch : 'v1.0.0'}
          required
          autoFocus
          spellCheck={false}
        />
      </div>
      <fieldset className="trigger-params">
        <legend>Parameters</legend>
        {params.map((r, i) => (
          <div key={i} className="param-row">
            <input
              aria-label={`Parameter ${i + 1} name`}
              placeholder="name"
              value={r.name}
              onChange={(e) => update(i, { name: e.target.value })}
              spellCheck={false}
            />
            <select
              aria-label={`Parameter ${i + 1} type`}
              value={r.type}
              onChange={(e) => {
                const type = e.target.value as ParamType;
                update(i, { type, value: type === 'boolean' ? 'true' : '' });
              }}
            >
              <option value="string">string</option>
              <option value="boolean">boolean</option>
              <option value="integer">integer</option>
            </select>
            {r.type === 'boolean' ? (
              <select
                aria-label={`Parameter ${i + 1} value`}
                value={r.value}
                onChange={(e) => update(i, { value: e.target.value })}
              >
                <option value="true">true</option>
                <option value="false">false</option>
              </select>
            ) : (
              <input
                aria-label={`Parameter ${i + 1} value`}
                placeholder="value"
                inputMode={r.type === 'integer' ? 'numeric' : undefined}
                value={r.value}
                onChange={(e) => update(i, { value: e.target.value })}
                spellCheck={false}
              />
            )}
            <button
              type="button"
              className="btn btn-link"
              aria-label={`Remove parameter ${i + 1}`}
              onClick={() => setParams((rows) => rows.filter((_, j) => j !== i))}
            >
              Remove
            </button>
          </div>
        ))}
        <button
          type="button"
          className="btn btn-secondary"
          onClick={() => setParams((rows) => [...rows, { name: '', type: 'string', value: '' }])}
        >
          Add parameter
        </button>
      </fieldset>
      <div className="trigger-actions">
        <button type="submit" className="btn btn-primary" disabled={busy || !target.trim()}>
          {busy ? 'Triggering…' : 'Run pipeline'}
        </button>
        <button type="button" className="btn btn-link" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
      <FormError error={error} />
    </form>
  );
}

function PipelineRow({ pipeline: p }: { pipeline: Pipeline }) {
  const workflows = useQuery({
    queryKey: ['workflows', p.id],
    queryFn: () => api<Page<Workflow>>(`/api/v2/pipeline/${p.id}/workflow`),
    refetchInterval: (q) =>
      !q.state.data || q.state.data.items.some((w) => isActive(w.status)) || isActive(p.state)
        ? ROW_REFRESH_MS
        : false,
  });
  const wfs = workflows.data?.items;
  const status = pipelineStatus(p.state, wfs);
  const running = isActive(status);
  const now = useNow(running);
  const href = `/pipelines/${slugPath(p.project_slug)}/${p.number}`;
  return (
    <tr>
      <td>
        <StatusBadge status={status} />
      </td>
      <td>
        <Link href={href} className="pipeline-link" aria-label={`Pipeline ${p.number}`}>
          #{p.number}
        </Link>
      </td>
      <td>
        <ul className="workflow-chips">
          {(wfs ?? []).map((w) => (
            <li key={w.id}>
              <Link href={`${href}/workflows/${w.id}`} className="chip" title={`${w.name}: ${w.status}`}>
                <StatusIcon status={w.status} size={14} />
                {w.name}
              </Link>
            </li>
          ))}
          {p.errors.length > 0 && (
            <li className="error-text" title={p.errors.map((e) => e.message).join('\n')}>
              {p.errors[0]!.message.slice(0, 80)}
            </li>
          )}
        </ul>
      </td>
      <td>
        <div className="commit">
          {p.vcs.branch !== undefined && <span className="branch">{p.vcs.branch}</span>}
          {p.vcs.tag !== undefined && <span className="branch tag">{p.vcs.tag}</span>}
          <span className="mono sha">{shortSha(p.vcs.revision)}</span>
        </div>
        {p.vcs.commit && <div className="commit-subject">{p.vcs.commit.subject}</div>}
      </td>
      <td>
        <div>{p.trigger.actor.login}</div>
        <div className="muted small">
          {p.trigger.actor.login !== p.trigger.type && `${p.trigger.type} · `}
          <time dateTime={p.created_at} title={new Date(p.created_at).toLocaleString()}>
            {timeAgo(p.created_at, now)}
          </time>
        </div>
      </td>
      <td className="num mono">{pipelineDuration(wfs, now)}</td>
    </tr>
  );
}
