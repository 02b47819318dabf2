// JSON-schema validation of raw 2.1 configs: CircleCI's published config schema (a copy of
// CircleCI-Public/circleci-yaml-language-server schema.json in circleci-config.schema.json), with a
// short list of patches where CircleCI accepts what the schema refuses, compiled once with Ajv.
// Ajv's errors become located ConfigErrors: the deepest error of each oneOf/anyOf, in plain words.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { ConfigError } from './model.js';
import { configError } from './errors.js';
import type { SourceMap, Value } from './source.js';

/** At most this many schema errors are reported for one config. */
export const MAX_SCHEMA_ERRORS = 10;

/**
 * A value that 2.1 processing replaces before CircleCI checks the config: `<< parameters.x >>`,
 * `<< pipeline.parameters.x >>`, `<< matrix.x >>`, possibly inside other text.
 */
const PLACEHOLDER_PATTERN = '<<.*>>';

/** One change to the saved schema: the node at `pointer` (JSON pointer) is replaced by `value`. */
export interface SchemaPatch {
  pointer: string;
  value: unknown;
  /** the CircleCI behaviour the schema disagrees with, and the corpus config showing it */
  reason: string;
}

const STEP = '/definitions/step/oneOf/1/properties';

/**
 * Where CircleCI accepts configs the schema refuses. Each patch widens one node only, and each is
 * shown by a corpus config that CircleCI runs (schema.test.ts checks every one).
 */
export const SCHEMA_PATCHES: readonly SchemaPatch[] = [
  {
    pointer: '/properties/executors/additionalProperties/oneOf/0/properties/resource_class',
    value: { type: 'string' },
    reason:
      'CircleCI checks resource classes when it runs a job, not in the config (the schema already allows any ' +
      'string on jobs): CircleCI-Public__circleci-cli uses large.gen3 and windows.medium, snyk__cli windows.large',
  },
  {
    pointer: `${STEP}/store_artifacts/properties/prefix`,
    value: { type: 'string' },
    reason:
      'store_artifacts keeps accepting the 1.0 key `prefix`: CircleCI-Public__circleci-demo-javascript-express',
  },
  {
    pointer: `${STEP}/restore_cache/oneOf/0/properties/when`,
    value: { enum: ['always', 'on_success', 'on_fail'] },
    reason:
      'restore_cache takes `when:` like save_cache: the published orb circleci/slack@5.1.1 (notify command)',
  },
  {
    pointer: `${STEP}/restore_cache/oneOf/1/properties/when`,
    value: { enum: ['always', 'on_success', 'on_fail'] },
    reason: 'the same, for the `keys:` form of restore_cache',
  },
  {
    pointer: `${STEP}/run/oneOf/1/properties/name`,
    value: { type: ['string', 'null'] },
    reason: 'an empty run `name:` means no name (the command is shown): mozilla-services__autograph',
  },
  {
    pointer: `${STEP}/add_ssh_keys/oneOf/1/properties/fingerprints`,
    value: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    reason: 'add_ssh_keys takes a single fingerprint as a string: sunpy__sunpy',
  },
];

/** Sets the node at a JSON pointer (its parent must exist). */
function applyPatch(schema: unknown, patch: SchemaPatch): void {
  const parts = patch.pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = parts.pop();
  let node = schema;
  for (const part of parts) {
    node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
  }
  if (last === undefined || typeof node !== 'object' || node === null) {
    throw new Error(`schema patch ${patch.pointer} does not apply: no such parent node`);
  }
  (node as Record<string, unknown>)[last] = patch.value;
}

/** Keywords that restrict a scalar value, which a `<< >>` placeholder would not meet. */
const SCALAR_RULES = ['enum', 'const', 'pattern', 'minimum', 'maximum', 'format'];
/** Keywords whose subschemas are not about values (or must keep their meaning exactly). */
const NOT_VALUES = new Set([
  'propertyNames',
  'if',
  'not',
  'definitions',
  'default',
  'examples',
  'enum',
  'const',
]);
const MAP_OF_SCHEMAS = new Set(['properties', 'patternProperties', 'definitions']);

