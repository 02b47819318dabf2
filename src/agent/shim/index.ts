// The in-job `circleci` / `circleci-agent` command (tests glob|split|run, step halt, env subst) as
// the text of one POSIX sh script, which the agent writes into every job environment before the
// steps run. The script is circleci.sh beside this file; see README.md for what it reproduces.
import { readFileSync } from 'node:fs';
import type { RerunFailedTests } from '../../scheduler/protocol.js';

/** The script's text; write it with mode 0o755 as both `circleci` and `circleci-agent` on the job's PATH. */
export const CIRCLECI_SHIM_SCRIPT: string = readFileSync(new URL('./circleci.sh', import.meta.url), 'utf8');

/** The names the script answers to inside a job. */
export const SHIM_COMMAND_NAMES = ['circleci', 'circleci-agent'] as const;

/** Env var naming the staged timings file (`name<TAB>classname<TAB>file<TAB>seconds` lines, see junit.ts timingsFile). */
export const TIMINGS_FILE_ENV = 'CIRCLE_INTERNAL_TEST_TIMINGS';
/**
 * Env var naming the failed tests staged in a job of a "rerun failed tests" workflow (see
 * failedTestsFile); `tests run` filters its input to them. Unset in every other job.
 */
export const FAILED_TESTS_FILE_ENV = 'CIRCLE_INTERNAL_FAILED_TESTS';
/** Env var naming the marker file `circleci step halt` creates; the agent checks it after each step. */
export const HALT_FILE_ENV = 'CIRCLE_INTERNAL_HALT_FILE';

/** Where the script looks when the env vars are unset, relative to the job's home directory. */
export const DEFAULT_TIMINGS_FILE = '.circleci-torus/timings.tsv';
export const DEFAULT_HALT_FILE = '.circleci-torus/halt';

/** The env vars to give a job so the script finds the files the agent stages and checks (paths inside the environment). */
export function shimEnvironment(homeDirectory: string): Record<string, string> {
  const home = homeDirectory.replace(/\/+$/, '');
  return {
    [TIMINGS_FILE_ENV]: `${home}/${DEFAULT_TIMINGS_FILE}`,
    [HALT_FILE_ENV]: `${home}/${DEFAULT_HALT_FILE}`,
  };
}

/**
 * The failed tests file the script reads: `# workflow ID` and `# total N` (test cases the previous
 * run stored), then one failed test case per line, `name<TAB>classname<TAB>file` (file may be empty).
 */
export function failedTestsFile(rerun: RerunFailedTests): string {
  const clean = (v: string) => v.replace(/[\t\r\n]+/g, ' ');
  const lines = [
    '# torus failed tests v1: name\tclassname\tfile',
    `# workflow ${clean(rerun.workflowId)}`,
    `# total ${rerun.totalTests}`,
    ...rerun.failed.map((t) => [clean(t.name), clean(t.classname), clean(t.file ?? '')].join('\t')),
  ];
  return lines.join('\n') + '\n';
}
