// Resolvers of the orb registry's GraphQL fields (orbs-schema.ts) over the registry service
// (src/orbs). Reads see what the caller may see (private orbs of their organizations); a change
// the registry refuses (a taken name, an existing version, an invalid orb, a missing permission)
// comes back in the payload's `errors { message type }`, which the CLI prints, while a missing
// login is a top-level error ("must log in", which the CLI maps to `circleci setup`).
import { GraphQLError, type GraphQLFieldResolver } from 'graphql';
import {
  nextVersion,
  parsePublishedVersion,
  type Namespace,
  type Orb,
  type OrbListItem,
  type OrbPage,
  type OrbVersion,
  type OrbVersionInfo,
  type Segment,
} from '../../orbs/index.js';
import { isTorusError, TorusError } from '../../ops/index.js';
import { registryViewer, requireViewer, type GraphQLContext, type OrbsContext } from './context.js';
import type { ResolverMap } from './schema.js';

/** CircleCI's own orbs: `circleci orb list` without `--uncertified` shows only these. */
export const CERTIFIED_NAMESPACE = 'circleci';
const CATEGORY_PAGE = 20;
const SEGMENTS: readonly Segment[] = ['patch', 'minor', 'major'];

type Args = Record<string, unknown>;
type ViewArg = 'PUBLIC_ONLY' | 'PRIVATE_ONLY' | null | undefined;

/**
 * The field resolvers of one object type, whose parent value is `S` (what the field above
 * returned). graphql-js types every parent as unknown; the schema guarantees which it is.
 */
function fieldsOf<S>(
  fields: Record<string, (source: S, args: never, ctx: GraphQLContext) => unknown>,
): Record<string, GraphQLFieldResolver<unknown, GraphQLContext>> {
  return fields as unknown as Record<string, GraphQLFieldResolver<unknown, GraphQLContext>>;
}

function orbsOf(ctx: GraphQLContext): OrbsContext {
  if (!ctx.orbs) {
    throw new GraphQLError('This server has no orb registry.', {
      extensions: { code: 'NOT_IMPLEMENTED' },
    });
  }
  return ctx.orbs;
}

function iso(d: Date | string): string {
  return (d instanceof Date ? d : new Date(d)).toISOString();
}

function messageOf(err: TorusError): string {
  return err.hint ? `${err.message} (${err.hint})` : err.message;
}

/** Reads: a registry refusal (a malformed name or cursor) becomes a top-level error with its code. */
async function read<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isTorusError(err)) throw new GraphQLError(messageOf(err), { extensions: { code: err.code } });
    throw err;
  }
}

interface MutationError {
  message: string;
  type: string;
}

/**
 * Changes: the registry's refusals go in-band, in `errors` (the CLI reads `payload.errors` and
 * prints each message); `failed` fills the payload's other fields. Anything else (a missing login,
 * a fault) stays a top-level error.
 */
async function change<T extends object>(
  ctx: GraphQLContext,
  failed: Omit<T, 'errors'>,
  fn: (orbs: OrbsContext, actor: { userId: string }) => Promise<Omit<T, 'errors'>>,
): Promise<Omit<T, 'errors'> & { errors: MutationError[] }> {
  const viewer = requireViewer(ctx);
  const orbs = orbsOf(ctx);
  try {
    return { ...(await fn(orbs, { userId: viewer.id })), errors: [] };
  } catch (err) {
    if (!isTorusError(err)) throw err;
    return { ...failed, errors: [{ message: messageOf(err), type: err.code }] };
  }
}

function connection(page: OrbPage) {
  return {
    edges: page.items.map((node) => ({ cursor: node.cursor, node })),
    totalCount: page.totalCount,
    pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.endCursor },
  };
}

function viewOf(view: ViewArg): 'public' | 'private' {
  return view === 'PRIVATE_ONLY' ? 'private' : 'public';
}

function pageSize(first: unknown): number | undefined {
  if (first === null || first === undefined) return undefined;
  if (typeof first !== 'number' || first < 1) {
    throw new GraphQLError(`first must be a positive number, not ${JSON.stringify(first)}`, {
      extensions: { code: 'TORUS_E_BAD_REQUEST' },
    });
  }
  return first;
}