/**
 * Lets a `<< >>` placeholder stand wherever the schema asks for something other than a plain
 * string (a number, a boolean, an enum value, a pattern, a list). CircleCI substitutes parameters
 * before it validates, so `when: << parameters.condition >>` (ethereum__solidity) and
 * `no_output_timeout: << parameters.timeout >>` (circleci/go, snyk/snyk, … orbs) are valid; the
 * schema allows placeholders only on a few keys (parallelism, machine). Maps are left alone: no
 * parameter type stands for a map.
 */
function allowPlaceholders(node: unknown): unknown {
  return widen(node, true).schema;
}

/**
 * `wrap: false` is for the alternatives of a oneOf: a placeholder accepted by two of them would
 * match "more than one", so the oneOf as a whole accepts it instead (`wants` tells the caller).
 */
function widen(node: unknown, wrap: boolean): { schema: unknown; wants: boolean } {
  if (Array.isArray(node)) return { schema: node.map((n) => widen(n, true).schema), wants: false };
  if (typeof node !== 'object' || node === null) return { schema: node, wants: false };
  const schema = node as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  let wants = false;
  for (const [k, v] of Object.entries(schema)) {
    if (NOT_VALUES.has(k) && k !== 'definitions') out[k] = v;
    else if (MAP_OF_SCHEMAS.has(k) && typeof v === 'object' && v !== null) {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, sub]) => [name, allowPlaceholders(sub)]));
    } else if (k === 'oneOf' && Array.isArray(v)) {
      const branches = v.map((b) => widen(b, false));
      out[k] = branches.map((b) => b.schema);
      wants ||= branches.some((b) => b.wants);
    } else out[k] = allowPlaceholders(v);
  }
  const types =
    typeof schema.type === 'string' ? [schema.type] : Array.isArray(schema.type) ? schema.type : [];
  wants ||=
    SCALAR_RULES.some((k) => k in schema) ||
    (types.length > 0 && !types.includes('string') && !(types.length === 1 && types[0] === 'object'));
  if (!wants || !wrap) return { schema: out, wants };
  return { schema: { anyOf: [out, { type: 'string', pattern: PLACEHOLDER_PATTERN }] }, wants: false };
}

/** The saved schema with SCHEMA_PATCHES applied and placeholders allowed (a fresh copy). */
export function patchedSchema(): Record<string, unknown> {
  const schema = JSON.parse(
    readFileSync(new URL('./circleci-config.schema.json', import.meta.url), 'utf8'),
  ) as Record<string, unknown>;
  for (const patch of SCHEMA_PATCHES) applyPatch(schema, patch);
  const { properties, definitions, ...rest } = schema;
  return { ...rest, ...(allowPlaceholders({ properties, definitions }) as Record<string, unknown>) };
}

/** An error of an alternative that only admits a `<< >>` placeholder (ours or the schema's own). */
function isPlaceholderError(e: ErrorObject): boolean {
  const pattern = (e.parentSchema as { pattern?: unknown } | undefined)?.pattern;
  return typeof pattern === 'string' && pattern.includes('<<');
}

/** Subschemas larger than this (as JSON) become definitions of their own (see splitSchema). */
const SPLIT_CHARS = 600;

/**
 * Moves large inline subschemas into definitions. Ajv compiles each definition it reaches through
 * `$ref` into a function of its own (inlineRefs: false); compiled whole, the schema is one function
 * of 700 KB that V8 never optimizes, and validation is two to three times slower.
 */
function splitSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const definitions: Record<string, unknown> = {};
  let count = 0;
  const walk = (node: unknown, top: boolean): unknown => {
    if (Array.isArray(node)) return node.map((n) => walk(n, false));
    if (typeof node !== 'object' || node === null) return node;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (MAP_OF_SCHEMAS.has(k) && typeof v === 'object' && v !== null) {
        out[k] = Object.fromEntries(Object.entries(v).map(([name, sub]) => [name, walk(sub, false)]));
      } else if (k === 'enum' || k === 'const' || k === 'default' || k === 'examples') out[k] = v;
      else out[k] = walk(v, false);
    }
    if (top || JSON.stringify(out).length <= SPLIT_CHARS) return out;
    const name = `torusSplit${count++}`;
    definitions[name] = out;
    return { $ref: `#/definitions/${name}` };
  };
  const own = schema.definitions as Record<string, unknown>;
  const result: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'definitions') continue;
    result[k] = k === 'properties' ? walk({ properties: v }, true) : v;
  }
  result.properties = (result.properties as { properties: unknown }).properties;
  result.definitions = {
    ...Object.fromEntries(Object.entries(own).map(([name, sub]) => [name, walk(sub, true)])),
    ...definitions,
  };
  return result;
}

