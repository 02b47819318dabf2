// The GraphQL schema served at /graphql-unstable (the classic `circleci` CLI's API): one SDL text
// and one resolver map, joined by `makeSchema`. Compilation lives here; the orb registry's types,
// queries and mutations in orbs-schema.ts / orbs-resolvers.ts.
import {
  buildSchema,
  GraphQLError,
  GraphQLScalarType,
  isObjectType,
  isScalarType,
  Kind,
  type GraphQLFieldResolver,
  type GraphQLSchema,
} from 'graphql';
import type { PipelineValues } from '../../config/index.js';
import { requireViewer, type GraphQLContext } from './context.js';
import { ORBS_SDL } from './orbs-schema.js';
import { orbResolvers } from './orbs-resolvers.js';
import {
  parsePipelineParametersJson,
  validateConfig,
  validateOrb,
  type ConfigValidation,
} from './validate-config.js';

const COMPILE_SDL = /* GraphQL */ `
  """
  An id. Any string is accepted: \`circleci local execute --org-slug gh/org\` sends the slug where the
  query expects an org id.
  """
  scalar UUID

  """
  A JSON scalar: a string, a number, a boolean or null (the value of a pipeline value).
  """
  scalar JSONScalar

  """
  One pipeline value, e.g. {key: "pipeline.git.branch", val: "main"}.
  """
  input StringKeyVal {
    key: String!
    val: JSONScalar
  }

  type ConfigError {
    message: String!
  }

  """
  The result of compiling a config or validating an orb.
  """
  type ConfigResponse {
    valid: Boolean!
    errors: [ConfigError!]!
    sourceYaml: String!
    """
    The processed config (2.0, as \`circleci config process\` prints it) or the normalized orb; empty when invalid.
    """
    outputYaml: String!
  }

  type Query {
    """
    Compiles a config. \`orgId\`, \`orgSlug\` and \`next\` are accepted for the CLI's sake; private orbs
    are not per-organization yet, so they change nothing.
    """
    buildConfig(
      configYaml: String!
      pipelineValues: [StringKeyVal!]
      pipelineParametersJson: String
      orgId: UUID
      orgSlug: String
      next: Boolean
    ): ConfigResponse!

    """
    Validates an orb: its shape, and its jobs, commands and executors compiled.
    """
    orbConfig(orbYaml: String!, ownerId: UUID): ConfigResponse!
  }
`;

export { requireViewer, type GraphQLContext };

/** Resolvers keyed by type name: field resolvers for object types, implementations for scalars. */
export type ResolverMap = Record<
  string,
  GraphQLScalarType | Record<string, GraphQLFieldResolver<unknown, GraphQLContext>>
>;

const UUIDScalar = new GraphQLScalarType<string, string>({
  name: 'UUID',
  serialize: (v) => String(v),
  parseValue: (v) => {
    if (typeof v !== 'string') throw new GraphQLError(`UUID must be a string, not ${JSON.stringify(v)}`);
    return v;
  },
  parseLiteral: (ast) => {
    if (ast.kind !== Kind.STRING) throw new GraphQLError('UUID must be a string', { nodes: ast });
    return ast.value;
  },
});

type JSONScalarValue = string | number | boolean | null;

const JSONScalar = new GraphQLScalarType<JSONScalarValue, JSONScalarValue>({
  name: 'JSONScalar',
  serialize: (v) => v as JSONScalarValue,
  parseValue: (v) => {
    if (
      v === null ||
      typeof v === 'string' ||
      typeof v === 'boolean' ||
      (typeof v === 'number' && Number.isFinite(v))
    )
      return v;
    throw new GraphQLError(`expected a string, a number, a boolean or null, not ${JSON.stringify(v)}`);
  },
  parseLiteral: (ast) => {
    switch (ast.kind) {
      case Kind.STRING:
        return ast.value;
      case Kind.BOOLEAN:
        return ast.value;
      case Kind.INT:
      case Kind.FLOAT:
        return Number(ast.value);
      case Kind.NULL:
        return null;
      case Kind.ENUM:
      case Kind.LIST:
      case Kind.OBJECT:
      case Kind.VARIABLE:
        throw new GraphQLError('expected a string, a number, a boolean or null', { nodes: ast });
    }
  },
});

