// Parameters of 2.1 elements and pipelines: declarations, argument checking (CircleCI's types and its
// "Unexpected argument(s)" / missing-argument rules), `<< … >>` substitution, and logic statements
// (`when`/`unless`: and/or/not/equal/matches).
import type { ConfigError } from './model.js';
import { configError, type ConfigErrorCode, type Position } from './errors.js';
import { evaluateExpression, ExpressionError, looksLikeExpression } from './expr.js';
import type { MapValue, SourceMap, Value } from './source.js';

/** Shared state of one compilation: where errors go and how to locate values. */
export interface Context {
  file: string;
  sourceMap: SourceMap;
  errors: ConfigError[];
}

export function report(
  ctx: Context,
  code: ConfigErrorCode,
  message: string,
  where?: { container: unknown; key?: string | number } | Position,
  hint?: string,
): void {
  let pos: (Position & { file?: string }) | undefined;
  if (where && 'line' in where) pos = where;
  else if (where) pos = ctx.sourceMap.at(where.container, where.key);
  ctx.errors.push(configError(code, message, pos?.file ?? ctx.file, pos, hint));
}

export function isMapValue(v: unknown): v is MapValue {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** CircleCI names: a letter, then letters, digits, `_` and `-`. */
export const ELEMENT_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PARAMETER_TYPES = new Set([
  'string',
  'boolean',
  'integer',
  'enum',
  'env_var_name',
  'steps',
  'executor',
]);
const PIPELINE_PARAMETER_TYPES = new Set(['string', 'boolean', 'integer', 'enum']);

export interface ParameterDecl {
  name: string;
  type: string;
  hasDefault: boolean;
  default: Value;
  enum?: Value[];
}

/** Reads a `parameters:` map; reports malformed declarations. */
export function readParameterDecls(
  ctx: Context,
  raw: Value | undefined,
  owner: string,
  pipeline = false,
): Map<string, ParameterDecl> {
  const decls = new Map<string, ParameterDecl>();
  if (raw === undefined || raw === null) return decls;
  if (!isMapValue(raw)) {
    report(ctx, 'TORUS_E_CONFIG_SHAPE', `parameters of ${owner} must be a map`, { container: raw });
    return decls;
  }
  for (const [name, spec] of Object.entries(raw)) {
    const where = { container: raw, key: name };
    if (!ELEMENT_NAME.test(name)) {
      report(
        ctx,
        'TORUS_E_CONFIG_INVALID_NAME',
        `parameter name "${name}" of ${owner} is invalid: names start with a letter and use letters, digits, "_" and "-"`,
        where,
      );
      continue;
    }
    if (!isMapValue(spec) || typeof spec.type !== 'string') {
      report(
        ctx,
        'TORUS_E_CONFIG_PARAMETER_DECLARATION',
        `parameter "${name}" of ${owner} needs a "type"`,
        where,
      );
      continue;
    }
    const types = pipeline ? PIPELINE_PARAMETER_TYPES : PARAMETER_TYPES;
    if (!types.has(spec.type)) {
      report(
        ctx,
        'TORUS_E_CONFIG_PARAMETER_DECLARATION',
        `parameter "${name}" of ${owner} has unknown type "${spec.type}" (allowed: ${[...types].join(', ')})`,
        where,
      );
      continue;
    }
    const decl: ParameterDecl = {
      name,
      type: spec.type,
      hasDefault: 'default' in spec,
      default: spec.default ?? null,
    };
    if (spec.type === 'enum') {
      if (!Array.isArray(spec.enum) || spec.enum.length === 0) {
        report(
          ctx,
          'TORUS_E_CONFIG_PARAMETER_DECLARATION',
          `enum parameter "${name}" of ${owner} needs a non-empty "enum" list`,
          where,
        );
        continue;
      }
      decl.enum = spec.enum;
    }
    if (pipeline && !decl.hasDefault) {
      report(
        ctx,
        'TORUS_E_CONFIG_PARAMETER_DECLARATION',
        `pipeline parameter "${name}" needs a default`,
        where,
      );
      continue;
    }
    if (decl.hasDefault && !(spec.type === 'steps' && spec.default === null)) {
      const checked = checkArgument(decl, spec.default ?? null);
      if (!checked.ok) {
        report(
          ctx,
          'TORUS_E_CONFIG_PARAMETER_TYPE',
          `default of parameter "${name}" of ${owner}: ${checked.message}`,
          { container: spec, key: 'default' },
        );
        continue;
      }
      decl.default = checked.value;
    }
    decls.set(name, decl);
  }
  return decls;
}

const TRUE_WORDS = new Set(['true', 'yes', 'on', 'y']);
const FALSE_WORDS = new Set(['false', 'no', 'off', 'n']);

type Checked = { ok: true; value: Value } | { ok: false; message: string };

/** Type-checks (and lightly coerces) one argument the way CircleCI does. */
export function checkArgument(decl: ParameterDecl, value: Value): Checked {
  const show = JSON.stringify(value);
  switch (decl.type) {
    case 'string':
      if (typeof value === 'string') return { ok: true, value };
      if (typeof value === 'number') return { ok: true, value: String(value) };
      if (value === null) return { ok: true, value: '' };
      return {
        ok: false,
        message: `expected a string, got ${show}${typeof value === 'boolean' ? ' (quote it to pass the text)' : ''}`,
      };
    case 'boolean':
      if (typeof value === 'boolean') return { ok: true, value };
      if (typeof value === 'string' && TRUE_WORDS.has(value.toLowerCase())) return { ok: true, value: true };
      if (typeof value === 'string' && FALSE_WORDS.has(value.toLowerCase()))
        return { ok: true, value: false };
      return { ok: false, message: `expected a boolean, got ${show}` };
    case 'integer':
      if (typeof value === 'number' && Number.isInteger(value)) return { ok: true, value };
      if (typeof value === 'string' && /^-?\d+$/.test(value.trim()))
        return { ok: true, value: Number(value.trim()) };
      return { ok: false, message: `expected an integer, got ${show}` };
    case 'enum': {
      const members = decl.enum ?? [];
      const hit = members.find((m) => m === value || String(m) === String(value));
      if (hit !== undefined) return { ok: true, value: typeof value === 'string' ? value : hit };
      return { ok: false, message: `${show} is not one of ${JSON.stringify(members)}` };
    }
    case 'env_var_name':
      if (typeof value === 'string' && ENV_VAR_NAME.test(value)) return { ok: true, value };
      return { ok: false, message: `expected an environment variable name, got ${show}` };
    case 'steps':
      if (value === null) return { ok: true, value: [] };
      if (Array.isArray(value)) return { ok: true, value };
      return { ok: false, message: `expected a list of steps, got ${show}` };
    case 'executor':
      if (typeof value === 'string' && value !== '') return { ok: true, value };
      if (isMapValue(value) && typeof value.name === 'string') return { ok: true, value };
      return { ok: false, message: `expected an executor name or {name: …}, got ${show}` };
    default:
      return { ok: false, message: `unknown parameter type ${decl.type}` };
  }
}

/**
 * Checks the arguments of one invocation against the declarations: every required parameter
 * passed, no undeclared ones, each of the right type. Returns the full parameter values.
 */
export function resolveArguments(
  ctx: Context,
  decls: Map<string, ParameterDecl>,
  args: MapValue,
  owner: string,
  where: { container: unknown; key?: string | number },
): Record<string, Value> {
  const values: Record<string, Value> = {};
  const unexpected = Object.keys(args).filter((k) => !decls.has(k));
  if (unexpected.length > 0) {
    report(
      ctx,
      'TORUS_E_CONFIG_UNEXPECTED_ARGUMENT',
      `Unexpected argument(s) for ${owner}: ${unexpected.join(', ')}`,
      { container: args, key: unexpected[0] },
      decls.size > 0
        ? `${owner} declares: ${[...decls.keys()].join(', ')}`
        : `${owner} declares no parameters`,
    );
  }
  for (const decl of decls.values()) {
    if (decl.name in args) {
      const checked = checkArgument(decl, args[decl.name] ?? null);
      if (checked.ok) values[decl.name] = checked.value;
      else {
        report(
          ctx,
          'TORUS_E_CONFIG_PARAMETER_TYPE',
          `argument "${decl.name}" of ${owner}: ${checked.message}`,
          { container: args, key: decl.name },
        );
        values[decl.name] = decl.default;
      }
    } else if (decl.hasDefault) {
      values[decl.name] = decl.type === 'steps' && decl.default === null ? [] : decl.default;
    } else {
      report(
        ctx,
        'TORUS_E_CONFIG_MISSING_PARAMETER',
        `missing required argument "${decl.name}" for ${owner}`,
        where,
        `pass ${decl.name}: <${decl.type}> where ${owner} is used`,
      );
      values[decl.name] = decl.type === 'steps' ? [] : null;
    }
  }
  return values;
}

/** Which `<< … >>` references one substitution pass replaces; others are left for a later pass. */
export interface SubstitutionPass {
  /** 'pipeline' replaces pipeline.*, 'parameters' parameters.*, 'matrix' matrix.* */
  kind: 'pipeline' | 'parameters' | 'matrix';
  values: Map<string, Value>;
  /** what the scope is, for error messages ("job build") */
  owner: string;
  /** pipeline values, so expressions may mix them with parameters (`parameters.env == pipeline.git.branch`) */
  pipeline?: Map<string, Value>;
}

const REFERENCE = /(\\?)<<\s*((?:(?!<<|>>)[\s\S])*?)\s*>>/g;
const SIMPLE_NAME = /^(pipeline|parameters|matrix)(\.[A-Za-z0-9_-]+)+$/;

function namespaceOf(name: string): string {
  return name.startsWith('pipeline.')
    ? 'pipeline'
    : name.startsWith('parameters.')
      ? 'parameters'
      : name.startsWith('matrix.')
        ? 'matrix'
        : '';
}

/** Text form of a value interpolated into a larger string. */
export function renderScalar(v: Value): string {
  if (v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/**
 * Replaces the references of one pass in a value (deeply). A reference that is the whole scalar
 * yields the typed value; inside a longer string it is interpolated as text. `\<<` is left alone
 * (unescaped once, at the end of compilation). Inserted values are not scanned again.
 */
export function substitute(
  ctx: Context,
  value: Value,
  pass: SubstitutionPass,
  container?: unknown,
  key?: string | number,
): Value {
  if (typeof value === 'string') return substituteString(ctx, value, pass, container, key);
  if (Array.isArray(value)) {
    const out = value.map((v, i) => substitute(ctx, v, pass, value, i));
    ctx.sourceMap.copy(value, out);
    return out;
  }
  if (isMapValue(value)) {
    const out: MapValue = {};
    for (const [k, v] of Object.entries(value)) {
      // keys may hold references too (`environment: {<< parameters.var >>: x}`)
      const key = k.includes('<<') ? renderScalar(substituteString(ctx, k, pass, value, k)) : k;
      out[key] = substitute(ctx, v, pass, value, k);
    }
    ctx.sourceMap.copy(value, out);
    return out;
  }
  return value;
}

/** The roots of CircleCI's pipeline values registry (CircleCI-Public/expr pipeline-values.yml). */
const PIPELINE_VALUE_ROOTS = new Set([
  'id',
  'number',
  'definition',
  'name',
  'project',
  'integration_source',
  'git',
  'config',
  'trigger',
  'trigger_source',
  'schedule',
  'event',
  'trigger_parameters',
  'deploy',
  'in_setup',
]);

/** A `pipeline.*` name (not a parameter) that CircleCI knows, even if this pipeline has no value for it. */
export function isKnownPipelineValue(name: string): boolean {
  const root = name.split('.')[1] ?? '';
  return root !== 'parameters' && PIPELINE_VALUE_ROOTS.has(root);
}

function lookup(
  ctx: Context,
  name: string,
  pass: SubstitutionPass,
  where: { container: unknown; key?: string | number },
): Value | undefined {
  if (pass.values.has(name)) return pass.values.get(name) ?? null;
  if (pass.kind === 'pipeline' && isKnownPipelineValue(name)) return ''; // known-but-absent pipeline values are empty
  if (pass.kind === 'pipeline' && !name.startsWith('pipeline.parameters.')) {
    report(
      ctx,
      'TORUS_E_CONFIG_UNDECLARED_PARAMETER',
      `unknown pipeline value ${name}`,
      where,
      'see the pipeline values reference: pipeline.id, pipeline.number, pipeline.git.branch, pipeline.git.tag, pipeline.project.*, pipeline.trigger_source, …',
    );
    return undefined;
  }
  const shown = name;
  report(
    ctx,
    'TORUS_E_CONFIG_UNDECLARED_PARAMETER',
    `Arguments referenced without declared parameters: ${shown} (in ${pass.owner})`,
    where,
    pass.kind === 'pipeline'
      ? `declare it under the top-level parameters: with a type and a default`
      : pass.kind === 'matrix'
        ? 'matrix.* references are only available in a workflow job invocation with matrix:'
        : `declare it under parameters: of ${pass.owner}`,
  );
  return undefined;
}

function substituteString(
  ctx: Context,
  text: string,
  pass: SubstitutionPass,
  container: unknown,
  key: string | number | undefined,
): Value {
  if (!text.includes('<<')) return text;
  const where = { container, key };
  REFERENCE.lastIndex = 0;
  const whole = /^<<\s*((?:(?!<<|>>)[\s\S])*?)\s*>>$/.exec(text);
  if (whole) {
    const inner = whole[1]!;
    if (SIMPLE_NAME.test(inner)) {
      if (namespaceOf(inner) !== pass.kind) return text;
      const v = lookup(ctx, inner, pass, where);
      return v === undefined ? text : v;
    }
    if (looksLikeExpression(inner, pass.kind, pass.pipeline ? ['pipeline'] : [])) {
      const v = evaluate(ctx, inner, pass, where);
      return v === undefined ? text : v;
    }
    return text;
  }
  return text.replace(REFERENCE, (match: string, escape: string, inner: string) => {
    if (escape) return match;
    if (SIMPLE_NAME.test(inner)) {
      if (namespaceOf(inner) !== pass.kind) return match;
      const v = lookup(ctx, inner, pass, where);
      return v === undefined ? match : renderScalar(v);
    }
    if (looksLikeExpression(inner, pass.kind, pass.pipeline ? ['pipeline'] : [])) {
      const v = evaluate(ctx, inner, pass, where);
      return v === undefined ? match : renderScalar(v);
    }
    return match;
  });
}

function evaluate(
  ctx: Context,
  inner: string,
  pass: SubstitutionPass,
  where: { container: unknown; key?: string | number },
): Value | undefined {
  try {
    return evaluateExpression(inner, (name) => {
      if (pass.pipeline && namespaceOf(name) === 'pipeline') {
        if (pass.pipeline.has(name)) return pass.pipeline.get(name) ?? null;
        if (isKnownPipelineValue(name)) return null;
        throw new ExpressionError(`unknown variable ${name}`);
      }
      if (namespaceOf(name) !== pass.kind) throw new ExpressionError(`${name} is not available here`);
      if (pass.values.has(name)) return pass.values.get(name) ?? null;
      if (pass.kind === 'pipeline' && isKnownPipelineValue(name)) return null;
      throw new ExpressionError(`unknown variable ${name}`);
    });
  } catch (err) {
    if (err instanceof ExpressionError) {
      report(ctx, 'TORUS_E_CONFIG_EXPRESSION', `in << ${inner} >>: ${err.message}`, where);
      return undefined;
    }
    throw err;
  }
}

/** Removes the escape from `\<<` once every pass is done. */
export function unescapeReferences(value: Value): Value {
  if (typeof value === 'string') return value.includes('\\<<') ? value.replace(/\\<</g, '<<') : value;
  if (Array.isArray(value)) return value.map(unescapeReferences);
  if (isMapValue(value)) {
    const out: MapValue = {};
    for (const [k, v] of Object.entries(value)) out[k] = unescapeReferences(v);
    return out;
  }
  return value;
}

/** CircleCI truthiness: false, null, 0, NaN and "" are falsy. */
export function truthy(v: Value): boolean {
  if (v === null || v === false || v === '' || v === 0) return false;
  if (typeof v === 'number' && Number.isNaN(v)) return false;
  return true;
}

const MAX_LOGIC_DEPTH = 100;

/** Evaluates a logic statement (`when`/`unless` condition) whose references are already substituted. */
export function evaluateLogic(
  ctx: Context,
  stmt: Value,
  where: { container: unknown; key?: string | number },
  depth = 0,
): boolean {
  if (depth > MAX_LOGIC_DEPTH) {
    report(ctx, 'TORUS_E_CONFIG_LOGIC', `logic statement nested more than ${MAX_LOGIC_DEPTH} levels`, where);
    return false;
  }
  if (Array.isArray(stmt)) {
    report(
      ctx,
      'TORUS_E_CONFIG_LOGIC',
      'a logic statement cannot be a list; use and: [...] or or: [...]',
      where,
    );
    return false;
  }
  if (!isMapValue(stmt)) return truthy(stmt);
  const keys = Object.keys(stmt);
  if (keys.length !== 1) {
    report(
      ctx,
      'TORUS_E_CONFIG_LOGIC',
      `a logic statement has exactly one of and, or, not, equal, matches (got ${keys.join(', ') || 'nothing'})`,
      where,
    );
    return false;
  }
  const op = keys[0]!;
  const arg = stmt[op] ?? null;
  const inner = { container: stmt, key: op };
  const list = (): Value[] | undefined => {
    if (!Array.isArray(arg)) {
      report(ctx, 'TORUS_E_CONFIG_LOGIC', `"${op}" needs a list`, inner);
      return undefined;
    }
    if (arg.length === 0) {
      report(ctx, 'TORUS_E_CONFIG_LOGIC', `"${op}" needs at least one argument`, inner);
      return undefined;
    }
    return arg;
  };
  switch (op) {
    case 'and': {
      const items = list();
      return items
        ? items.map((s) => evaluateLogic(ctx, s, { container: arg }, depth + 1)).every(Boolean)
        : false;
    }
    case 'or': {
      const items = list();
      return items
        ? items.map((s) => evaluateLogic(ctx, s, { container: arg }, depth + 1)).some(Boolean)
        : false;
    }
    case 'not':
      return !evaluateLogic(ctx, arg, inner, depth + 1);
    case 'equal': {
      const items = list();
      if (!items) return false;
      const first = JSON.stringify(items[0]);
      return items.every((i) => JSON.stringify(i) === first);
    }
    case 'matches': {
      if (!isMapValue(arg) || typeof arg.pattern !== 'string') {
        report(ctx, 'TORUS_E_CONFIG_LOGIC', '"matches" needs {pattern: <regex>, value: <string>}', inner);
        return false;
      }
      return matchesWhole(ctx, arg.pattern, renderScalar(arg.value ?? null), inner);
    }
    default:
      report(
        ctx,
        'TORUS_E_CONFIG_LOGIC',
        `unknown logic operator "${op}" (use and, or, not, equal, matches)`,
        inner,
      );
      return false;
  }
}

/** Full-string regex match with a guard against patterns prone to catastrophic backtracking. */
export function matchesWhole(
  ctx: Context,
  pattern: string,
  value: string,
  where: { container: unknown; key?: string | number },
): boolean {
  if (pattern.length > 1000 || /\([^)]*[+*][^)]*\)[+*{]/.test(pattern)) {
    report(
      ctx,
      'TORUS_E_CONFIG_LOGIC',
      `pattern ${JSON.stringify(pattern)} is refused: nested quantifiers can take exponential time`,
      where,
    );
    return false;
  }
  try {
    return new RegExp(`^(?:${pattern})$`, 'u').test(value.slice(0, 10_000));
  } catch (err) {
    report(
      ctx,
      'TORUS_E_CONFIG_LOGIC',
      `invalid pattern ${JSON.stringify(pattern)}: ${(err as Error).message}`,
      where,
    );
    return false;
  }
}