/** JSON types a schema node can accept, when it says so itself (`type:`), else undefined. */
function declaredTypes(node: unknown): Set<string> | undefined {
  const t = (node as { type?: unknown } | null)?.type;
  const list = typeof t === 'string' ? [t] : Array.isArray(t) ? t.map(String) : undefined;
  if (!list) return undefined;
  const set = new Set(list);
  if (set.has('number')) set.add('integer');
  return set;
}

/** JSON types in the order the fast validator tries them: maps and lists are most of a config. */
const TYPE_ORDER = ['object', 'array', 'string', 'boolean', 'integer', 'number', 'null'];

/**
 * For the fast validator only: a oneOf whose alternatives accept disjoint JSON types means the same
 * as an anyOf, which stops at the first alternative that passes instead of trying all (each failing
 * one allocates an error, even in a valid config). Maps and lists are tried first. The step
 * definition qualifies too: its two map forms exclude each other by key (`when`/`unless` or not).
 */
function preferAnyOf(node: unknown, pointer = ''): unknown {
  if (Array.isArray(node)) return node.map((n, i) => preferAnyOf(n, `${pointer}/${i}`));
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    out[k] = k === 'enum' || k === 'const' || k === 'default' ? v : preferAnyOf(v, `${pointer}/${k}`);
  }
  const branches = out.oneOf;
  if (!Array.isArray(branches)) return out;
  const types = branches.map(declaredTypes);
  const disjoint =
    pointer === '/definitions/step' ||
    (types.every((t) => t !== undefined) &&
      types.every((t, i) => types.slice(i + 1).every((u) => [...u!].every((x) => !t!.has(x)))));
  if (!disjoint) return out;
  const rank = (i: number): number =>
    Math.min(...[...(types[i] ?? new Set(['object']))].map((t) => TYPE_ORDER.indexOf(t)));
  const order = branches.map((_, i) => i).sort((a, b) => rank(a) - rank(b) || a - b);
  const { oneOf: _, ...rest } = out;
  return { ...rest, anyOf: order.map((i) => branches[i]) };
}

function newAjv(rich: boolean): Ajv {
  const ajv = new Ajv({
    allErrors: rich,
    // the rich validator hands each error its schema, so messages can list allowed keys and values;
    // the fast one makes no messages (failing oneOf alternatives make errors even in valid configs)
    verbose: rich,
    messages: rich,
    // the schema carries editor keywords (markdownDescription) that strict mode refuses
    strict: false,
    logger: false,
    // definitions compile to functions of their own, and compile a third faster unoptimized
    inlineRefs: false,
    code: { optimize: false },
  });
  // the only format in the schema, on URL orbs
  ajv.addFormat('uri', /^[a-z][a-z0-9+.-]*:\S*$/i);
  return ajv;
}

let fastValidator: ValidateFunction | undefined;
let richValidator: ValidateFunction | undefined;

/**
 * The fast validator (stops at the first failure). Compiled on first use (about 0.4 s); call this at
 * server start to take that cost out of the first compile.
 */
export function schemaValidator(): ValidateFunction {
  fastValidator ??= newAjv(false).compile(
    splitSchema(preferAnyOf(patchedSchema()) as Record<string, unknown>),
  );
  return fastValidator;
}

/**
 * The validator that collects every error, compiled only when a config is invalid. It keeps the
 * schema's own shape, so the schema paths of errors show which alternatives they belong to.
 */
function richSchemaValidator(): ValidateFunction {
  richValidator ??= newAjv(true).compile(patchedSchema());
  return richValidator;
}

export interface SchemaContext {
  file: string;
  sourceMap: SourceMap;
  errors: ConfigError[];
}

/**
 * Checks a 2.1 config's raw tree (as parsed, before any processing) against the patched schema and
 * pushes at most MAX_SCHEMA_ERRORS `TORUS_E_CONFIG_SCHEMA` errors onto ctx.errors. Returns whether
 * the config is valid.
 */