interface BuildConfigArgs {
  configYaml: string;
  pipelineValues?: { key: string; val: JSONScalarValue }[] | null;
  pipelineParametersJson?: string | null;
  orgId?: string | null;
  orgSlug?: string | null;
  next?: boolean | null;
}

/**
 * The CLI fabricates ~86 `pipeline.*` values for a local compile (config/pipeline.go) plus one
 * `pipeline.parameters.<k>` per parameter; all are passed through. Parameters themselves come from
 * `pipelineParametersJson`, as CircleCI reads them.
 */
function pipelineValuesFromList(list: BuildConfigArgs['pipelineValues']): PipelineValues {
  const values: PipelineValues = {};
  for (const { key, val } of list ?? []) values[key] = val;
  return values;
}

const compileResolvers: ResolverMap = {
  UUID: UUIDScalar,
  JSONScalar,
  Query: {
    buildConfig: async (_root, args: BuildConfigArgs, ctx): Promise<ConfigValidation> => {
      const parsed = parsePipelineParametersJson(args.pipelineParametersJson);
      if (parsed.error)
        return {
          valid: false,
          errors: [{ message: parsed.error }],
          sourceYaml: args.configYaml,
          outputYaml: '',
        };
      return validateConfig(args.configYaml, {
        pipelineValues: pipelineValuesFromList(args.pipelineValues),
        pipelineParameters: parsed.parameters,
        orbResolver: ctx.orbResolver,
      });
    },
    orbConfig: async (
      _root,
      args: { orbYaml: string; ownerId?: string | null },
      ctx,
    ): Promise<ConfigValidation> => validateOrb(args.orbYaml, { orbResolver: ctx.orbResolver }),
  },
};

/** the whole served schema: compilation, then the orb registry (which extends Query) */
export const SDL = COMPILE_SDL + ORBS_SDL;

/** Both resolver maps; they share only `Query`, whose fields are merged. */
export const resolvers: ResolverMap = {
  ...compileResolvers,
  ...orbResolvers,
  Query: {
    ...(compileResolvers.Query as Record<string, GraphQLFieldResolver<unknown, GraphQLContext>>),
    ...(orbResolvers.Query as Record<string, GraphQLFieldResolver<unknown, GraphQLContext>>),
  },
};

/**
 * Builds the schema from SDL and attaches resolvers and scalar implementations (what
 * graphql-tools' makeExecutableSchema does, in the few lines this schema needs). A resolver for
 * a type or field the SDL lacks is a programming error, so it throws at startup.
 */
export function makeSchema(sdl: string, resolverMap: ResolverMap): GraphQLSchema {
  const schema = buildSchema(sdl);
  for (const [typeName, impl] of Object.entries(resolverMap)) {
    const type = schema.getType(typeName);
    if (impl instanceof GraphQLScalarType) {
      if (!isScalarType(type))
        throw new Error(`scalar resolver for ${typeName}, which is not a scalar in the schema`);
      type.serialize = impl.serialize;
      type.parseValue = impl.parseValue;
      type.parseLiteral = impl.parseLiteral;
      continue;
    }
    if (!isObjectType(type))
      throw new Error(`field resolvers for ${typeName}, which is not an object type in the schema`);
    const fields = type.getFields();
    for (const [fieldName, resolve] of Object.entries(impl)) {
      const field = fields[fieldName];
      if (!field) throw new Error(`resolver for ${typeName}.${fieldName}, which is not in the schema`);
      field.resolve = resolve;
    }
  }
  return schema;
}

let built: GraphQLSchema | undefined;

/** The served schema, built once. */
export function torusSchema(): GraphQLSchema {
  built ??= makeSchema(SDL, resolvers);
  return built;
}
