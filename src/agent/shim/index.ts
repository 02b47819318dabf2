// The in-job `circleci` / `circleci-agent` command (tests glob|split|run, step halt, env subst) as
// the text of one POSIX sh script, which the agent writes into every job environment before the
// steps run. The script is circleci.sh beside this file; see README.md for what it reproduces.
import { readFileSync } from 'node:fs';

/** The script's text; write it with mode 0o755 as both `circleci` and `circleci-agent` on the job's PATH. */
export const CIRCLECI_SHIM_SCRIPT: string = readFileSync(new URL('./circleci.sh', import.meta.url), 'utf8');

/** The names the script answers to inside a job. */
export const SHIM_COMMAND_NAMES = ['circleci', 'circleci-agent'] as const;

/** Env var naming the staged timings file (`name<TAB>classname<TAB>file<TAB>seconds` lines, see junit.ts timingsFile). */
export const TIMINGS_FILE_ENV = 'CIRCLE_INTERNAL_TEST_TIMINGS';
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
