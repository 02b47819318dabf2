-- Torus schema, version 3 (owner: pipelines/): what the pipelines engine adds to version 1.

-- A job of a rerun workflow that was not run again but carried over from the workflow it reruns
-- (CircleCI's "rerun from failed" keeps the successful upstream jobs): the job it copies.
ALTER TABLE jobs ADD COLUMN copied_from uuid REFERENCES jobs (id) ON DELETE SET NULL;

-- CircleCI's workflow fields `max_auto_reruns` and `auto_rerun_number`.
ALTER TABLE workflows ADD COLUMN max_auto_reruns integer;
ALTER TABLE workflows ADD COLUMN auto_rerun_number integer NOT NULL DEFAULT 0;

-- recover() looks for pipelines a crash left in 'created' and workflows not yet final.
CREATE INDEX pipelines_created ON pipelines (created_at) WHERE state = 'created';
CREATE INDEX workflows_active ON workflows (created_at) WHERE status IN ('running', 'failing', 'on_hold');
-- CIRCLE_PREVIOUS_BUILD_NUM and pipeline.git.base_revision look back along a branch.
CREATE INDEX pipelines_project_branch ON pipelines (project_id, branch, number DESC);

-- the job's place in its workflow as compiled (source order): job numbers and listings follow it
ALTER TABLE jobs ADD COLUMN position integer NOT NULL DEFAULT 0;

-- the `pipeline.*` values the config was compiled with (GET /pipeline/{id}/values)
ALTER TABLE pipelines ADD COLUMN pipeline_values jsonb;
