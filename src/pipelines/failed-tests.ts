// CircleCI's "Rerun failed tests": a rerun of a workflow from failed whose jobs' `circleci tests run`
// receive only the tests that failed in the job's previous run (its run in the workflow being
// rerun), read from the test results that run stored. A job whose previous run stored no failed
// test gets an empty list, and `circleci tests run` then runs every test it is given.
import type { Queryable } from '../storage/index.js';
import type { RerunFailedTests } from '../scheduler/index.js';

/** test_results.result values that count as failed (skipped tests are not rerun) */
const FAILED_RESULTS = ['failure', 'error'];

/** Whether any of `jobIds` (jobs of a finished workflow) stored a failed test. */
export async function anyFailedTests(tx: Queryable, jobIds: string[]): Promise<boolean> {
  if (jobIds.length === 0) return false;
  const { rows } = await tx.query<{ found: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM test_results WHERE job_id = ANY($1::uuid[]) AND result = ANY($2::text[])) AS found`,
    [jobIds, FAILED_RESULTS],
  );
  return rows[0]?.found === true;
}

/**
 * For a job of a failed-tests rerun: the tests that failed in its previous run (every parallel run
 * of it; each test once). Null when the job's workflow is no such rerun.
 */
export async function failedTestsOfPreviousRun(
  db: Queryable,
  jobId: string,
): Promise<RerunFailedTests | null> {
  const { rows } = await db.query<{ name: string; rerun_of: string | null; rerun_failed_tests: boolean }>(
    `SELECT j.name, w.rerun_of, w.rerun_failed_tests
       FROM jobs j JOIN workflows w ON w.id = j.workflow_id
      WHERE j.id = $1`,
    [jobId],
  );
  const job = rows[0];
  if (!job || !job.rerun_failed_tests || !job.rerun_of) return null;
  // a job the previous workflow carried over from an earlier one keeps its results under the original
  const prev = await db.query<{ id: string }>(
    'SELECT coalesce(copied_from, id) AS id FROM jobs WHERE workflow_id = $1 AND name = $2',
    [job.rerun_of, job.name],
  );
  const previousJobId = prev.rows[0]?.id;
  if (!previousJobId) return { workflowId: job.rerun_of, totalTests: 0, failed: [] };
  const total = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM test_results WHERE job_id = $1',
    [previousJobId],
  );
  const failed = await db.query<{ name: string; classname: string; file: string | null }>(
    `SELECT name, classname, file FROM test_results
      WHERE job_id = $1 AND result = ANY($2::text[])
      GROUP BY name, classname, file
      ORDER BY classname, name, file`,
    [previousJobId, FAILED_RESULTS],
  );
  return {
    workflowId: job.rerun_of,
    totalTests: total.rows[0]?.n ?? 0,
    failed: failed.rows.map((t) => ({
      name: t.name,
      classname: t.classname,
      ...(t.file ? { file: t.file } : {}),
    })),
  };
}
