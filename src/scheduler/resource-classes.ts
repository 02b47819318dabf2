// Resource classes: the queue keys of tasks ('machine:medium', 'docker:large', 'myns/runner') and the
// patterns agents and agent tokens use to name the classes they serve ('machine:*').
import { TorusError } from '../ops/index.js';

const CLASS_RE = /^[A-Za-z0-9][A-Za-z0-9._:/+-]*$/;

/** A concrete class (no '*'): what a task is queued under. */
export function assertResourceClass(cls: string): void {
  if (!CLASS_RE.test(cls) || cls.length > 200) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `invalid resource class ${JSON.stringify(cls)}: use letters, digits and . _ : / + - (e.g. "machine:medium" or "myns/runner")`,
    );
  }
}

/** A class or a pattern ending in '*' ('machine:*', or '*' for every class). */
export function assertResourceClassPattern(pattern: string): void {
  if (pattern === '*') return;
  const base = pattern.endsWith('*') ? pattern.slice(0, -1) : pattern;
  if (!CLASS_RE.test(base) || pattern.length > 200) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `invalid resource class pattern ${JSON.stringify(pattern)}: a class ("machine:medium") or a prefix ending in '*' ("machine:*")`,
    );
  }
}

/** Does the concrete class `cls` fall under `pattern`? */
export function classMatches(pattern: string, cls: string): boolean {
  return pattern.endsWith('*') ? cls.startsWith(pattern.slice(0, -1)) : cls === pattern;
}

/** May an agent whose token is bound to `allowed` ask for `requested` (itself a class or a pattern)? */
export function patternAllows(allowed: string, requested: string): boolean {
  if (!allowed.endsWith('*')) return requested === allowed;
  return requested.startsWith(allowed.slice(0, -1));
}

/** SQL parameters for "resource_class matches any of these patterns": exact names and LIKE prefixes. */
export function classFilter(patterns: readonly string[]): { exact: string[]; like: string[] } {
  const exact: string[] = [];
  const like: string[] = [];
  for (const p of patterns) {
    if (p.endsWith('*')) like.push(p.slice(0, -1).replace(/[\\%_]/g, (c) => `\\${c}`) + '%');
    else exact.push(p);
  }
  return { exact, like };
}
