// What each kind of step runs: `run` and `deploy` (a script file given to the step's shell),
// `checkout` (a git clone script, CircleCI's lines), and the steps this release does not run yet.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Step } from '../config/model.js';
import type { CheckoutSpec } from '../scheduler/protocol.js';

/** CircleCI's default no_output_timeout */
export const DEFAULT_NO_OUTPUT_TIMEOUT_MS = 10 * 60_000;

export interface RunStep {
  name: string;
  command: string;
  shell?: string;
  environment: Record<string, string>;
  workingDirectory?: string;
  noOutputTimeoutMs: number;
  background: boolean;
  /** reruns of a failed step (CircleCI's max_auto_reruns, 1–5) */
  maxAutoReruns: number;
  autoRerunDelayMs: number;
}

/** CircleCI's default shell on Linux */
export function defaultShell(): string {
  return existsSync('/bin/bash') ? '/bin/bash -eo pipefail' : '/bin/sh -eo pipefail';
}

export function shellArgv(shell: string, scriptPath: string): string[] {
  return [...shell.trim().split(/\s+/), scriptPath];
}

/** '10m', '1.25h', '5s', '300ms' → milliseconds (CircleCI's no_output_timeout syntax) */
export function parseDuration(text: string): number | undefined {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((m) => m[0]).join('') !== text.trim()) return undefined;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return parts.reduce((sum, m) => sum + Number(m[1]) * (unit[m[2] ?? 's'] ?? 1000), 0);
}

/** A `run` step, or a `deploy` step (which CircleCI runs exactly like `run`) as a RunStep; otherwise null. */
export function asRunStep(step: Step): RunStep | null {
  if (step.type === 'run' && 'command' in step && typeof step.command === 'string') {
    const s = step as Extract<Step, { type: 'run'; command: string }>;
    return {
      name: s.name,
      command: s.command,
      shell: s.shell,
      environment: s.environment ?? {},
      workingDirectory: s.workingDirectory,
      noOutputTimeoutMs: s.noOutputTimeoutMs || DEFAULT_NO_OUTPUT_TIMEOUT_MS,
      background: Boolean(s.background),
      maxAutoReruns: s.maxAutoReruns ?? 0,
      autoRerunDelayMs: s.autoRerunDelayMs ?? 0,
    };
  }
  if ((step.type === 'deploy' || step.type === 'run') && 'args' in step) {
    const a = step.args;
    if (typeof a.command !== 'string') return null;
    const timeout =
      typeof a.no_output_timeout === 'string'
        ? parseDuration(a.no_output_timeout)
        : typeof a.no_output_timeout === 'number'
          ? a.no_output_timeout * 1000
          : undefined;
    const env: Record<string, string> = {};
    if (a.environment && typeof a.environment === 'object') {
      for (const [k, v] of Object.entries(a.environment as Record<string, unknown>)) env[k] = String(v);
    }
    return {
      name: step.name,
      command: a.command,
      shell: typeof a.shell === 'string' ? a.shell : undefined,
      environment: env,
      workingDirectory: typeof a.working_directory === 'string' ? a.working_directory : undefined,
      noOutputTimeoutMs: timeout ?? DEFAULT_NO_OUTPUT_TIMEOUT_MS,
      background: a.background === true,
      maxAutoReruns: typeof a.max_auto_reruns === 'number' ? a.max_auto_reruns : 0,
      autoRerunDelayMs: typeof a.auto_rerun_delay === 'string' ? (parseDuration(a.auto_rerun_delay) ?? 0) : 0,
    };
  }
  return null;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** the URL without credentials, for printing */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    return u.toString();
  } catch {
    // not a URL (a local path or scp-like git address): nothing to strip
    return url;
  }
}

/** The local directory a file:// URL or plain path names (to make it visible in the sandbox), else null. */
export function localRepoPath(repoUrl: string): string | null {
  if (repoUrl.startsWith('file://')) return fileURLToPath(repoUrl);
  if (path.isAbsolute(repoUrl)) return repoUrl;
  return null;
}

/**
 * The checkout script, after CircleCI's own: clone (or fetch when the directory already holds the
 * repository), then check out the revision on the branch, the tag, or detached.
 */
export function checkoutScript(checkout: CheckoutSpec, dir: string): string {
  const url = localRepoPath(checkout.repoUrl) ?? checkout.repoUrl;
  const branch = checkout.branch && checkout.branch !== 'HEAD' ? checkout.branch : '';
  return `set -e
url=${shQuote(url)}
rev=${shQuote(checkout.revision)}
branch=${shQuote(branch)}
tag=${shQuote(checkout.tag ?? '')}
dir=${shQuote(dir)}
export GIT_TERMINAL_PROMPT=0
mkdir -p "$dir"
cd "$dir"
git --version
if [ -e .git ]; then
  echo 'Fetching into existing repository'
  git remote set-url origin "$url" || true
else
  if [ -n "$(ls -A . 2>/dev/null)" ]; then
    echo "Directory ($dir) you are trying to checkout to is not empty and not a git repository" >&2
    exit 1
  fi
  echo ${shQuote(`Cloning git repository - ${displayUrl(checkout.repoUrl)}`)}
  git clone --no-checkout "$url" .
fi
if [ -n "$tag" ]; then
  git fetch --force origin "refs/tags/$tag:refs/tags/$tag" || true
elif [ -n "$branch" ]; then
  git fetch --force origin "+refs/heads/$branch:refs/remotes/origin/$branch" || true
fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  git fetch --force origin "$rev"
fi
if [ -n "$tag" ]; then
  echo 'Checking out tag'
  git checkout --force -q "$rev"
elif [ -n "$branch" ]; then
  echo 'Checking out branch'
  git checkout --force -q -B "$branch" "$rev"
  git branch -q --set-upstream-to="origin/$branch" "$branch" 2>/dev/null || true
else
  echo 'Checking out commit'
  git checkout --force -q "$rev"
fi
git --no-pager log --no-color -n 1 --format='HEAD is now at %h %s'
`;
}

/** the message of a step this release cannot run */
export function unsupportedStepMessage(type: string): string {
  return `The \`${type}\` step is not supported by this Torus release yet; remove it from the job or run the job on CircleCI.\n`;
}
