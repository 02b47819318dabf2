-- Torus schema, version 12 (owner: pipelines/): scheduled pipelines, CircleCI's schedule triggers
-- (API v2 `/project/{slug}/schedule`, pipelines/pipeline-schedules.ts): a named timetable that
-- triggers a pipeline with parameters (branch or tag among them). next_run_at is null for a
-- timetable that can never fire (31 February).
CREATE TABLE pipeline_schedules (
  id uuid PRIMARY KEY,
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  name text NOT NULL,
  description text,
  timetable jsonb NOT NULL,
  -- current | system
  attribution_actor text NOT NULL,
  actor_id uuid REFERENCES users (id) ON DELETE SET NULL,
  parameters jsonb NOT NULL,
  next_run_at timestamptz,
  last_run_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, name)
);
CREATE INDEX pipeline_schedules_due ON pipeline_schedules (next_run_at);

-- the scheduled pipeline that triggered a pipeline: {"id", "name"} (pipeline.schedule.*)
ALTER TABLE pipelines ADD COLUMN pipeline_schedule jsonb;
