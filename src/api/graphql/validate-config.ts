// Config and orb validation as `circleci config validate|process` and `circleci orb validate|process`
// see it: the compiler's result turned into CircleCI's `{valid, errors[{message}], sourceYaml,
// outputYaml}`, shared by the GraphQL `buildConfig`/`orbConfig` fields and the REST
// `compile-config-with-defaults` route.
import {
  compileConfig,
  type ConfigError,
  type OrbResolver,
  type PipelineParameters,
  type PipelineValues,
} from '../../config/index.js';
import { checkOrb, SELF_ORB_FILE_LABEL, SELF_ORB_REF } from './validate-orb.js';

export interface ConfigValidation {
  valid: boolean;
  errors: { message: string }[];
  sourceYaml: string;
  /** the processed config (or the normalized orb); empty when invalid */
  outputYaml: string;
}

export interface ConfigValidationOptions {
  pipelineValues?: PipelineValues;
  pipelineParameters?: PipelineParameters;
  orbResolver?: OrbResolver;
}

type Scalar = string | number | boolean | null;

export function isScalar(v: unknown): v is Scalar {
  return (
    v === null ||
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && Number.isFinite(v))
  );
}

function invalid(sourceYaml: string, messages: string[]): ConfigValidation {
  return { valid: false, errors: messages.map((message) => ({ message })), sourceYaml, outputYaml: '' };
}

/** `file:line:column: message (hint)`: the compiler's message already carries the location. */
export function errorMessage(e: ConfigError): string {
  return e.hint ? `${e.message} (${e.hint})` : e.message;
}

/**
 * Reads pipeline parameters as the CLI sends them to the GraphQL API: a JSON object text
 * (`json.Marshal(params)`). A malformed text is a validation error the user can fix, not a crash.
 */
export function parsePipelineParametersJson(text: string | null | undefined): {
  parameters?: PipelineParameters;
  error?: string;
} {
  if (text === null || text === undefined || text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { error: `pipelineParametersJson is not valid JSON: ${(err as Error).message}` };
  }
  return checkPipelineParameters(value, 'pipelineParametersJson');
}

/** Pipeline parameters must be a map of strings, numbers and booleans (CircleCI's API rule). */
export function checkPipelineParameters(
  value: unknown,
  what: string,
): { parameters?: PipelineParameters; error?: string } {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    return { error: `${what} must be a map of parameter names to values` };
  const parameters: PipelineParameters = {};
  for (const [k, v] of Object.entries(value)) {
    if (!isScalar(v) || v === null)
      return { error: `${what}: pipeline parameter "${k}" must be a string, a number or a boolean` };
    parameters[k] = v;
  }
  return { parameters };
}

/** Compiles a config; a valid one's outputYaml is what `circleci config process` prints. */
export async function validateConfig(
  source: string,
  opts: ConfigValidationOptions,
): Promise<ConfigValidation> {
  const result = await compileConfig(source, {
    pipelineValues: opts.pipelineValues,
    pipelineParameters: opts.pipelineParameters,
    orbResolver: opts.orbResolver,
  });
  if (!result.ok) return invalid(source, result.errors.map(errorMessage));
  return { valid: true, errors: [], sourceYaml: source, outputYaml: result.processedYaml };
}

/**
 * Validates an orb: its own shape (`checkOrb`), then every job, command and executor compiled by
 * a generated config that imports the orb (served to the compiler under a reserved ref) and
 * invokes each element, so errors inside the orb point at the orb's own lines.
 */
export async function validateOrb(
  source: string,
  opts: { orbResolver?: OrbResolver },
): Promise<ConfigValidation> {
  const checked = checkOrb(source);
  const shapeErrors = checked.errors;
  if (checked.fatal) return invalid(source, shapeErrors);
  const resolver: OrbResolver = {
    resolve: async (ref) => {
      if (ref === SELF_ORB_REF) return { version: '0.0.0', source };
      return opts.orbResolver ? opts.orbResolver.resolve(ref) : null;
    },
  };
  const result = await compileConfig(checked.harnessConfig, {
    orbResolver: resolver,
    filename: HARNESS_FILE,
  });
  // When the orb itself does not load (a YAML error, reported on its own), the generated config's
  // import of it fails too; that second error says nothing the user can act on.
  const compileErrors = result.ok
    ? []
    : result.errors
        .filter((e) => !(e.file === HARNESS_FILE && e.message.includes(SELF_ORB_REF)))
        .map(orbErrorMessage);
  const messages = [...shapeErrors, ...compileErrors];
  if (!result.ok && messages.length === 0) messages.push(...result.errors.map(orbErrorMessage));
  if (messages.length > 0) return invalid(source, messages);
  return { valid: true, errors: [], sourceYaml: source, outputYaml: checked.normalizedYaml };
}

/** the generated config's file label; errors there are about how the orb is used */
const HARNESS_FILE = 'orb-validation';

function orbErrorMessage(e: ConfigError): string {
  const text = errorMessage(e);
  const where = e.line !== undefined ? `${e.file}:${e.line}:${e.column}` : (e.file ?? '');
  const rest = text.startsWith(`${where}: `) ? text.slice(where.length + 2) : text;
  if (e.file === SELF_ORB_FILE_LABEL_COMPILED) {
    return e.line !== undefined
      ? `${SELF_ORB_FILE_LABEL}:${e.line}:${e.column}: ${rest}`
      : `${SELF_ORB_FILE_LABEL}: ${rest}`;
  }
  // a location in the generated config, which the user never sees, would only mislead: drop it
  if (e.file === HARNESS_FILE) return `${SELF_ORB_FILE_LABEL}: ${rest}`;
  return text;
}

/** how the compiler labels the orb served under SELF_ORB_REF (`orb <ns>/<name>@<version>`) */
const SELF_ORB_FILE_LABEL_COMPILED = `orb ${SELF_ORB_REF}`;
