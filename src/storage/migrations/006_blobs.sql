-- Torus schema, version 6 (owner: blobs/): what jobs store besides output — artifacts, test
-- results, caches and workspace layers. The bytes live in the object store; these rows say what
-- exists. A row is written only after its object is complete, so a lost upload leaves no row.

-- store_artifacts: one row per file; the object is `artifacts/<jobId>/<nodeIndex>/<path>`.
CREATE TABLE artifacts (
  job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  node_index integer NOT NULL,
  path text NOT NULL,
  task_id uuid NOT NULL,
  object_key text NOT NULL,
  size bigint NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (job_id, node_index, path)
);

-- store_test_results: one row per test case, in the order the agent sent them (seq per task).
CREATE TABLE test_results (
  job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  node_index integer NOT NULL,
  seq integer NOT NULL,
  name text NOT NULL,
  classname text NOT NULL,
  file text,
  -- success | failure | error | skipped
  result text NOT NULL,
  message text,
  -- seconds
  run_time double precision NOT NULL,
  source text NOT NULL DEFAULT 'unknown',
  PRIMARY KEY (job_id, node_index, seq)
);

-- save_cache: immutable per (project, key); the object is `caches/<projectId>/<uuid>`.
CREATE TABLE caches (
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  key text NOT NULL,
  object_key text NOT NULL,
  size bigint NOT NULL,
  -- zstd | gzip | none
  encoding text NOT NULL,
  job_id uuid,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (project_id, key)
);
CREATE INDEX caches_project_created ON caches (project_id, created_at DESC);

-- persist_to_workspace: one compressed tar layer per upload; the object is `workspaces/<workspaceId>/<layerId>`.
CREATE TABLE workspace_layers (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL,
  job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  node_index integer NOT NULL,
  object_key text NOT NULL,
  size bigint NOT NULL,
  encoding text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX workspace_layers_job ON workspace_layers (job_id, created_at);
