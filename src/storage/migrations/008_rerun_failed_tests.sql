-- Torus schema, version 8 (owner: pipelines/): a workflow rerun that reruns failed tests only
-- (CircleCI's "Rerun failed tests"): its jobs' `circleci tests run` keep only the tests that failed
-- in the job's run in the workflow it reruns (`rerun_of`).
ALTER TABLE workflows ADD COLUMN rerun_failed_tests boolean NOT NULL DEFAULT false;
