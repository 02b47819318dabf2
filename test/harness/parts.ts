// Which real parts this machine has. `npm test` on a bare machine skips what needs a missing part,
// with one visible line each; under TORUS_TEST_REQUIRE_ALL=1 (CI) a missing part is a failure.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

export const REQUIRE_ALL = process.env.TORUS_TEST_REQUIRE_ALL === '1';

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export const parts = {
  postgres: () => Boolean(process.env.TORUS_TEST_DATABASE_URL),
  bwrap: () => hasCommand('bwrap') && spawnSync('bwrap', ['--ro-bind', '/', '/', 'true']).status === 0,
  git: () => hasCommand('git'),
  pgBinaries: () => existsSync('/usr/lib/postgresql/15/bin/postgres'),
  chromium: () => existsSync('/usr/bin/chromium'),
};

/** True when the part is here; otherwise prints why the tests are skipped (or throws in CI). */
export function requirePart(name: keyof typeof parts, what: string): boolean {
  if (parts[name]()) return true;
  const line = `SKIP ${what}: needs ${name}, which is not installed here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return false;
}
