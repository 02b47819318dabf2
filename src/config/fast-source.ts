// The fast read of config text: js-yaml (about 14× faster than the `yaml` library's Document API
// on the corpus) with plain scalars resolved by the very tags of source.ts's YAML 1.1 schema, and
// no positions. compileConfig tries it first; when it cannot read a text, or the compile of its
// result reports any error, the config is read again by source.ts, which keeps every position and
// is the authority for what an error says. A differential test (fast-source.test.ts) holds the two
// readers to the same values on the corpus and on mutated configs.
import jsyaml from 'js-yaml';
import { Document, isScalar, type Schema } from 'yaml';
import { CONFIG_YAML_OPTIONS, MAX_ALIAS_NODES, MAX_NESTING_DEPTH, type Value } from './source.js';

/** A plain scalar resolved to a non-string value; keys print it as written (CircleCI reads `2:` as "2"). */
class Resolved {
  constructor(
    readonly value: Value,
    readonly source: string,
  ) {}

  /** js-yaml turns a non-string map key into a string with String(key) */
  toString(): string {
    // `true:` and `yes:` are one key to the exact reader (a duplicate), two to js-yaml: such maps
    // are left to the exact reader
    resolvedKey = true;
    return this.value === null ? '' : this.source;
  }

  // js-yaml replaces keys whose class is [object Object] by that text; a tag of our own keeps toString()
  get [Symbol.toStringTag](): string {
    return 'TorusResolvedScalar';
  }
}

interface ImplicitTag {
  test: RegExp;
  resolve(source: string, onError: (msg: string) => void, options: object): unknown;
}

/** The implicit scalar tags of the compiler's YAML schema, in the order the `yaml` composer tries them. */
const IMPLICIT_TAGS: ImplicitTag[] = (
  (new Document(null, CONFIG_YAML_OPTIONS) as unknown as { schema: Schema }).schema.tags as unknown as {
    default?: boolean | string;
    test?: RegExp;
    resolve?: ImplicitTag['resolve'];
    tag: string;
  }[]
).filter(
  (t): t is typeof t & ImplicitTag =>
    t.default === true && t.test instanceof RegExp && typeof t.resolve === 'function',
);

const RESOLVE_OPTIONS = { intAsBigInt: false };

/** What the `yaml` composer makes of a plain scalar, as our converter reads it. */
function resolvePlain(source: string): Resolved | undefined {
  for (const tag of IMPLICIT_TAGS) {
    if (!tag.test.test(source)) continue;
    let failed = false;
    const resolved = tag.resolve(source, () => (failed = true), RESOLVE_OPTIONS);
    // the null tag answers with a Scalar node
    const v = isScalar(resolved) ? resolved.value : resolved;
    if (failed) return undefined;
    if (v === null || v === undefined) return new Resolved(null, source);
    if (typeof v === 'boolean' || typeof v === 'number') return new Resolved(v, source);
    if (typeof v === 'bigint') return new Resolved(Number(v), source);
    if (v instanceof Date) return new Resolved(source, source);
    return new Resolved(String(v), source);
  }
  return undefined;
}

let lastResolved: Resolved | undefined;
/** set when js-yaml turned a resolved scalar into a map key */
let resolvedKey = false;
const implicitScalar = new jsyaml.Type('tag:torus.dev,2026:implicit', {
  kind: 'scalar',
  resolve: (data: unknown) => {
    if (typeof data !== 'string') return false;
    lastResolved = resolvePlain(data);
    return lastResolved !== undefined;
  },
  construct: () => lastResolved,
});

// FAILSAFE (str, seq, map) plus our implicit scalars and merge keys. Explicit tags such as `!!int`
// are unknown here: js-yaml refuses them and the config is read by source.ts instead.
const SCHEMA = jsyaml.FAILSAFE_SCHEMA.extend({
  implicit: [implicitScalar, (jsyaml as unknown as { types: { merge: jsyaml.Type } }).types.merge],
});

class Fallback extends Error {}

/**
 * Reads config text into plain values, or returns undefined when the fast reader cannot vouch for
 * the result (a YAML error, an explicit tag, a complex key, aliases that expand too far): the
 * caller then reads it with parseSource. The size and nesting guards must already have run.
 */
export function parseFast(source: string): Value | undefined {
  if (needsExactRead(source)) return undefined;
  let doc: unknown;
  resolvedKey = false;
  try {
    doc = jsyaml.load(source, { schema: SCHEMA });
  } catch {
    return undefined;
  } finally {
    lastResolved = undefined;
  }
  if (resolvedKey) return undefined;
  try {
    return new Materializer().value(doc);
  } catch (err) {
    if (err instanceof Fallback) return undefined;
    throw err;
  }
}

/**
 * Replaces resolved scalars by their values in place and gives every alias use its own copy (the
 * later stages may change what they are given, and source.ts expands aliases the same way), counting
 * nodes as source.ts does so an alias bomb stops here too.
 */
class Materializer {
  private readonly seen = new Set<object>();
  private nodes = 0;
  private readonly limit = MAX_ALIAS_NODES;

