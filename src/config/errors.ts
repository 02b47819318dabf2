// The catalogue of config compiler errors: every problem a user can meet in .circleci/config.yml has a
// stable code here, and is reported as a ConfigError with the file:line:column where it applies.
import type { ConfigError } from './model.js';

export const CONFIG_ERROR_CODES = {
  /** the text is not valid YAML (syntax, tabs, duplicate keys) */
  TORUS_E_CONFIG_YAML: 'invalid YAML',
  /** the source is larger than maxBytes */
  TORUS_E_CONFIG_TOO_LARGE: 'config too large',
  /** nesting deeper than the compiler accepts (YAML or command recursion) */
  TORUS_E_CONFIG_TOO_DEEP: 'config nested too deeply',
  /** YAML aliases expand to more nodes than the compiler accepts (billion laughs) */
  TORUS_E_CONFIG_ALIAS_LIMIT: 'too many alias expansions',
  /** `version:` missing or not 2, 2.0 or 2.1 */
  TORUS_E_CONFIG_VERSION: 'bad version',
  /** a key has the wrong shape (a map where a list is needed, …) */
  TORUS_E_CONFIG_SHAPE: 'bad shape',
  /** a workflow names a job that is not defined */
  TORUS_E_CONFIG_UNKNOWN_JOB: 'unknown job',
  /** a step names a command that is not defined */
  TORUS_E_CONFIG_UNKNOWN_COMMAND: 'unknown command',
  /** a job names an executor that is not defined */
  TORUS_E_CONFIG_UNKNOWN_EXECUTOR: 'unknown executor',
  /** an `alias/element` names an orb that is not declared or cannot be resolved */
  TORUS_E_CONFIG_UNKNOWN_ORB: 'unknown orb',
  /** `requires` names a job that is not in the workflow */
  TORUS_E_CONFIG_UNKNOWN_REQUIREMENT: 'unknown requirement',
  /** `requires` edges form a cycle */
  TORUS_E_CONFIG_REQUIRES_CYCLE: 'requires cycle',
  /** a required parameter was not passed */
  TORUS_E_CONFIG_MISSING_PARAMETER: 'missing parameter',
  /** a parameter was passed that the element does not declare ("Unexpected argument(s)") */
  TORUS_E_CONFIG_UNEXPECTED_ARGUMENT: 'unexpected argument',
  /** a parameter value has the wrong type */
  TORUS_E_CONFIG_PARAMETER_TYPE: 'parameter type',
  /** `<< parameters.x >>` names a parameter that is not declared */
  TORUS_E_CONFIG_UNDECLARED_PARAMETER: 'undeclared parameter',
  /** a parameter declaration is malformed */
  TORUS_E_CONFIG_PARAMETER_DECLARATION: 'bad parameter declaration',
  /** a job, command, executor or parameter name breaks CircleCI's naming rules */
  TORUS_E_CONFIG_INVALID_NAME: 'invalid name',
  /** two elements share a name */
  TORUS_E_CONFIG_DUPLICATE_NAME: 'duplicate name',
  /** a job has no steps */
  TORUS_E_CONFIG_NO_STEPS: 'job has no steps',
  /** a command or job invokes itself (directly or through others) */
  TORUS_E_CONFIG_RECURSION: 'recursive command',
  /** a logic statement (`when`/`unless`) is malformed */
  TORUS_E_CONFIG_LOGIC: 'bad logic statement',
  /** a `<< >>` expression does not parse or evaluate */
  TORUS_E_CONFIG_EXPRESSION: 'bad expression',
  /** a scheduled workflow's `cron:` is not a five-field cron expression */
  TORUS_E_CONFIG_CRON: 'bad cron expression',
  /** a 2.1 config breaks CircleCI's config JSON schema (as patched where CircleCI is laxer, schema.ts) */
  TORUS_E_CONFIG_SCHEMA: 'config does not match the schema',
  /** a feature Torus does not support yet */
  TORUS_E_CONFIG_UNSUPPORTED: 'unsupported feature',
  /** an unexpected failure inside the compiler (a bug: report it) */
  TORUS_E_CONFIG_INTERNAL: 'internal compiler error',
} as const;

export type ConfigErrorCode = keyof typeof CONFIG_ERROR_CODES;

/** A source position, 1-based. */
export interface Position {
  line: number;
  column: number;
}

/** Thrown inside the compiler to abort a stage; compileConfig turns it into `{ok:false}`. */
export class ConfigAbort extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(errors.map((e) => e.message).join('\n'));
    this.name = 'ConfigAbort';
  }
}

/** Builds a ConfigError whose message starts with `file:line:column:` when a position is known. */
export function configError(
  code: ConfigErrorCode,
  message: string,
  file: string,
  pos: Position | undefined,
  hint?: string,
): ConfigError {
  const where = pos ? `${file}:${pos.line}:${pos.column}` : file;
  const err: ConfigError = { code, message: `${where}: ${message}`, file };
  if (pos) {
    err.line = pos.line;
    err.column = pos.column;
  }
  if (hint) err.hint = hint;
  return err;
}
