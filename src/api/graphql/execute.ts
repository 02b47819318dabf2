// Running one GraphQL request the way the classic `circleci` CLI needs it: parse, declare the
// variables its queries use without declaring, validate without NoUnusedVariables, execute, and
// answer `{data, errors}` (always HTTP 200: the CLI treats any other status as a transport failure).
import {
  execute,
  GraphQLError,
  Kind,
  NoUnusedVariablesRule,
  parse,
  parseType,
  specifiedRules,
  TypeInfo,
  validate,
  ValidationContext,
  type DefinitionNode,
  type DocumentNode,
  type GraphQLSchema,
  type VariableDefinitionNode,
} from 'graphql';
import type { GraphQLContext } from './schema.js';

export interface GraphQLErrorJson {
  message: string;
  locations?: { line: number; column: number }[];
  path?: (string | number)[];
  extensions: Record<string, unknown>;
}

export interface GraphQLResponse {
  data?: Record<string, unknown> | null;
  errors?: GraphQLErrorJson[];
}

/**
 * The CLI's `ValidateConfig` declares `$orgSlug` (and, without parameters, `$pipelineParametersJson`)
 * without using them: the spec's NoUnusedVariables rule would refuse every `circleci config validate`.
 */
const RULES = specifiedRules.filter((rule) => rule !== NoUnusedVariablesRule);

function errorJson(err: GraphQLError): GraphQLErrorJson {
  const out: GraphQLErrorJson = { message: err.message, extensions: { ...err.extensions } };
  if (err.locations) out.locations = err.locations.map(({ line, column }) => ({ line, column }));
  if (err.path) out.path = [...err.path];
  return out;
}

function failure(message: string, code: string): GraphQLResponse {
  return { data: null, errors: [{ message, extensions: { code } }] };
}

/**
 * Declares, in each operation, every variable that the operation (with its fragments) uses but does
 * not declare, typed as the position it is used in. With `--org-id` the CLI's `ValidateConfig` uses
 * `$orgId` without declaring it and sends its value in `variables` (circleci-cli v0,
 * config/v1_api_client.go). Works on the parsed document; a variable used nowhere needs no
 * declaration (graphql-js ignores extra entries in `variables`).
 */
export function declareUsedVariables(schema: GraphQLSchema, document: DocumentNode): DocumentNode {
  const context = new ValidationContext(schema, document, new TypeInfo(schema), () => {
    // usage collection only; validation errors are reported by validate() afterwards
  });
  let changed = false;
  const definitions = document.definitions.map((definition): DefinitionNode => {
    if (definition.kind !== Kind.OPERATION_DEFINITION) return definition;
    const declared = new Set((definition.variableDefinitions ?? []).map((d) => d.variable.name.value));
    const added: VariableDefinitionNode[] = [];
    for (const usage of context.getRecursiveVariableUsages(definition)) {
      const name = usage.node.name.value;
      // an unknown argument's type is unknown: leave it to validation to report
      if (declared.has(name) || !usage.type) continue;
      declared.add(name);
      added.push({
        kind: Kind.VARIABLE_DEFINITION,
        variable: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: name } },
        type: parseType(String(usage.type)),
      });
    }
    if (added.length === 0) return definition;
    changed = true;
    return { ...definition, variableDefinitions: [...(definition.variableDefinitions ?? []), ...added] };
  });
  return changed ? { ...document, definitions } : document;
}

/** Runs a request body that is already JSON-decoded. Never throws for a client's mistake. */
export async function runGraphQL(
  schema: GraphQLSchema,
  body: unknown,
  contextValue: GraphQLContext,
): Promise<GraphQLResponse> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return failure(
      'The request body must be a JSON object {"query": "...", "variables": {...}}.',
      'BAD_REQUEST',
    );
  }
  const { query, variables, operationName } = body as Record<string, unknown>;
  if (typeof query !== 'string' || query.trim() === '')
    return failure('The request has no "query" text.', 'BAD_REQUEST');
  if (
    variables !== undefined &&
    variables !== null &&
    (typeof variables !== 'object' || Array.isArray(variables))
  ) {
    return failure('"variables" must be a JSON object.', 'BAD_REQUEST');
  }
  if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') {
    return failure('"operationName" must be a string.', 'BAD_REQUEST');
  }
  let document: DocumentNode;
  try {
    document = parse(query);
  } catch (err) {
    if (err instanceof GraphQLError)
      return { data: null, errors: [{ ...errorJson(err), extensions: { code: 'GRAPHQL_PARSE_FAILED' } }] };
    throw err;
  }
  document = declareUsedVariables(schema, document);
  const validationErrors = validate(schema, document, RULES);
  if (validationErrors.length > 0) {
    return {
      data: null,
      errors: validationErrors.map((e) => ({
        ...errorJson(e),
        extensions: { code: 'GRAPHQL_VALIDATION_FAILED', ...e.extensions },
      })),
    };
  }
  const result = await execute({
    schema,
    document,
    variableValues: (variables ?? undefined) as Record<string, unknown> | undefined,
    operationName: operationName ?? undefined,
    contextValue,
  });
  const response: GraphQLResponse = { data: (result.data ?? null) as Record<string, unknown> | null };
  if (result.errors && result.errors.length > 0) response.errors = result.errors.map(errorJson);
  return response;
}
