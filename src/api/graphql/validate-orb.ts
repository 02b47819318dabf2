// Orb validation helper (the compiler has none yet): an orb's top-level shape, and a generated
// config that imports the orb and invokes each of its jobs, commands and executors so the
// compiler checks their bodies. Dummy arguments are made up for required parameters.
import { isMap, isScalar as isYamlScalar, LineCounter, parseDocument, stringify } from 'yaml';

/** the reserved ref under which validateOrb serves the orb being validated to the compiler */
export const SELF_ORB_REF = 'torus-orb-validate/orb@0.0.0';
/** how error messages name the orb being validated */
export const SELF_ORB_FILE_LABEL = 'orb.yml';
/** the alias of the orb in the generated config; compiler messages say "in orb this-orb" */
const ALIAS = 'this-orb';

/** CircleCI's orb schema: the keys an orb may have at the top level */
const ORB_KEYS = new Set([
  'version',
  'description',
  'display',
  'orbs',
  'commands',
  'jobs',
  'executors',
  'examples',
]);
const PLACEHOLDER_IMAGE = 'cimg/base:current';
/** how many alias expansions reading an orb may take; past it the document is refused */
const MAX_ALIAS_COUNT = 10_000;

export interface OrbCheck {
  /** shape errors, `orb.yml:line:column: message` */
  errors: string[];
  /** a config that imports SELF_ORB_REF and invokes every element */
  harnessConfig: string;
  /** the orb re-serialized (what `circleci orb process` prints) */
  normalizedYaml: string;
  /** the orb could not be read at all: compiling it would only repeat the error */
  fatal?: boolean;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonMap = { [k: string]: Json };

function isJsonMap(v: unknown): v is JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkOrb(source: string): OrbCheck {
  const errors: string[] = [];
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, version: '1.1', merge: true, uniqueKeys: true });
  const emptyHarness = harness({});
  // YAML syntax errors are reported by the compiler (with its messages) when it loads the orb
  if (doc.errors.length > 0) return { errors, harnessConfig: emptyHarness, normalizedYaml: '' };
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return `${SELF_ORB_FILE_LABEL}:1:1`;
    const { line, col } = lines.linePos(offset);
    return `${SELF_ORB_FILE_LABEL}:${line}:${col}`;
  };
  if (!isMap(doc.contents)) {
    errors.push(`${at(doc.contents?.range?.[0])}: an orb must be a map at the top level`);
    return { errors, harnessConfig: emptyHarness, normalizedYaml: '' };
  }
  const keyOffset = new Map<string, number | undefined>();
  for (const pair of doc.contents.items) {
    const name = isYamlScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const offset = isYamlScalar(pair.key) ? pair.key.range?.[0] : undefined;
    keyOffset.set(name, offset);
    if (!ORB_KEYS.has(name)) {
      errors.push(`${at(offset)}: "${name}" is not allowed in an orb (allowed: ${[...ORB_KEYS].join(', ')})`);
    }
  }
  let orb: unknown;
  try {
    orb = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // the yaml library refuses alias expansion past the limit (a "billion laughs" document)
    if (!(err instanceof ReferenceError)) throw err;
    errors.push(`${at(0)}: the orb's YAML aliases expand too far (${err.message})`);
    return { errors, harnessConfig: emptyHarness, normalizedYaml: '', fatal: true };
  }
  if (!isJsonMap(orb)) return { errors, harnessConfig: emptyHarness, normalizedYaml: '' };
  if (orb.version === undefined) errors.push(`${at(0)}: an orb needs "version: 2.1"`);
  else if (String(orb.version) !== '2.1')
    errors.push(
      `${at(keyOffset.get('version'))}: an orb's version must be 2.1, not ${JSON.stringify(orb.version)}`,
    );
  if (orb.description !== undefined && typeof orb.description !== 'string') {
    errors.push(`${at(keyOffset.get('description'))}: description must be text`);
  }
  for (const key of ['display', 'examples', 'commands', 'jobs', 'executors', 'orbs']) {
    if (orb[key] !== undefined && orb[key] !== null && !isJsonMap(orb[key]))
      errors.push(`${at(keyOffset.get(key))}: ${key} must be a map`);
  }
  return {
    errors,
    harnessConfig: harness(orb),
    normalizedYaml: stringify(orb, { lineWidth: 0, version: '1.1', aliasDuplicateObjects: false }),
  };
}

/** A value for a required parameter, by its declared type; undefined when none can be made up. */
function dummyArgument(declaration: Json, usableExecutor: string | undefined): Json | undefined {
  if (!isJsonMap(declaration)) return undefined;
  const type = typeof declaration.type === 'string' ? declaration.type : '';
  switch (type) {
    case 'string':
      return 'torus-orb-validate';
    case 'boolean':
      return false;
    case 'integer':
      return 0;
    case 'enum':
      return Array.isArray(declaration.enum) && declaration.enum.length > 0
        ? declaration.enum[0]!
        : undefined;
    case 'env_var_name':
      return 'TORUS_ORB_VALIDATE';
    case 'steps':
      return [];
    case 'executor':
      return usableExecutor;
    default:
      return undefined;
  }
}

/** Arguments for an element's required parameters, or undefined when one cannot be made up. */
function dummyArguments(element: Json, usableExecutor: string | undefined): JsonMap | undefined {
  const args: JsonMap = {};
  if (!isJsonMap(element) || !isJsonMap(element.parameters)) return args;
  for (const [name, declaration] of Object.entries(element.parameters)) {
    if (isJsonMap(declaration) && declaration.default !== undefined) continue;
    const value = dummyArgument(declaration, usableExecutor);
    if (value === undefined) return undefined;
    args[name] = value;
  }
  return args;
}

function entries(section: Json | undefined): [string, Json][] {
  return isJsonMap(section) ? Object.entries(section) : [];
}

/** A config that imports the orb and uses each of its jobs, commands and executors once. */
function harness(orb: JsonMap): string {
  const jobs: JsonMap = {};
  const workflowJobs: Json[] = [];
  let usableExecutor: string | undefined;
  for (const [name, executor] of entries(orb.executors)) {
    const args = dummyArguments(executor, undefined);
    if (!args) continue;
    if (Object.keys(args).length === 0) usableExecutor ??= `${ALIAS}/${name}`;
    jobs[`executor-${name}`] = { executor: { name: `${ALIAS}/${name}`, ...args }, steps: ['checkout'] };
  }
  for (const [name, command] of entries(orb.commands)) {
    const args = dummyArguments(command, usableExecutor);
    if (!args) continue;
    jobs[`command-${name}`] = {
      docker: [{ image: PLACEHOLDER_IMAGE }],
      steps: [{ [`${ALIAS}/${name}`]: args }],
    };
  }
  for (const [name, job] of entries(orb.jobs)) {
    const args = dummyArguments(job, usableExecutor);
    if (!args) continue;
    workflowJobs.push({ [`${ALIAS}/${name}`]: { name: `job-${name}`, ...args } });
  }
  for (const name of Object.keys(jobs)) workflowJobs.push(name);
  const config: JsonMap = { version: 2.1, orbs: { [ALIAS]: SELF_ORB_REF } };
  if (Object.keys(jobs).length > 0) config.jobs = jobs;
  if (workflowJobs.length > 0) config.workflows = { 'validate-orb': { jobs: workflowJobs } };
  else config.jobs = { build: { docker: [{ image: PLACEHOLDER_IMAGE }], steps: ['checkout'] } };
  return stringify(config, { lineWidth: 0 });
}
