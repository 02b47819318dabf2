// The GraphQL API of the classic `circleci` CLI (`/graphql-unstable`) and the config/orb
// validation it shares with the REST compile route. See README.md for what is served.
export { runGraphQL, declareUsedVariables, type GraphQLResponse, type GraphQLErrorJson } from './execute.js';
export {
  torusSchema,
  makeSchema,
  requireViewer,
  SDL,
  resolvers,
  type GraphQLContext,
  type ResolverMap,
} from './schema.js';
export { registryViewer, type OrbsContext } from './context.js';
export { ORBS_SDL } from './orbs-schema.js';
export { orbResolvers, CERTIFIED_NAMESPACE } from './orbs-resolvers.js';
export { orbSourceValidator } from './orb-publish.js';
export {
  validateConfig,
  validateOrb,
  checkPipelineParameters,
  isScalar,
  type ConfigValidation,
  type ConfigValidationOptions,
} from './validate-config.js';
