// CircleCI's names and versions for the orb registry: namespace and orb names, `X.Y.Z` and
// `dev:<label>` versions, the version part of a reference (`1`, `1.2`, `1.2.3`, `volatile`,
// `dev:<label>`), and the next version a promotion gives. Pure.
import { TorusError } from '../ops/index.js';

/**
 * CircleCI: "Orb, command, job, executor, and parameter names can only contain lowercase letters
 * a-z, digits, and _ and -, and must start with a letter." Namespaces follow the same rule here
 * (CircleCI's published namespaces all do). The length cap keeps names printable in listings.
 */
const NAME_RE = /^[a-z][a-z0-9_-]*$/;
export const MAX_NAME_LENGTH = 100;

/** Published versions are plain semver: no pre-release or build parts, no leading zeros. */
const SEMVER_RE = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
/** Dev labels as the config compiler accepts them in references (`dev:[\w.-]+`). */
const DEV_RE = /^dev:([\w.-]+)$/;
export const MAX_DEV_LABEL_LENGTH = 100;
/** Each semver part is stored as a Postgres integer. */
const MAX_PART = 2_147_483_647;

export const DEV_VERSION_TTL_DAYS = 90;
export const DEV_VERSION_TTL_MS = DEV_VERSION_TTL_DAYS * 86_400_000;

export type NameKind = 'namespace' | 'orb';

/** Throws TORUS_E_BAD_REQUEST naming the rule when `name` breaks it. */
export function checkName(kind: NameKind, name: string): void {
  if (typeof name !== 'string' || name === '') {
    throw new TorusError('TORUS_E_BAD_REQUEST', `${kind} name is required`);
  }
  if (name.length > MAX_NAME_LENGTH || !NAME_RE.test(name)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(name)} is not a valid ${kind} name: use lowercase letters a-z, digits, '-' and '_', ` +
        `starting with a letter (at most ${MAX_NAME_LENGTH} characters)`,
    );
  }
}

export interface Semver {
  major: number;
  minor: number;
  patch: number;
}

export type PublishedVersion =
  { kind: 'semver'; text: string; semver: Semver } | { kind: 'dev'; text: string };

/** A version one publishes: `X.Y.Z` or `dev:<label>`. Throws TORUS_E_BAD_REQUEST otherwise. */
export function parsePublishedVersion(version: string): PublishedVersion {
  const semver = parseSemver(version);
  if (semver) return { kind: 'semver', text: version, semver };
  const dev = typeof version === 'string' ? DEV_RE.exec(version) : null;
  if (dev && dev[1]!.length <= MAX_DEV_LABEL_LENGTH) return { kind: 'dev', text: version };
  throw new TorusError(
    'TORUS_E_BAD_REQUEST',
    `${JSON.stringify(version)} is not a valid orb version: use a semantic version like 1.2.3, ` +
      `or dev:<label> for a development version (letters, digits, '_', '.', '-')`,
  );
}

export function parseSemver(version: string): Semver | null {
  const m = typeof version === 'string' ? SEMVER_RE.exec(version) : null;
  if (!m) return null;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (major > MAX_PART || minor > MAX_PART || patch > MAX_PART) return null;
  return { major, minor, patch };
}

export function formatSemver(v: Semver): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

/** What the version part of `ns/orb@<version>` asks for. */
export type VersionSelector =
  | { kind: 'exact'; semver: Semver }
  | { kind: 'major'; major: number }
  | { kind: 'minor'; major: number; minor: number }
  | { kind: 'volatile' }
  | { kind: 'dev'; version: string };

/** `1`, `1.2`, `1.2.3`, `volatile`, `dev:<label>`; null for anything else. */
export function parseVersionSelector(version: string): VersionSelector | null {
  if (version === 'volatile') return { kind: 'volatile' };
  if (DEV_RE.test(version)) return { kind: 'dev', version };
  const m = /^(\d+)(?:\.(\d+)(?:\.(\d+))?)?$/.exec(version);
  if (!m) return null;
  const parts = [m[1], m[2], m[3]].filter((p): p is string => p !== undefined).map(Number);
  if (parts.some((p) => p > MAX_PART)) return null;
  const [major, minor, patch] = parts as [number, number?, number?];
  if (patch !== undefined) return { kind: 'exact', semver: { major, minor: minor!, patch } };
  if (minor !== undefined) return { kind: 'minor', major, minor };
  return { kind: 'major', major };
}

export interface OrbVersionRef {
  namespace: string;
  orb: string;
  version: string;
}

/** `ns/orb@version` split into its parts; null when it is not of that shape. */
export function parseOrbVersionRef(ref: string): OrbVersionRef | null {
  const m = /^([^/@\s]+)\/([^/@\s]+)@(\S+)$/.exec(ref);
  return m ? { namespace: m[1]!, orb: m[2]!, version: m[3]! } : null;
}

/** `ns/orb` split into its parts; null when it is not of that shape. */
export function parseOrbName(ref: string): { namespace: string; orb: string } | null {
  const m = /^([^/@\s]+)\/([^/@\s]+)$/.exec(ref);
  return m ? { namespace: m[1]!, orb: m[2]! } : null;
}

export type Segment = 'major' | 'minor' | 'patch';

/** The version after `highest` (none: 0.0.0) when `segment` is incremented, as the CLI's `orb publish increment`. */
export function nextVersion(highest: Semver | null, segment: Segment): Semver {
  const v = highest ?? { major: 0, minor: 0, patch: 0 };
  switch (segment) {
    case 'major':
      return { major: v.major + 1, minor: 0, patch: 0 };
    case 'minor':
      return { major: v.major, minor: v.minor + 1, patch: 0 };
    case 'patch':
      return { major: v.major, minor: v.minor, patch: v.patch + 1 };
    default: {
      const never: never = segment;
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `${JSON.stringify(never)} is not a version segment: use major, minor or patch`,
      );
    }
  }
}

export function isSegment(s: string): s is Segment {
  return s === 'major' || s === 'minor' || s === 'patch';
}
