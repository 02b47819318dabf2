// The in-job tools every task gets before its first step: the `circleci` / `circleci-agent`
// command (../shim/) on the job's PATH, the test timings of earlier runs staged for
// `circleci tests split --split-by=timings`, in a job rerunning failed tests the tests that failed
// in its previous run (for `circleci tests run`), and the `circleci step halt` marker the agent
// checks after each step. Everything lives under the task directory, so it goes with the environment and
// never lands in a cache or workspace saved from `~`.
import type { TaskSpec } from '../../scheduler/protocol.js';
import type { Environment } from '../executor.js';
import { timingsFile, type TestCase } from '../junit.js';
import { DEFAULT_SANDBOX_PATH } from '../layout.js';
import {
  CIRCLECI_SHIM_SCRIPT,
  DEFAULT_HALT_FILE,
  FAILED_TESTS_FILE_ENV,
  HALT_FILE_ENV,
  failedTestsFile,
  SHIM_COMMAND_NAMES,
  TIMINGS_FILE_ENV,
} from '../shim/index.js';
import { execCollect } from './artifacts.js';
import type { BlobClient } from './context.js';

/** the directory under Environment.taskDirectory holding the tools and their files */
export const JOB_TOOLS_DIRECTORY = '.circleci-torus';

/**
 * Writes the tools into the environment and stages the timings file. Returns the variables to
 * add to the job's environment (PATH with the tools first, where the timings and halt files are).
 */
export async function prepareJobTools(
  environment: Environment,
  spec: TaskSpec,
  blobs: BlobClient | undefined,
  print: (text: string) => void,
): Promise<Record<string, string>> {
  const dir = `${environment.taskDirectory.replace(/\/+$/, '')}/${JOB_TOOLS_DIRECTORY}`;
  const bin = `${dir}/bin`;
  for (const name of SHIM_COMMAND_NAMES) {
    await environment.writeFile(`${bin}/${name}`, CIRCLECI_SHIM_SCRIPT, 0o755);
  }
  const timingsPath = `${dir}/timings.tsv`;
  await environment.writeFile(timingsPath, timingsFile(await fetchTimings(spec, blobs, print)), 0o644);
  const env: Record<string, string> = {
    PATH: `${bin}:${await jobPath(environment)}`,
    [TIMINGS_FILE_ENV]: timingsPath,
    [HALT_FILE_ENV]: `${dir}/halt`,
  };
  const rerun = spec.rerunFailedTests;
  if (rerun) {
    const failedPath = `${dir}/failed-tests.tsv`;
    await environment.writeFile(failedPath, failedTestsFile(rerun), 0o644);
    env[FAILED_TESTS_FILE_ENV] = failedPath;
    print(
      rerun.failed.length > 0
        ? `Rerun failed tests: ${rerun.failed.length} of the ${rerun.totalTests} test cases of the previous run of ${spec.jobName} failed; \`circleci tests run\` runs only the files and classes they belong to\n`
        : `Rerun failed tests: the previous run of ${spec.jobName} stored no failed test; \`circleci tests run\` runs every test it is given\n`,
    );
  }
  return env;
}

async function fetchTimings(
  spec: TaskSpec,
  blobs: BlobClient | undefined,
  print: (text: string) => void,
): Promise<TestCase[]> {
  if (!blobs) return [];
  try {
    const { source, tests } = await blobs.testTimings();
    if (source === 'none' || tests.length === 0) {
      print(`Test timings: no stored test results of earlier runs of ${spec.jobName}\n`);
      return [];
    }
    const where = source === 'branch' ? 'this branch' : 'the default branch';
    print(`Test timings: ${tests.length} test cases from the last run of ${spec.jobName} on ${where}\n`);
    return tests;
  } catch (err) {
    // the job can still run: `circleci tests split --split-by=timings` falls back to splitting by name
    print(
      `Warning: test timings could not be fetched (${(err as Error).message}); splitting by timings falls back to names\n`,
    );
    return [];
  }
}

/** The PATH a step sees without ours: the job's, else the image's (a container's own ENV PATH). */
async function jobPath(environment: Environment): Promise<string> {
  if (environment.jobEnvironment.PATH) return environment.jobEnvironment.PATH;
  const r = await execCollect(environment, environment.jobEnvironment, [
    '/bin/sh',
    '-c',
    'printf "%s" "$PATH"',
  ]);
  const found = r.ok ? r.out.trim() : '';
  return found === '' ? DEFAULT_SANDBOX_PATH : found;
}

/** Whether a step ran `circleci step halt`: the job then ends successfully (unless it is already failing). */
export async function haltRequested(environment: Environment, env: Record<string, string>): Promise<boolean> {
  const marker =
    env[HALT_FILE_ENV] ?? `${environment.homeDirectory.replace(/\/+$/, '')}/${DEFAULT_HALT_FILE}`;
  const r = await execCollect(environment, env, ['/bin/sh', '-c', 'test -e "$0"', marker]);
  if (r.exitCode === 0) return true;
  if (r.exitCode === 1) return false;
  throw new Error(`cannot check for ${marker} in the environment: ${r.err.trim() || `exit ${r.exitCode}`}`);
}