/** `orbId`, or `namespaceName` + `orbName` (the CLI's publish/promote send names). */
function orbReference(args: Args): string {
  if (typeof args.orbId === 'string' && args.orbId !== '') return args.orbId;
  if (typeof args.namespaceName === 'string' && typeof args.orbName === 'string')
    return `${args.namespaceName}/${args.orbName}`;
  throw new TorusError('TORUS_E_BAD_REQUEST', 'name the orb: orbId, or namespaceName and orbName');
}

/**
 * The CLI sends the version to promote to (the latest version incremented by the segment the user
 * gave, `api.OrbPromoteByName`); the registry promotes by segment, so the target must be one of
 * the next versions. The words major/minor/patch are accepted too.
 */
async function segmentFor(
  orbs: OrbsContext,
  orb: string,
  target: string,
  actor: { userId: string },
): Promise<Segment> {
  if (target === 'major' || target === 'minor' || target === 'patch') return target;
  parsePublishedVersion(target);
  const versions = await orbs.registry.listVersions(orb, actor);
  const latest = versions.find((v) => !v.dev)?.version;
  const highest = latest ? parsePublishedVersion(latest) : undefined;
  const base = highest?.kind === 'semver' ? highest.semver : null;
  const candidates = SEGMENTS.map((segment) => {
    const v = nextVersion(base, segment);
    return { segment, version: `${v.major}.${v.minor}.${v.patch}` };
  });
  const match = candidates.find((c) => c.version === target);
  if (match) return match.segment;
  throw new TorusError(
    'TORUS_E_BAD_REQUEST',
    `cannot promote to ${target}: a dev version is promoted to the next version after the latest ` +
      `(${latest ?? 'none yet'}), one of ${candidates.map((c) => `${c.version} (${c.segment})`).join(', ')}`,
  );
}

