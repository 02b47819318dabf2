// A workflow drawn as a graph: one box per job, coloured by status, linked to its job page; edges
// for `requires`; approval jobs as their own kind of box with an Approve button while on hold; the
// instances of a matrix job framed together under the job's name, with how many passed.
import { useQueryClient } from '@tanstack/react-query';
import { Link } from 'wouter';
import { api, slugPath, type Workflow, type WorkflowJob } from './api';
import { ActionButton, StatusIcon } from './components';
import { elapsed } from './format';
import { layoutGraph, matrixGroups, NODE_HEIGHT, NODE_WIDTH } from './graph';
import { statusLabel, toneOf } from './status';

export function WorkflowGraph({
  workflow,
  jobs,
  now,
}: {
  workflow: Workflow;
  jobs: WorkflowJob[];
  now: number;
}) {
  const groupOf = matrixGroups(jobs);
  const layout = layoutGraph(jobs, groupOf);
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const groupJobs = (name: string) => jobs.filter((j) => groupOf.get(j.id) === name);
  return (
    <div className="graph-scroll">
      <div className="graph" style={{ width: layout.width, height: layout.height }}>
        <svg
          className="graph-edges"
          width={layout.width}
          height={layout.height}
          aria-hidden="true"
          focusable="false"
        >
          {layout.edges.map((e) => (
            <path
              key={`${e.from}-${e.to}`}
              d={e.path}
              className={`edge tone-${toneOf(byId.get(e.from)?.status ?? '')}`}
            />
          ))}
        </svg>
        {layout.groups.map((g) => {
          const members = groupJobs(g.name);
          const passed = members.filter((j) => j.status === 'success').length;
          return (
            <div
              key={`${g.name}-${g.x}-${g.y}`}
              className="graph-group"
              style={{ left: g.x, top: g.y, width: g.width, height: g.height }}
              data-matrix={g.name}
            >
              <span className="graph-group-label">
                {g.name}{' '}
                <span className="muted">
                  matrix · {passed}/{g.size} passed
                </span>
              </span>
            </div>
          );
        })}
        <ul className="graph-nodes" aria-label={`Jobs of workflow ${workflow.name}`}>
          {jobs.map((j) => {
            const at = layout.nodes.get(j.id)!;
            return (
              <li
                key={j.id}
                className="graph-node-slot"
                style={{ left: at.x, top: at.y, width: NODE_WIDTH, height: NODE_HEIGHT }}
              >
                <JobNode workflow={workflow} job={j} now={now} />
              </li>
            );
          })}
        </ul>
      </div>
    </div>
  );
}

function JobNode({ workflow, job: j, now }: { workflow: Workflow; job: WorkflowJob; now: number }) {
  const client = useQueryClient();
  const label = `${j.name}: ${statusLabel(j.status)}`;
  const body = (
    <>
      <StatusIcon status={j.status} />
      <span className="node-name">{j.name}</span>
      <span className="node-time mono">{elapsed(j.started_at, j.stopped_at, now)}</span>
    </>
  );
  const cls = `node tone-${toneOf(j.status)}`;
  if (j.type === 'approval') {
    return (
      <div className={`${cls} node-approval`} title={label} data-job={j.name}>
        <StatusIcon status={j.status} />
        <span className="node-name">{j.name}</span>
        {j.status === 'on_hold' && j.approval_request_id ? (
          <ActionButton
            label="Approve"
            busyLabel="Approving…"
            variant="primary"
            ariaLabel={`Approve ${j.name}`}
            run={() =>
              api(`/api/v2/workflow/${workflow.id}/approve/${j.approval_request_id}`, {
                method: 'POST',
              }).then(() => client.invalidateQueries({ queryKey: ['workflow-jobs', workflow.id] }))
            }
          />
        ) : (
          <span className="node-time">
            {j.status === 'success' ? 'approved' : statusLabel(j.status).toLowerCase()}
          </span>
        )}
      </div>
    );
  }
  if (j.job_number === undefined) {
    return (
      <div className={cls} title={label} data-job={j.name}>
        {body}
      </div>
    );
  }
  return (
    <Link
      href={`/pipelines/${slugPath(workflow.project_slug)}/${workflow.pipeline_number}/workflows/${workflow.id}/jobs/${j.job_number}`}
      className={cls}
      title={label}
      aria-label={label}
      data-job={j.name}
    >
      {body}
    </Link>
  );
}