export function validateSchema(root: Value, ctx: SchemaContext): boolean {
  if (schemaValidator()(root)) return true;
  const rich = richSchemaValidator();
  rich(root);
  const located = describeErrors(root, rich.errors ?? []).map((e) => ({
    e,
    pos: ctx.sourceMap.at(e.container, e.key),
  }));
  // in file order; errors without a position (a tree read without one) keep Ajv's order, last
  located.sort(
    (a, b) =>
      (a.pos?.line ?? Infinity) - (b.pos?.line ?? Infinity) || (a.pos?.column ?? 0) - (b.pos?.column ?? 0),
  );
  for (const { e, pos } of located) {
    ctx.errors.push(configError('TORUS_E_CONFIG_SCHEMA', e.message, pos?.file ?? ctx.file, pos, e.hint));
  }
  return false;
}

interface Described {
  container: unknown;
  key: string | number | undefined;
  message: string;
  hint?: string;
}

/** Keywords that only say "one of the alternatives failed"; their branches say why. */
const COMBINATORS = new Set(['oneOf', 'anyOf', 'if', 'not', 'propertyNames']);
/** Schema keywords whose subschema applies to a value one level down in the config. */
const DESCENDING = new Set([
  'properties',
  'patternProperties',
  'items',
  'additionalProperties',
  'additionalItems',
]);

/**
 * Collapses Ajv's errors into what a user should fix. A failing oneOf/anyOf reports every
 * alternative; of those, the alternative whose errors reach deepest into the value (then one that
 * fits the kind of value, then the one with fewest errors) is the one the user meant. Errors above a deeper error are dropped, type
 * errors are merged per place ("must be a string or a map"), and a type error yields to another
 * error at its place.
 */
export function describeErrors(root: Value, errors: readonly ErrorObject[]): Described[] {
  const relevant = errors.filter((e) => !isPlaceholderError(e));
  const candidates = (relevant.length > 0 ? relevant : errors)
    .filter((e) => !COMBINATORS.has(e.keyword) || (e.keyword === 'oneOf' && e.params.passingSchemas))
    .map((e) => ({ e, path: errorPath(e), depth: e.instancePath.split('/').length, alts: alternatives(e) }));
  // how far each alternative got into the value, and how many errors it has
  // (an alternative with only type errors did not fit the kind of value at all)
  const stats = new Map<string, { depth: number; typeOnly: boolean; count: number }>();
  for (const c of candidates) {
    for (const a of c.alts) {
      const k = `${a.group}\u0000${a.branch}`;
      const st = stats.get(k) ?? { depth: 0, typeOnly: true, count: 0 };
      st.depth = Math.max(st.depth, c.depth);
      st.typeOnly &&= c.e.keyword === 'type';
      st.count++;
      stats.set(k, st);
    }
  }
  const better = (a: { depth: number; typeOnly: boolean; count: number }, b: typeof a): boolean =>
    a.depth !== b.depth ? a.depth > b.depth : a.typeOnly !== b.typeOnly ? !a.typeOnly : a.count < b.count;
  const best = new Map<string, { branch: string; depth: number; typeOnly: boolean; count: number }>();
  for (const [k, st] of stats) {
    const [group, branch] = k.split('\u0000') as [string, string];
    const b = best.get(group);
    if (!b || better(st, b)) best.set(group, { branch, ...st });
  }
  const chosen = candidates.filter((c) =>
    c.alts.every((a) => {
      const b = best.get(a.group)!;
      if (b.branch === a.branch) return true;
      // equally good alternatives that only disagree on the type: "must be a string or a map"
      const st = stats.get(`${a.group}\u0000${a.branch}`)!;
      return c.e.keyword === 'type' && !better(b, st);
    }),
  );
  const isDeeper = (a: readonly string[], b: readonly string[]): boolean =>
    a.length > b.length && b.every((s, i) => s === a[i]);
  // "too many keys" stays: it is how a mis-indented key shows (`- run:` then `command:` too far left)
  const kept = chosen.filter(
    (c) => c.e.keyword === 'maxProperties' || !chosen.some((o) => isDeeper(o.path, c.path)),
  );
  const byPath = new Map<string, typeof kept>();
  for (const k of kept) {
    const key = k.path.join('\u0000');
    byPath.set(key, [...(byPath.get(key) ?? []), k]);
  }
  const out: Described[] = [];
  const seen = new Set<string>();
  for (const list of byPath.values()) {
    const nonType = list.filter((k) => k.e.keyword !== 'type');
    const described =
      nonType.length > 0
        ? nonType.map((k) => describe(root, k.e, k.path))
        : [describeType(root, list[0]!.path, [...new Set(list.flatMap((k) => typeNames(k.e.params.type)))])];
    for (const d of described) {
      if (seen.has(d.message)) continue;
      seen.add(d.message);
      out.push(d);
    }
    if (out.length >= MAX_SCHEMA_ERRORS) break;
  }
  if (out.length === 0 && errors.length > 0) {
    // only combinator errors were left: say where, at least
    const path = errorPath(errors[0]!);
    const { container, key } = locate(root, path);
    out.push({ container, key, message: `${displayPath(root, path)}: is not valid here` });
  }
  return out.slice(0, MAX_SCHEMA_ERRORS);
}

