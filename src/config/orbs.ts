// Orb import: `orbs: {alias: ns/name@version}` through the OrbResolver, or inline orb maps. Each orb
// becomes a Namespace whose jobs see only that orb's commands, executors and imported orbs.
import type { OrbResolver } from './model.js';
import { isMapValue, report, substitute, type Context, type SubstitutionPass } from './params.js';
import { parseSource, SourceMap, type MapValue, type ParsedSource, type Value } from './source.js';
import { newNamespace, registerElements, type Namespace } from './elements.js';
import { ConfigAbort } from './errors.js';

export interface OrbLoadContext {
  ctx: Context;
  resolver: OrbResolver | undefined;
  pipelinePass: SubstitutionPass;
  /** one namespace per resolved ref, shared between importers */
  cache?: Map<string, Namespace | null>;
}

const ORB_REF = /^[a-z0-9][a-z0-9_-]*\/[a-z0-9][a-z0-9_-]*@(volatile|dev:[\w.-]+|\d+(\.\d+){0,2})$/i;
const MAX_ORB_DEPTH = 10;

/** Parsed orbs kept across compiles (published orb versions are immutable), least recently used first. */
export const ORB_CACHE_SIZE = 256;
/**
 * Keyed by the orb text (a resolver hands out the same string each time, whose hash V8 keeps, so a
 * hit costs no rehash of the text), then by the file name the locations carry.
 */
const orbCache = new Map<string, { file: string; parsed: ParsedSource }>();

/**
 * Parses an orb's text, or returns the tree parsed by an earlier compile. The tree is deep-frozen
 * (compiles share it, so every stage must copy before changing anything) and carries its own
 * SourceMap, which each compile's map falls back to for locations inside the orb. Parse errors are
 * not cached: they throw ConfigAbort every time.
 */
export function parseOrb(source: string, file: string): ParsedSource {
  const hit = orbCache.get(source);
  if (hit && hit.file === file) {
    orbCache.delete(source);
    orbCache.set(source, hit);
    return hit.parsed;
  }
  const parsed = parseSource(source, file, undefined, new SourceMap(), true);
  deepFreeze(parsed.root);
  // the same text under another name (rare) replaces the entry: locations must name the right orb
  orbCache.delete(source);
  orbCache.set(source, { file, parsed });
  if (orbCache.size > ORB_CACHE_SIZE) orbCache.delete(orbCache.keys().next().value as string);
  return parsed;
}

/** Empties the parsed-orb cache (tests). */
export function clearOrbCache(): void {
  orbCache.clear();
}

function deepFreeze(v: Value): void {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const child of Array.isArray(v) ? v : Object.values(v)) deepFreeze(child);
}

function importHint(ref: string): string {
  return `import it with: torus admin import-orb ${ref}`;
}

/** Loads the orbs declared in `orbsValue` into `ns.orbs`; reports unknown or malformed ones. */
export async function loadOrbs(
  o: OrbLoadContext,
  ns: Namespace,
  orbsValue: Value,
  container: MapValue,
  depth: number,
): Promise<void> {
  const ctx = o.ctx;
  o.cache ??= new Map();
  if (!isMapValue(orbsValue)) {
    report(ctx, 'TORUS_E_CONFIG_SHAPE', 'orbs must be a map of alias: namespace/orb@version', {
      container,
      key: 'orbs',
    });
    return;
  }
  if (depth > MAX_ORB_DEPTH) {
    report(ctx, 'TORUS_E_CONFIG_TOO_DEEP', `orbs import each other more than ${MAX_ORB_DEPTH} levels deep`, {
      container,
      key: 'orbs',
    });
    return;
  }
  for (const [alias, rawRef] of Object.entries(orbsValue)) {
    const where = { container: orbsValue, key: alias };
    // pipeline parameters may pick the orb version (only at the config's own level)
    const refValue =
      depth === 0 && typeof rawRef === 'string'
        ? substitute(ctx, rawRef, o.pipelinePass, orbsValue, alias)
        : rawRef;
    if (isMapValue(refValue)) {
      const inline = newNamespace(ns.label === 'config' ? alias : `${ns.label}/${alias}`);
      if (refValue.orbs !== undefined && refValue.orbs !== null)
        await loadOrbs(o, inline, refValue.orbs, refValue, depth + 1);
      registerElements(ctx, inline, refValue, true);
      ns.orbs.set(alias, inline);
      continue;
    }
    if (typeof refValue !== 'string' || !ORB_REF.test(refValue)) {
      report(
        ctx,
        'TORUS_E_CONFIG_SHAPE',
        `orb ${alias}: ${JSON.stringify(refValue)} is not a reference like namespace/orb@1.2.3`,
        where,
      );
      continue;
    }
    const ref = refValue;
    if (!o.resolver) {
      ns.unresolvedOrbs.set(alias, ref);
      report(
        ctx,
        'TORUS_E_CONFIG_UNKNOWN_ORB',
        `orb ${ref} (alias "${alias}") is not available: this server has no orb registry configured`,
        where,
        importHint(ref),
      );
      continue;
    }
    let orbNs = o.cache.get(ref);
    if (orbNs === undefined) {
      orbNs = null;
      const found = await o.resolver.resolve(ref);
      if (found) {
        const file = `orb ${ref.split('@')[0]}@${found.version}`;
        try {
          const parsed = parseOrb(found.source, file);
          ctx.sourceMap.addFallback(parsed.sourceMap);
          if (isMapValue(parsed.root)) {
            orbNs = newNamespace(ns.label === 'config' ? alias : `${ns.label}/${alias}`);
            o.cache.set(ref, orbNs);
            if (parsed.root.orbs !== undefined && parsed.root.orbs !== null)
              await loadOrbs(o, orbNs, parsed.root.orbs, parsed.root, depth + 1);
            registerElements(ctx, orbNs, parsed.root, false);
          } else {
            report(ctx, 'TORUS_E_CONFIG_SHAPE', `orb ${ref} is not a map`, where);
          }
        } catch (err) {
          if (!(err instanceof ConfigAbort)) throw err;
          ctx.errors.push(...err.errors);
        }
      }
      o.cache.set(ref, orbNs);
    }
    if (orbNs) ns.orbs.set(alias, orbNs);
    else {
      ns.unresolvedOrbs.set(alias, ref);
      // an orb's own imports are reported only if something uses them (see Compiler.lookup)
      if (depth > 0) continue;
      report(
        ctx,
        'TORUS_E_CONFIG_UNKNOWN_ORB',
        `orb ${ref} (alias "${alias}") was not found`,
        where,
        importHint(ref),
      );
    }
  }
}
