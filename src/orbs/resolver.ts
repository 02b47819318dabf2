// The config compiler's OrbResolver over the registry, scoped to a reader (an organization's
// pipelines see its private orbs), with a warm cache: a compile resolves the orbs it already
// resolved from memory. Published semver versions are immutable, so an exact `@1.2.3` is kept
// long; partial and volatile references, dev versions and misses change with publishes, so they
// are kept briefly. Any registry change committed in this process empties the cache at once
// (changes.ts); another replica's changes show when the entries expire.
import type { OrbResolver } from '../config/index.js';
import type { Resources } from '../ops/index.js';
import { registryGeneration } from './changes.js';
import { parseOrbVersionRef, parseVersionSelector } from './names.js';
import { resolveOrbVersion, visibilityOf, type Viewer, type VisibilityScope } from './registry.js';

export interface RegistryOrbResolver extends OrbResolver {
  /** What one organization's pipelines see (its private orbs); shares this resolver's cache. */
  forOrg(orgId: string): OrbResolver;
  /** What a reader sees: a user the private orbs of their organizations (admins all), anonymous none. */
  forViewer(viewer: Viewer): Promise<OrbResolver>;
  /** Forgets everything cached. */
  clear(): void;
}

export interface RegistryResolverOptions {
  /** resolve as this organization's pipelines do; default: public orbs only */
  orgId?: string;
  /** partial, volatile and dev resolutions, and misses: kept this long (default 5 s) */
  shortTtlMs?: number;
  /**
   * exact `X.Y.Z` resolutions: kept this long (default 10 min). Bounds how long another replica's
   * deletion of a namespace takes to show here.
   */
  longTtlMs?: number;
  /** entries kept, least recently used dropped first (default 4096) */
  maxEntries?: number;
  /** milliseconds for cache expiry (tests); default Date.now */
  nowMs?: () => number;
}

export const RESOLVER_SHORT_TTL_MS = 5_000;
export const RESOLVER_LONG_TTL_MS = 600_000;
const RESOLVER_MAX_ENTRIES = 4096;
/** forOrg resolvers kept; beyond, the map starts over (they are cheap to rebuild) */
const MAX_SCOPES = 1024;

type Resolved = { version: string; source: string } | null;

interface Entry {
  value: Resolved;
  generation: number;
  /** nowMs() after which the entry is stale */
  until: number;
  /** a dev version stops resolving then (the registry clock) */
  devExpiresAt: Date | null;
}

function scopeKey(scope: VisibilityScope): string {
  if (scope === 'all') return '*';
  return scope.length === 0 ? 'public' : [...scope].sort().join(',');
}

export function registryOrbResolver(res: Resources, opts: RegistryResolverOptions = {}): RegistryOrbResolver {
  const shortTtl = opts.shortTtlMs ?? RESOLVER_SHORT_TTL_MS;
  const longTtl = opts.longTtlMs ?? RESOLVER_LONG_TTL_MS;
  const maxEntries = opts.maxEntries ?? RESOLVER_MAX_ENTRIES;
  const nowMs = opts.nowMs ?? Date.now;
  const cache = new Map<string, Entry>();
  /** lookups in flight, so concurrent compiles resolving the same reference query once */
  const pending = new Map<string, Promise<Resolved>>();
  const scoped = new Map<string, OrbResolver>();

  function remember(
    key: string,
    value: Resolved,
    exact: boolean,
    devExpiresAt: Date | null,
    generation: number,
  ) {
    cache.delete(key);
    cache.set(key, {
      value,
      generation,
      until: nowMs() + (value && exact ? longTtl : shortTtl),
      devExpiresAt,
    });
    if (cache.size > maxEntries) cache.delete(cache.keys().next().value as string);
  }

  function resolverFor(scope: VisibilityScope): OrbResolver {
    const prefix = `${scopeKey(scope)}\n`;
    const existing = scoped.get(prefix);
    if (existing) return existing;
    const resolver: OrbResolver = {
      resolve(ref: string): Promise<Resolved> {
        const key = prefix + ref;
        const generation = registryGeneration(res.db);
        const hit = cache.get(key);
        if (
          hit &&
          hit.generation === generation &&
          nowMs() < hit.until &&
          (hit.devExpiresAt === null || res.clock.now() < hit.devExpiresAt)
        ) {
          cache.delete(key);
          cache.set(key, hit);
          return Promise.resolve(hit.value);
        }
        const inFlight = pending.get(key);
        if (inFlight) return inFlight;
        const lookup = (async (): Promise<Resolved> => {
          try {
            const found = await resolveOrbVersion(res.db, ref, scope, res.clock.now());
            const value = found ? { version: found.version, source: found.source } : null;
            const selector = parseVersionSelector(parseOrbVersionRef(ref)?.version ?? '');
            remember(key, value, selector?.kind === 'exact', found?.expiresAt ?? null, generation);
            return value;
          } finally {
            pending.delete(key);
          }
        })();
        pending.set(key, lookup);
        return lookup;
      },
    };
    if (scoped.size >= MAX_SCOPES) scoped.clear();
    scoped.set(prefix, resolver);
    return resolver;
  }

  const base = resolverFor(opts.orgId ? [opts.orgId] : []);
  return {
    resolve: (ref) => base.resolve(ref),
    forOrg: (orgId) => resolverFor([orgId]),
    forViewer: async (viewer) => resolverFor(await visibilityOf(res.db, viewer)),
    clear() {
      cache.clear();
    },
  };
}