/**
 * The sets of alternatives (oneOf/anyOf) an error is inside, innermost last: each named by the
 * value it applies to and its place in the schema, with the alternative the error came from.
 */
function alternatives(e: ErrorObject): { group: string; branch: string }[] {
  const parts = e.schemaPath.split('/');
  const instance = e.instancePath.split('/');
  const out: { group: string; branch: string }[] = [];
  for (let at = 0; at < parts.length - 1; at++) {
    if ((parts[at] !== 'oneOf' && parts[at] !== 'anyOf') || !/^\d+$/.test(parts[at + 1]!)) continue;
    // how many levels into the value the schema descends below the alternative (not counting
    // the failing keyword itself)
    let levels = 0;
    for (let i = at + 2; i < parts.length - 1; i++) {
      if (!DESCENDING.has(parts[i]!)) continue;
      levels++;
      if (parts[i] === 'properties' || parts[i] === 'patternProperties') i++;
      else if (parts[i] === 'items' && /^\d+$/.test(parts[i + 1] ?? '')) i++;
    }
    const base = instance.slice(0, Math.max(1, instance.length - levels)).join('/');
    out.push({ group: `${base} ${parts.slice(0, at + 1).join('/')}`, branch: parts[at + 1]! });
  }
  return out;
}

/** The path of the node an error is about (for a key error, the key itself). */
function errorPath(e: ErrorObject): string[] {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (e.keyword === 'additionalProperties') path.push(String(e.params.additionalProperty));
  // an error about a key's name (propertyNames) carries the key
  if (e.propertyName !== undefined) path.push(e.propertyName);
  return path;
}

/** The value at a path, with the container holding it. */
function locate(
  root: Value,
  path: readonly string[],
): { container: unknown; key: string | number | undefined; value: unknown } {
  let container: unknown = undefined;
  let key: string | number | undefined = undefined;
  let value: unknown = root;
  for (const part of path) {
    container = value;
    key = Array.isArray(value) ? Number(part) : part;
    value =
      typeof value === 'object' && value !== null
        ? (value as Record<string | number, unknown>)[key]
        : undefined;
  }
  return { container: container ?? root, key, value };
}

/** `jobs.build.steps[2].run`, as users read a place in their config. */
export function displayPath(root: Value, path: readonly string[]): string {
  let out = '';
  let value: unknown = root;
  for (const part of path) {
    if (Array.isArray(value)) {
      out += `[${part}]`;
      value = value[Number(part)];
    } else {
      out += out === '' ? part : /^[A-Za-z0-9_-]+$/.test(part) ? `.${part}` : `[${JSON.stringify(part)}]`;
      value =
        typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
    }
  }
  return out === '' ? 'the config' : out;
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'a boolean (true or false)',
  object: 'a map',
  array: 'a list',
  null: 'empty',
};

