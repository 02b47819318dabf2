-- Torus schema, version 2 (owner: scheduler/): what the scheduler adds to version 1.

-- Jobs whose first task claim has been reported (SchedulerHooks.onTaskStarted), one row per job: the
-- claim statement inserts here with ON CONFLICT DO NOTHING, so exactly one claim per job is "the
-- first", without a lock. No foreign key on purpose: an FK check would take a share lock on the job
-- row inside the claim, and the pipelines engine holds job rows while it cancels tasks (deadlock).
-- Rows are deleted when the job's tasks are all final.
CREATE TABLE job_task_starts (
  job_id uuid PRIMARY KEY,
  first_task_id uuid NOT NULL,
  started_at timestamptz NOT NULL
);
