-- Torus schema, version 1: accounts, projects, pipelines, workflows, jobs, tasks, steps, output, agents.
-- Owners: accounts/ (users, api_tokens, organizations, org_members), pipelines/ (projects, pipelines,
-- workflows, jobs), scheduler/ (tasks, agents, agent_tokens), api/ agent protocol (steps, output_chunks).

CREATE TABLE settings (
  key text PRIMARY KEY,
  value jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id uuid PRIMARY KEY,
  login text NOT NULL UNIQUE,
  name text NOT NULL DEFAULT '',
  email text,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
  -- GitHub sign-in (a later issue) links an account by its numeric GitHub id.
  github_id bigint UNIQUE,
  suspended_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  label text NOT NULL DEFAULT '',
  -- sha256 hex of the token; the token itself is shown once.
  token_hash text NOT NULL UNIQUE,
  -- first characters, to let a user recognise a token in a list
  token_hint text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE organizations (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  -- 'circleci' for plain-git organizations, 'github' later.
  vcs_type text NOT NULL DEFAULT 'circleci',
  slug text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE org_members (
  org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, user_id)
);

CREATE TABLE projects (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations (id),
  name text NOT NULL,
  -- 'circleci/<org>/<project>' for plain-git projects
  slug text NOT NULL UNIQUE,
  vcs_url text NOT NULL,
  default_branch text NOT NULL DEFAULT 'main',
  next_pipeline_number integer NOT NULL DEFAULT 1,
  next_job_number integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pipelines (
  id uuid PRIMARY KEY,
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  number integer NOT NULL,
  -- created | errored | setup-pending | setup | pending
  state text NOT NULL,
  -- explicit | api | webhook | scheduled_pipeline
  trigger_type text NOT NULL,
  actor_id uuid REFERENCES users (id),
  received_at timestamptz NOT NULL DEFAULT now(),
  branch text,
  tag text,
  revision text,
  -- commit subject/body/author, target and origin repository URLs
  vcs jsonb NOT NULL DEFAULT '{}',
  parameters jsonb NOT NULL DEFAULT '{}',
  -- CircleCI's errors[{type, message}]
  errors jsonb NOT NULL DEFAULT '[]',
  config_source text,
  config_compiled text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, number)
);
CREATE INDEX pipelines_project_created ON pipelines (project_id, created_at DESC);

CREATE TABLE workflows (
  id uuid PRIMARY KEY,
  pipeline_id uuid NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  name text NOT NULL,
  -- running | failing | on_hold | success | failed | error | canceled | not_run | unauthorized
  status text NOT NULL,
  started_by uuid REFERENCES users (id),
  canceled_by uuid REFERENCES users (id),
  errored_by uuid REFERENCES users (id),
  -- set on a workflow created by a rerun: the workflow it reruns
  rerun_of uuid REFERENCES workflows (id),
  -- CIRCLE_WORKFLOW_WORKSPACE_ID: shared by a workflow and its reruns
  workspace_id uuid NOT NULL,
  tag text,
  created_at timestamptz NOT NULL DEFAULT now(),
  stopped_at timestamptz
);
CREATE INDEX workflows_pipeline ON workflows (pipeline_id, created_at);

CREATE TABLE jobs (
  id uuid PRIMARY KEY,
  workflow_id uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  -- the job's name in the workflow (after renaming, matrix expansion, auto-suffixing)
  name text NOT NULL,
  -- build | approval | no-op
  type text NOT NULL,
  -- project-wide build number, given when the job is first queued; approvals have none
  number integer,
  -- blocked | queued | running | success | failed | timedout | infrastructure_fail | canceled |
  -- on_hold | not_run | retried | unauthorized | terminated-unknown
  status text NOT NULL,
  -- [{name, statuses[]}] as compiled
  requires jsonb NOT NULL DEFAULT '[]',
  approval_request_id uuid,
  approved_by uuid REFERENCES users (id),
  canceled_by uuid REFERENCES users (id),
  -- the compiled job (executor, steps, environment), null for approvals
  spec jsonb,
  parallelism integer NOT NULL DEFAULT 1,
  -- queue key of its tasks, e.g. 'machine:medium', 'docker:large', 'myns/runner'
  resource_class text,
  executor_type text,
  contexts jsonb NOT NULL DEFAULT '[]',
  -- job details' messages[{type, message, reason}]: why a job waits, infrastructure notes
  messages jsonb NOT NULL DEFAULT '[]',
  created_at timestamptz NOT NULL DEFAULT now(),
  queued_at timestamptz,
  started_at timestamptz,
  stopped_at timestamptz
);
CREATE INDEX jobs_workflow ON jobs (workflow_id);
CREATE UNIQUE INDEX jobs_project_number ON jobs (project_id, number) WHERE number IS NOT NULL;

CREATE TABLE agents (
  id text PRIMARY KEY,
  name text NOT NULL DEFAULT '',
  hostname text NOT NULL DEFAULT '',
  version text NOT NULL DEFAULT '',
  -- resource classes (patterns) this agent claims from
  resource_classes jsonb NOT NULL DEFAULT '[]',
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_tokens (
  id uuid PRIMARY KEY,
  -- a resource class or a pattern ending in '*' ('machine:*')
  resource_class text NOT NULL,
  name text NOT NULL DEFAULT '',
  token_hash text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

CREATE TABLE tasks (
  id uuid PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  node_index integer NOT NULL,
  resource_class text NOT NULL,
  -- queued | running | success | failed | timedout | infrastructure_fail | canceled
  status text NOT NULL,
  -- how many times a lease on it has expired
  attempt integer NOT NULL DEFAULT 0,
  agent_id text,
  lease_id uuid,
  lease_expires_at timestamptz,
  cancel_requested boolean NOT NULL DEFAULT false,
  -- the TaskSpec an agent receives (scheduler/protocol.ts)
  spec jsonb NOT NULL,
  message text,
  queued_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  stopped_at timestamptz,
  UNIQUE (job_id, node_index)
);
CREATE INDEX tasks_queue ON tasks (resource_class, queued_at) WHERE status = 'queued';
CREATE INDEX tasks_running_lease ON tasks (lease_expires_at) WHERE status = 'running';

CREATE TABLE steps (
  task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  step_index integer NOT NULL,
  name text NOT NULL,
  type text NOT NULL,
  -- running | success | failed | timedout | canceled
  status text NOT NULL,
  exit_code integer,
  background boolean NOT NULL DEFAULT false,
  started_at timestamptz NOT NULL DEFAULT now(),
  stopped_at timestamptz,
  -- object-store key of the finished step's output (JSON lines of {type, time, message})
  output_key text,
  output_bytes bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (task_id, step_index)
);

-- Output of running steps, in arrival order; moved to the object store when the step ends.
CREATE TABLE output_chunks (
  task_id uuid NOT NULL,
  step_index integer NOT NULL,
  seq integer NOT NULL,
  -- 'out' or 'err'
  stream text NOT NULL,
  ts timestamptz NOT NULL,
  data text NOT NULL,
  PRIMARY KEY (task_id, step_index, seq)
);