function typeNames(t: unknown): string[] {
  return Array.isArray(t) ? t.map(String) : typeof t === 'string' ? t.split(',') : [];
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v === 'number' ? 'the number' : 'the boolean'} ${String(v)}`;
}

function describeType(root: Value, path: string[], types: string[]): Described {
  const { container, key, value } = locate(root, path);
  const words = types.map((t) => TYPE_WORDS[t] ?? t);
  const expected = words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words.at(-1)!}` : words[0]!;
  let hint: string | undefined;
  if ((types.includes('integer') || types.includes('number')) && typeof value === 'string') {
    hint = /^\s*-?\d+(\.\d+)?\s*$/.test(value)
      ? 'write the number without quotes'
      : 'use a number, or a parameter (`<< parameters.name >>`) declared with type: integer';
  } else if (types.includes('array') && !types.includes('string') && typeof value === 'string') {
    hint = `write it as a list: [${JSON.stringify(value)}]`;
  }
  const d: Described = {
    container,
    key,
    message: `${displayPath(root, path)}: must be ${expected}, not ${kindOf(value)}`,
  };
  if (hint) d.hint = hint;
  return d;
}

/** The closest of `names` to `word` when it is close enough to be a typo. */
function closest(word: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const n of names) {
    const d = editDistance(word.toLowerCase(), n.toLowerCase());
    if (d < bestDistance) {
      best = n;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function listWords(values: readonly unknown[], max = 12): string {
  const shown = values.slice(0, max).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
  return values.length > max ? `${shown.join(', ')}, …` : shown.join(', ');
}

function describe(root: Value, e: ErrorObject, path: string[]): Described {
  const { container, key, value } = locate(root, path);
  const where = displayPath(root, path);
  const parent = displayPath(root, path.slice(0, -1));
  const base = { container, key };
  switch (e.keyword) {
    case 'additionalProperties': {
      const name = String(e.params.additionalProperty);
      const allowed = Object.keys(
        (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {},
      );
      const guess = closest(name, allowed);
      const d: Described = { ...base, message: `${parent}: unknown key "${name}"` };
      if (guess) d.hint = `did you mean "${guess}"?`;
      else if (allowed.length > 0) d.hint = `allowed keys: ${listWords(allowed, 20)}`;
      return d;
    }
    case 'required': {
      // points at the key whose map lacks the required key
      const missing = String(e.params.missingProperty);
      const d: Described = { ...base, message: `${where}: missing required key "${missing}"` };
      const present = typeof value === 'object' && value !== null ? Object.keys(value) : [];
      const typo = present.find((k) => closest(k, [missing]) !== undefined);
      if (typo !== undefined) d.hint = `"${typo}" should probably be "${missing}"`;
      return d;
    }
    case 'type':
      return describeType(root, path, typeNames(e.params.type));
    case 'enum': {
      const allowed = [...new Set(((e.params.allowedValues as unknown[] | undefined) ?? []).map(String))];
      const guess = typeof value === 'string' ? closest(value, allowed.map(String)) : undefined;
      return {
        ...base,
        message: `${where}: ${kindOf(value)} is not allowed here`,
        hint: guess
          ? `did you mean "${guess}"? (one of: ${listWords(allowed)})`
          : `use one of: ${listWords(allowed)}`,
      };
    }
    case 'const':
      return { ...base, message: `${where}: must be ${JSON.stringify(e.params.allowedValue)}` };
    case 'pattern': {
      if (e.propertyName !== undefined) {
        return {
          ...base,
          message: `${parent}: the name "${e.propertyName}" is not allowed`,
          hint: `names must match ${String(e.params.pattern)}`,
        };
      }
      const d: Described = {
        ...base,
        message: `${where}: ${kindOf(value)} does not match ${String(e.params.pattern)}`,
      };
      if (path.at(-1) === 'no_output_timeout') d.hint = 'write a duration such as 30s, 10m or 1h';
      return d;
    }
    case 'minItems':
      return { ...base, message: `${where}: needs at least ${String(e.params.limit)} item(s)` };
    case 'maxItems':
      return { ...base, message: `${where}: takes at most ${String(e.params.limit)} item(s)` };
    case 'minProperties':
      return { ...base, message: `${where}: needs at least ${String(e.params.limit)} key(s)` };
    case 'maxProperties': {
      const d: Described = { ...base, message: `${where}: takes at most ${String(e.params.limit)} key(s)` };
      if (Number(e.params.limit) === 1)
        d.hint = 'are the keys after the first indented one level too little?';
      return d;
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return {
        ...base,
        message: `${where}: must be ${String(e.params.comparison)} ${String(e.params.limit)}`,
      };
    case 'oneOf':
      return { ...base, message: `${where}: matches more than one of the forms this key allows` };
    default:
      return { ...base, message: `${where}: ${e.message ?? 'is not valid'}` };
  }
}
