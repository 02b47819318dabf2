-- Torus schema, version 9 (owner: blobs/): retention. Artifacts, test results, caches and workspace
-- layers expire by the time they were stored (blobs/retention.ts); the sweep reads them oldest
-- first, in batches, so each table gets an index on that time.

-- Test results had no time of their own: existing rows take their job's (stopped, else started,
-- else created); new rows get the upload's.
ALTER TABLE test_results ADD COLUMN created_at timestamptz;
UPDATE test_results r SET created_at = COALESCE(j.stopped_at, j.started_at, j.created_at)
  FROM jobs j WHERE j.id = r.job_id;
ALTER TABLE test_results ALTER COLUMN created_at SET DEFAULT now(),
  ALTER COLUMN created_at SET NOT NULL;

CREATE INDEX artifacts_created ON artifacts (created_at);
CREATE INDEX test_results_created ON test_results (created_at);
CREATE INDEX caches_created ON caches (created_at);
CREATE INDEX workspace_layers_created ON workspace_layers (created_at);
