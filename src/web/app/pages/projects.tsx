// The projects the signed-in user can see, each with its newest pipeline, each opening its pipelines.
import { useQuery } from '@tanstack/react-query';
import { Link } from 'wouter';
import { api, slugPath, type Page, type Pipeline, type Project, type Workflow } from '../api';
import { EmptyCard, QueryView, StatusBadge, useNow } from '../components';
import { timeAgo } from '../format';
import { isActive, pipelineStatus } from '../status';

/** the cards re-read their newest pipeline this often */
const LATEST_REFRESH_MS = 10_000;

export function ProjectsPage() {
  const projects = useQuery({
    queryKey: ['projects'],
    queryFn: () => api<Page<Project>>('/api/v2/torus/projects'),
  });
  return (
    <>
      <div className="page-head">
        <h1>Projects</h1>
      </div>
      <QueryView
        query={projects}
        what="projects"
        isEmpty={(data) => data.items.length === 0}
        empty={
          <EmptyCard title="No projects yet">
            Add a git repository with <code>npx torus project add /path/to/repo --org myorg</code>, or through{' '}
            <code>POST /api/v2/organization/&#123;org&#125;/project</code>.
          </EmptyCard>
        }
      >
        {(data) => (
          <ul className="project-list">
            {data.items.map((p) => (
              <li key={p.id} className="card project-card">
                <Link href={`/pipelines/${slugPath(p.slug)}`} className="project-link">
                  <span className="project-org">{p.organization_name} /</span> {p.name}
                </Link>
                <p className="project-meta">
                  <span className="mono">{p.vcs_info.vcs_url}</span>
                </p>
                <LatestPipeline slug={p.slug} />
              </li>
            ))}
          </ul>
        )}
      </QueryView>
    </>
  );
}

function LatestPipeline({ slug }: { slug: string }) {
  const latest = useQuery({
    queryKey: ['latest-pipeline', slug],
    queryFn: async () =>
      (await api<Page<Pipeline>>(`/api/v2/project/${slugPath(slug)}/pipeline`)).items[0] ?? null,
    refetchInterval: LATEST_REFRESH_MS,
  });
  const p = latest.data;
  const workflows = useQuery({
    queryKey: ['workflows', p?.id],
    queryFn: () => api<Page<Workflow>>(`/api/v2/pipeline/${p!.id}/workflow`),
    enabled: Boolean(p),
    refetchInterval: (q) => (q.state.data?.items.some((w) => isActive(w.status)) ? LATEST_REFRESH_MS : false),
  });
  const now = useNow(false);
  if (latest.isPending) return <p className="project-latest muted">…</p>;
  if (!p) return <p className="project-latest muted">No pipelines yet</p>;
  return (
    <p className="project-latest">
      <StatusBadge status={pipelineStatus(p.state, workflows.data?.items)} />
      <span>#{p.number}</span>
      {(p.vcs.branch ?? p.vcs.tag) && <span className="branch">{p.vcs.branch ?? p.vcs.tag}</span>}
      <span className="muted small">{timeAgo(p.created_at, now)}</span>
    </p>
  );
}
