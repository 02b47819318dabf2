// What every resolver of /graphql-unstable gets: the caller (anonymous or a user), the orbs the
// caller's configs may import, and the orb registry with the accounts it needs.
import { GraphQLError } from 'graphql';
import type { Accounts } from '../../accounts/index.js';
import type { OrbResolver } from '../../config/index.js';
import type { OrbRegistry, Viewer } from '../../orbs/index.js';

/** The orb registry as the GraphQL orb fields use it (absent: the server has no registry). */
export interface OrbsContext {
  /** publishes through it validate the orb as `orbConfig` does, with the caller's orbs */
  registry: OrbRegistry;
  /** organizations for `organization` and the caller's role */
  accounts: Pick<Accounts, 'getOrg' | 'getUser' | 'memberRole'>;
}

/** what every resolver gets: the signed-in user (compile works without one) and the orb source */
export interface GraphQLContext {
  viewer: { id: string } | null;
  orbResolver?: OrbResolver;
  orbs?: OrbsContext;
}

/** For fields that need a user: the CLI recognises "must log in" as "run circleci setup". */
export function requireViewer(ctx: GraphQLContext): { id: string } {
  if (!ctx.viewer)
    throw new GraphQLError('You must log in first.', { extensions: { code: 'UNAUTHENTICATED' } });
  return ctx.viewer;
}

/** The registry's view of the caller: their organizations' private orbs, or public orbs only. */
export function registryViewer(ctx: GraphQLContext): Viewer {
  return ctx.viewer ? { userId: ctx.viewer.id } : 'public';
}
