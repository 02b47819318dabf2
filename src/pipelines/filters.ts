// Workflow job filters: which jobs of a compiled workflow exist for a branch or tag pipeline.
// CircleCI's rules (configuration reference, `filters`):
// - `only`/`ignore` take strings or `/regex/` forms that must match the whole name; `only` is
//   considered before `ignore`; neither means every branch.
// - jobs do not run for tags unless `filters.tags` is set and matches (neither `only` nor `ignore`
//   under `tags` means no tag); branch filters do not apply to tag pipelines and vice versa.
// - requirements that were filtered out are ignored; a job all of whose requirements were
//   filtered out does not run either.
import type { BranchTagFilter, JobFilters, WorkflowJob } from '../config/model.js';

export interface GitRef {
  branch?: string | null;
  tag?: string | null;
}

/** A filter pattern that cannot be used (a `/regex/` that does not compile). */
export class FilterPatternError extends Error {
  constructor(
    readonly pattern: string,
    reason: string,
  ) {
    super(`invalid filter pattern ${pattern}: ${reason}`);
    this.name = 'FilterPatternError';
  }
}

const regexCache = new Map<string, RegExp>();

function patternRegex(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    try {
      re = new RegExp(`^(?:${pattern.slice(1, -1)})$`);
    } catch (err) {
      throw new FilterPatternError(pattern, (err as Error).message);
    }
    regexCache.set(pattern, re);
  }
  return re;
}

/** `/re/` matches the whole name; any other string matches itself only. */
export function matchesPattern(pattern: string, name: string): boolean {
  if (pattern.length >= 2 && pattern.startsWith('/') && pattern.endsWith('/')) {
    return patternRegex(pattern).test(name);
  }
  return pattern === name;
}

function passes(filter: BranchTagFilter, name: string): boolean {
  if (filter.only && !filter.only.some((p) => matchesPattern(p, name))) return false;
  if (filter.ignore?.some((p) => matchesPattern(p, name))) return false;
  return true;
}

/** Whether a job with these filters runs for a pipeline on `ref`. */
export function filtersAllow(filters: JobFilters, ref: GitRef): boolean {
  if (ref.tag) {
    const tags = filters.tags;
    if (!tags || (!tags.only && !tags.ignore)) return false;
    return passes(tags, ref.tag);
  }
  const branches = filters.branches;
  if (!branches) return true;
  return passes(branches, ref.branch ?? '');
}

/**
 * The jobs of a workflow that exist for `ref`, with requirements on filtered-out jobs removed.
 * Returns [] when no job is left (the workflow is then not created).
 */
export function selectWorkflowJobs(jobs: readonly WorkflowJob[], ref: GitRef): WorkflowJob[] {
  const kept = new Set(jobs.filter((j) => filtersAllow(j.filters, ref)).map((j) => j.name));
  // A job whose requirements were all filtered out goes too, which may leave others with none:
  // repeat until nothing changes.
  for (let changed = true; changed;) {
    changed = false;
    for (const job of jobs) {
      if (!kept.has(job.name) || job.requires.length === 0) continue;
      if (!job.requires.some((r) => kept.has(r.name))) {
        kept.delete(job.name);
        changed = true;
      }
    }
  }
  return jobs
    .filter((j) => kept.has(j.name))
    .map((j) => ({ ...j, requires: j.requires.filter((r) => kept.has(r.name)) }));
}