export const orbResolvers: ResolverMap = {
  Query: {
    orbs: (_root, args: Args, ctx) =>
      read(async () => {
        const { registry } = orbsOf(ctx);
        const opts = {
          first: pageSize(args.first),
          after: (args.after as string | null | undefined) ?? null,
          view: viewOf(args.view as ViewArg),
        };
        if (args.certifiedOnly === true) {
          // no `circleci` namespace (nothing imported from it yet): no certified orbs
          if (!(await registry.getNamespace(CERTIFIED_NAMESPACE)))
            return connection({ items: [], totalCount: 0, hasNextPage: false, endCursor: null });
          return connection(
            await registry.listOrbs({ ...opts, namespace: CERTIFIED_NAMESPACE }, registryViewer(ctx)),
          );
        }
        return connection(await registry.listOrbs(opts, registryViewer(ctx)));
      }),

    registryNamespace: (_root, args: { name?: string | null }, ctx) =>
      read(async () => {
        if (!args.name) return null;
        return orbsOf(ctx).registry.getNamespace(args.name);
      }),

    orb: (_root, args: { name?: string | null; id?: string | null }, ctx) =>
      read(async () => {
        const ref = args.id || args.name;
        if (!ref) return null;
        return orbsOf(ctx).registry.getOrb(ref, registryViewer(ctx));
      }),

    orbVersion: (_root, args: { orbVersionRef: string }, ctx) =>
      read(() => orbsOf(ctx).registry.getVersion(args.orbVersionRef, registryViewer(ctx))),

    orbCategories: (_root, args: Args, ctx) =>
      read(async () => {
        const all = await orbsOf(ctx).registry.listCategories();
        const first = Math.min(pageSize(args.first) ?? CATEGORY_PAGE, 100);
        let start = 0;
        if (typeof args.after === 'string' && args.after !== '') {
          const at = all.findIndex((c) => c.id === args.after);
          if (at < 0) {
            throw new TorusError(
              'TORUS_E_BAD_REQUEST',
              `${JSON.stringify(args.after)} is not a cursor of this listing`,
            );
          }
          start = at + 1;
        }
        const page = all.slice(start, start + first);
        return {
          edges: page.map((node) => ({ cursor: node.id, node })),
          totalCount: all.length,
          pageInfo: { hasNextPage: start + first < all.length, endCursor: page.at(-1)?.id ?? null },
        };
      }),

    orbCategoryByName: (_root, args: { name: string }, ctx) =>
      read(async () => {
        const c = await orbsOf(ctx).registry.getCategory(args.name);
        // by name only: an id is not a name
        return c && c.name.toLowerCase() === args.name.toLowerCase() ? c : null;
      }),

    organization: async (
      _root,
      args: { id?: string | null; name?: string | null; vcsType?: string | null },
      ctx,
    ) => {
      const viewer = requireViewer(ctx);
      const { accounts } = orbsOf(ctx);
      const ref = args.id || args.name;
      if (!ref) {
        throw new GraphQLError('name the organization: id, or name and vcsType', {
          extensions: { code: 'TORUS_E_BAD_REQUEST' },
        });
      }
      const org = await accounts.getOrg(ref);
      const user = await accounts.getUser(viewer.id);
      const visible =
        org !== null &&
        user !== null &&
        (user.role === 'admin' || (await accounts.memberRole(org.id, viewer.id)) !== null);
      if (!org || !visible) {
        throw new GraphQLError(
          `organization ${JSON.stringify(ref)} not found, or you are not a member of it`,
          { extensions: { code: 'TORUS_E_NOT_FOUND' } },
        );
      }
      return { id: org.id, name: org.name, vcsType: org.vcsType.toUpperCase() };
    },
  },

  Mutation: {
    publishOrb: (_root, args: Args, ctx) =>
      change<{ orb: OrbVersion | null }>(ctx, { orb: null }, async ({ registry }, actor) => ({
        orb: await registry.publishVersion(
          orbReference(args),
          args.version as string,
          args.orbYaml as string,
          actor,
        ),
      })),

    promoteOrb: (_root, args: Args, ctx) =>
      change<{ orb: OrbVersion | null }>(ctx, { orb: null }, async (orbs, actor) => {
        const orb = orbReference(args);
        const segment = await segmentFor(orbs, orb, args.semanticVersion as string, actor);
        return { orb: await orbs.registry.promote(orb, args.devVersion as string, segment, actor) };
      }),

    createOrb: (
      _root,
      args: { name: string; registryNamespaceId: string; isPrivate?: boolean | null },
      ctx,
    ) =>
      change<{ orb: Orb | null }>(ctx, { orb: null }, async ({ registry }, actor) => ({
        orb: await registry.createOrb(
          args.registryNamespaceId,
          args.name,
          { private: args.isPrivate === true },
          actor,
        ),
      })),

    setOrbListStatus: (_root, args: { orbId: string; list: boolean }, ctx) =>
      change<{ listed: boolean | null }>(ctx, { listed: null }, async ({ registry }, actor) => ({
        listed: (await registry.setOrbListStatus(args.orbId, args.list, actor)).listed,
      })),

    addCategorizationToOrb: (_root, args: { orbId: string; categoryId: string }, ctx) =>
      change<{ orbId: string | null; categoryId: string | null }>(
        ctx,
        { orbId: null, categoryId: null },
        async ({ registry }, actor) => {
          const orb = await registry.addCategorization(args.orbId, args.categoryId, actor);
          const category = (await registry.getCategory(args.categoryId))!;
          return { orbId: orb.id, categoryId: category.id };
        },
      ),

    removeCategorizationFromOrb: (_root, args: { orbId: string; categoryId: string }, ctx) =>
      change<{ orbId: string | null; categoryId: string | null }>(
        ctx,
        { orbId: null, categoryId: null },
        async ({ registry }, actor) => {
          const orb = await registry.removeCategorization(args.orbId, args.categoryId, actor);
          const category = (await registry.getCategory(args.categoryId))!;
          return { orbId: orb.id, categoryId: category.id };
        },
      ),

    createNamespace: (_root, args: { name: string; organizationId: string }, ctx) =>
      change<{ namespace: Namespace | null }>(ctx, { namespace: null }, async ({ registry }, actor) => ({
        namespace: await registry.createNamespace(args.organizationId, args.name, actor),
      })),

    renameNamespace: (_root, args: { namespaceId: string; newName: string }, ctx) =>
      change<{ namespace: Namespace | null }>(ctx, { namespace: null }, async ({ registry }, actor) => ({
        namespace: await registry.renameNamespace(args.namespaceId, args.newName, actor),
      })),

    deleteNamespaceAlias: (_root, args: { name: string }, ctx) =>
      change<{ deleted: boolean }>(ctx, { deleted: false }, async ({ registry }, actor) => {
        await registry.deleteNamespaceAlias(args.name, actor);
        return { deleted: true };
      }),

    deleteNamespaceAndRelatedOrbs: (_root, args: { namespaceId: string }, ctx) =>
      change<{ deleted: boolean }>(ctx, { deleted: false }, async ({ registry }, actor) => {
        await registry.deleteNamespaceAndRelatedOrbs(args.namespaceId, actor);
        return { deleted: true };
      }),

    importNamespace: (_root, args: { name: string }, ctx) =>
      change<{ namespace: Namespace | null }>(ctx, { namespace: null }, async ({ registry }, actor) => ({
        namespace: await registry.importNamespace(args.name, actor),
      })),

    importOrb: (_root, args: { name: string; registryNamespaceId: string }, ctx) =>
      change<{ orb: Orb | null }>(ctx, { orb: null }, async ({ registry }, actor) => ({
        orb: await registry.importOrb(args.registryNamespaceId, args.name, actor),
      })),

    importOrbVersion: (_root, args: { orbId: string; orbYaml: string; version: string }, ctx) =>
      change<{ orb: OrbVersion | null }>(ctx, { orb: null }, async ({ registry }, actor) => ({
        orb: (await registry.importVersion(args.orbId, args.version, args.orbYaml, actor)).version,
      })),
  },

  RegistryNamespace: fieldsOf<Namespace>({
    createdAt: (ns: Namespace) => iso(ns.createdAt),
    isImported: (ns: Namespace) => ns.imported,
    orbs: (ns: Namespace, args: Args, ctx) =>
      read(async () =>
        connection(
          await orbsOf(ctx).registry.listOrbs(
            {
              namespace: ns.id,
              first: pageSize(args.first),
              after: (args.after as string | null | undefined) ?? null,
              view: viewOf(args.view as ViewArg),
            },
            registryViewer(ctx),
          ),
        ),
      ),
  }),

  Orb: fieldsOf<Orb | OrbListItem>({
    name: (orb: Orb) => orb.fullName,
    namespace: (orb: Orb, _args: Args, ctx) =>
      read(async () => {
        const ns = await orbsOf(ctx).registry.getNamespace(orb.namespaceId);
        if (!ns) throw new TorusError('TORUS_E_NOT_FOUND', `namespace of ${orb.fullName} not found`);
        return ns;
      }),
    isPrivate: (orb: Orb) => orb.private,
    isImported: (orb: Orb) => orb.imported,
    createdAt: (orb: Orb) => iso(orb.createdAt),
    // Torus keeps no orb usage counts; null says "unknown" rather than a made-up zero
    statistics: () => ({
      last30DaysBuildCount: null,
      last30DaysProjectCount: null,
      last30DaysOrganizationCount: null,
    }),
    versions: (orb: Orb | OrbListItem, args: { count?: number | null }, ctx) =>
      read(async () => {
        if (typeof args.count === 'number' && args.count < 1) return [];
        const versions = await orbsOf(ctx).registry.listVersions(orb.id, registryViewer(ctx));
        return typeof args.count === 'number' ? versions.slice(0, args.count) : versions;
      }),
  }),

  OrbVersion: fieldsOf<OrbVersionInfo | OrbVersion>({
    createdAt: (v: OrbVersionInfo) => iso(v.createdAt),
    orb: (v: OrbVersionInfo, _args: Args, ctx) =>
      read(async () => {
        const orb = await orbsOf(ctx).registry.getOrb(v.orbId, registryViewer(ctx));
        if (!orb) throw new TorusError('TORUS_E_NOT_FOUND', `orb ${v.orb} not found`);
        return orb;
      }),
    // listings carry no source: fetched only when asked for (`orb list --details`, ListOrbs)
    source: (v: OrbVersionInfo | OrbVersion, _args: Args, ctx) =>
      read(async () => {
        if ('source' in v) return v.source;
        const full = await orbsOf(ctx).registry.getVersion(`${v.orb}@${v.version}`, registryViewer(ctx));
        if (!full) throw new TorusError('TORUS_E_NOT_FOUND', `${v.orb}@${v.version} not found`);
        return full.source;
      }),
  }),
};
