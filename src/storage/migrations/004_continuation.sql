-- Torus schema, version 4 (owner: pipelines/): dynamic configuration — setup workflows and
-- POST /api/v2/pipeline/continue.

-- The setup configuration of a pipeline whose config said `setup: true` (GET /pipeline/{id}/config
-- serves them as `setup-config` / `compiled-setup-config`); config_source/config_compiled hold the
-- setup config until the pipeline is continued, then the continuation config.
ALTER TABLE pipelines ADD COLUMN setup_config_source text;
ALTER TABLE pipelines ADD COLUMN setup_config_compiled text;
-- when POST /pipeline/continue created the continuation's workflows
ALTER TABLE pipelines ADD COLUMN continued_at timestamptz;

-- CIRCLE_CONTINUATION_KEY of the setup workflow's jobs: one key per queued job, stored as the sha256
-- hex of the key (the key itself is only in the job's environment). A pipeline is continued once.
CREATE TABLE continuation_keys (
  key_hash text PRIMARY KEY,
  pipeline_id uuid NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
  job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL
);
CREATE INDEX continuation_keys_pipeline ON continuation_keys (pipeline_id);
CREATE INDEX continuation_keys_job ON continuation_keys (job_id);
