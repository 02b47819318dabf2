-- Torus schema, version 10 (owner: pipelines/): legacy scheduled workflows (`triggers: - schedule:
-- {cron, filters: {branches}}`). The config of a branch's newest pipeline decides which of its
-- workflows run on which cron for that branch (pipelines/schedules.ts keeps one row per branch,
-- workflow and cron); the schedule loop fires each row when next_run_at comes, in a pipeline of its
-- own that runs that workflow alone.
CREATE TABLE workflow_schedules (
  id uuid PRIMARY KEY,
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  branch text NOT NULL,
  workflow text NOT NULL,
  cron text NOT NULL,
  next_run_at timestamptz NOT NULL,
  last_run_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, branch, workflow, cron)
);
CREATE INDEX workflow_schedules_due ON workflow_schedules (next_run_at);

-- the number of the pipeline whose config last set a branch's schedules: an older pipeline that
-- finishes compiling late does not overwrite them
CREATE TABLE workflow_schedule_sources (
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  branch text NOT NULL,
  pipeline_number integer NOT NULL,
  PRIMARY KEY (project_id, branch)
);

-- a pipeline started by a workflow schedule: {"id", "workflow", "cron"} (the row may be gone by the
-- time the pipeline compiles: what it runs is kept here)
ALTER TABLE pipelines ADD COLUMN scheduled_workflow jsonb;