  value(v: unknown): Value {
    if (v instanceof Resolved) return v.value;
    if (typeof v !== 'object' || v === null) {
      if (typeof v === 'string') return v;
      if (v === null || v === undefined) return null;
      throw new Fallback();
    }
    if (this.seen.has(v)) return this.copy(v);
    this.seen.add(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = this.value(v[i]);
      return v as Value[];
    }
    const map = v as Record<string, unknown>;
    for (const key of Object.keys(map)) {
      // a map or list used as a key: source.ts writes it as JSON, js-yaml as [object Object]
      if (key === '[object Object]' || key === 'null') throw new Fallback();
      map[key] = this.value(map[key]);
    }
    return map as Value;
  }

  /**
   * A fresh copy of an already materialized value met again through an alias. js-yaml lets an
   * anchored collection contain its own alias: such a cycle is deeper than any nesting allowed.
   */
  private copy(v: object, depth = 0): Value {
    if (++this.nodes > this.limit || depth > MAX_NESTING_DEPTH) throw new Fallback();
    if (Array.isArray(v)) return v.map((item: unknown) => this.copyValue(item, depth + 1));
    const out: Record<string, Value> = {};
    for (const [k, item] of Object.entries(v)) out[k] = this.copyValue(item, depth + 1);
    return out;
  }

  private copyValue(item: unknown, depth: number): Value {
    if (typeof item === 'object' && item !== null) return this.copy(item, depth);
    return item as Value;
  }
}

/**
 * Finds the constructs where js-yaml is laxer than the exact reader, which refuses some of their
 * forms (an under-indented continuation of a quoted scalar or a flow collection, a second mapping on
 * one line, a tab in indentation): texts with a quoted scalar or flow collection spanning lines,
 * more than one `key: ` on a block line, or a tab in indentation go to the exact reader. One pass
 * over the characters; block scalar bodies are skipped.
 */
export function needsExactRead(source: string): boolean {
  /** indentation of the line that opened a block scalar (`|`, `>-`…), whose body is text */
  let blockParent = -1;
  /** indentations of the open block collections */
  const indents: number[] = [];
  for (let start = 0; start < source.length;) {
    let end = source.indexOf('\n', start);
    if (end === -1) end = source.length;
    const lineStart = start;
    start = end + 1;
    let i = lineStart;
    while (i < end && source.charCodeAt(i) === 32) i++;
    if (i < end && source[i] === '\t') return true;
    const indent = i - lineStart;
    if (blockParent >= 0) {
      if (i === end || source[i] === '\r' || indent > blockParent) continue;
      blockParent = -1;
    }
    if (source[i] === '#' || i === end || source[i] === '\r') continue;
    // a line may only go back to an indentation some open line used (js-yaml takes some others)
    let dedented = false;
    while (indents.length > 0 && indents[indents.length - 1]! > indent) {
      indents.pop();
      dedented = true;
    }
    const top = indents.length > 0 ? indents[indents.length - 1]! : -1;
    if (top < indent) {
      if (dedented && top >= 0) return true;
      indents.push(indent);
    }
    let colons = 0;
    let flow = 0;
    let valueStart = true;
    scan: while (i < end) {
      const c = source[i]!;
      if (valueStart) {
        if (c === ' ' || c === '\r') {
          i++;
          continue;
        }
        const next = i + 1 < end ? source[i + 1]! : ' ';
        if (c === '-' && flow === 0 && (next === ' ' || next === '\r')) {
          // `- key: v` opens a map at the column of `key`, where the next lines may continue it
          let j = i + 1;
          while (j < end && source[j] === ' ') j++;
          if (j < end && source[j] !== '\r' && source[j] !== '#') indents.push(j - lineStart);
          i++;
          continue;
        }
        // an explicit key `? …` may be a collection, which js-yaml writes as "a,b"
        if (c === '?' && (next === ' ' || next === '\r')) return true;
        if (c === '&' || c === '!') {
          while (i < end && source[i] !== ' ') i++;
          continue;
        }
        if (c === '"' || c === "'") {
          i = quotedEnd(source, i, end);
          if (i < 0) return true;
          valueStart = false;
          continue;
        }
        if ((c === '|' || c === '>') && flow === 0) {
          blockParent = indent;
          break scan;
        }
        if (c === '[' || c === '{') {
          flow++;
          i++;
          continue;
        }
        if (c === '#') break scan;
        valueStart = false;
      }
      if (c === '#' && (source[i - 1] === ' ' || source[i - 1] === '\t')) break scan;
      const next = i + 1 < end ? source[i + 1]! : ' ';
      if (flow > 0) {
        if (c === '[' || c === '{') flow++;
        else if (c === ']' || c === '}') {
          // a flow collection used as a key (`[a, b]: c`, or `{a: [b]: c}`)
          if (next === ':') return true;
          flow--;
        } else if (c === ',' || (c === ':' && (next === ' ' || next === ',' || next === ']' || next === '}')))
          valueStart = true;
      } else if (c === ':' && (next === ' ' || next === '\r')) {
        if (++colons > 1) return true;
        valueStart = true;
      }
      i++;
    }
    if (flow > 0) return true;
  }
  return false;
}

/** The index after the quoted scalar that opens at `at`, or -1 when it does not end on this line. */
function quotedEnd(source: string, at: number, end: number): number {
  const quote = source[at];
  for (let j = at + 1; j < end; j++) {
    const c = source[j];
    if (quote === '"' && c === '\\') j++;
    else if (c === quote) {
      if (quote === "'" && source[j + 1] === "'") j++;
      else return j + 1;
    }
  }
  return -1;
}
