// The orb registry service: namespaces (owned by an organization, or imported), orbs (public or
// private, listed or unlisted), versions (immutable semver; `dev:<label>` overwritable, expiring 90
// days after its last publish), promotion, categories, reads with private-orb visibility, and the
// import primitives the upstream importer builds on. Every change runs in one transaction with its
// audit event, and checks who may make it.
import { parse } from 'yaml';
import { isUuid } from '../accounts/index.js';
import { recordAudit } from '../audit/index.js';
import { CONFIG_YAML_OPTIONS } from '../config/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import type { Queryable } from '../storage/index.js';
import { categoriesOf, findCategory, ORB_CATEGORIES, type OrbCategory } from './categories.js';
import { noteRegistryChanged } from './changes.js';
import {
  checkName,
  DEV_VERSION_TTL_MS,
  formatSemver,
  isSegment,
  nextVersion,
  parseOrbName,
  parseOrbVersionRef,
  parsePublishedVersion,
  parseSemver,
  parseVersionSelector,
  type Segment,
  type Semver,
  type VersionSelector,
} from './names.js';

/** Who makes a change: a user (permissions checked, named in the audit log), or the system. */
export type Actor = { userId: string } | 'system';

/**
 * Who reads: anonymous ('public'), a user (private orbs of the organizations they are a member
 * of; admins see all), an organization (its pipelines: its private orbs), or the system (all).
 */
export type Viewer = 'public' | 'system' | { userId: string } | { orgId: string };

/** Which private orbs a reader sees: all, or those whose namespace one of these organizations owns. */
export type VisibilityScope = 'all' | readonly string[];

export interface Namespace {
  id: string;
  name: string;
  /** the owning organization; null for a namespace imported from an upstream registry */
  orgId: string | null;
  imported: boolean;
  /** former names that still resolve (renameNamespace), until deleteNamespaceAlias */
  aliases: string[];
  createdAt: Date;
  createdBy: string | null;
}

export interface Orb {
  id: string;
  namespaceId: string;
  /** the namespace's current name */
  namespace: string;
  name: string;
  /** `namespace/name` */
  fullName: string;
  /** the namespace's organization (null: imported namespace) */
  orgId: string | null;
  private: boolean;
  listed: boolean;
  imported: boolean;
  categories: OrbCategory[];
  createdAt: Date;
  createdBy: string | null;
}

/** A version without its source (listings). */
export interface OrbVersionInfo {
  id: string;
  orbId: string;
  /** `namespace/name` of the orb */
  orb: string;
  /** `X.Y.Z` or `dev:<label>` */
  version: string;
  dev: boolean;
  /** first publish */
  createdAt: Date;
  /** last publish (later than createdAt only for an overwritten dev version) */
  publishedAt: Date;
  publishedBy: string | null;
  /** dev versions: when they stop resolving; null for semver */
  expiresAt: Date | null;
  imported: boolean;
}

export interface OrbVersion extends OrbVersionInfo {
  /** the packed orb YAML */
  source: string;
}

export interface OrbListItem extends Orb {
  /** opaque: pass as `after` to get the orbs after this one */
  cursor: string;
  /** the highest semver version, null when none is published */
  latestVersion: string | null;
}

export interface OrbPage {
  items: OrbListItem[];
  /** all orbs matching the filters (not only this page) */
  totalCount: number;
  hasNextPage: boolean;
  endCursor: string | null;
}

export interface ListOrbsOptions {
  /** only this namespace (a name, an alias or an id) */
  namespace?: string;
  /** 'public': public orbs only; 'private': the private orbs the viewer sees; default both */
  view?: 'all' | 'public' | 'private';
  /** unlisted orbs are left out unless asked for */
  includeUnlisted?: boolean;
  /** page size: default 20, at most 100 */
  first?: number;
  /** a cursor from an earlier page */
  after?: string | null;
}

export interface ImportItem {
  namespace: string;
  orb: string;
  /** `X.Y.Z` (dev versions are not imported) */
  version: string;
  source: string;
  /** when the upstream registry published it; default now */
  createdAt?: Date;
}

export interface ImportSummary {
  namespacesCreated: string[];
  orbsCreated: string[];
  /** `ns/orb@X.Y.Z` imported now */
  versionsCreated: string[];
  /** `ns/orb@X.Y.Z` already here with the same source */
  versionsUnchanged: string[];
}

export interface OrbRegistryOptions {
  /**
   * More checks of a source before publishVersion stores it (the GraphQL layer passes the
   * compiler's orb validation, `orbConfig`): messages, none when valid. The registry itself only
   * checks that the source is a YAML map of at most MAX_ORB_SOURCE_BYTES.
   */
  validateSource?: (source: string, ref: string) => Promise<string[]> | string[];
}

export interface OrbRegistry {
  // ---- namespaces ----
  /** `org`: id, name or slug. Admins or admins of the organization. */
  createNamespace(org: string, name: string, actor: Actor): Promise<Namespace>;
  /** Admins. The old name stays as an alias that still resolves. */
  renameNamespace(namespace: string, newName: string, actor: Actor): Promise<Namespace>;
  /** Admins. Returns the namespace the alias named. */
  deleteNamespaceAlias(alias: string, actor: Actor): Promise<Namespace>;
  /** Admins. Deletes the namespace, its aliases, orbs and versions. */
  deleteNamespaceAndRelatedOrbs(
    namespace: string,
    actor: Actor,
  ): Promise<{ namespace: Namespace; orbs: number; versions: number }>;
  /** by id, name or alias */
  getNamespace(ref: string): Promise<Namespace | null>;
  listNamespaces(): Promise<Namespace[]>;

  // ---- orbs ----
  /** Admins or members of the namespace's organization. */
  createOrb(namespace: string, name: string, opts: { private?: boolean }, actor: Actor): Promise<Orb>;
  /** Admins or members of the namespace's organization. */
  setOrbListStatus(orb: string, listed: boolean, actor: Actor): Promise<Orb>;
  /** `ns/name` (namespace by name or alias) or id; null when absent or not visible to the viewer */
  getOrb(ref: string, viewer: Viewer): Promise<Orb | null>;
  listOrbs(opts: ListOrbsOptions, viewer: Viewer): Promise<OrbPage>;

  // ---- versions ----
  /**
   * `X.Y.Z` (immutable: TORUS_E_CONFLICT when it exists) or `dev:<label>` (overwritten; expires
   * 90 days after this publish). Admins or members of the namespace's organization.
   */
  publishVersion(orb: string, version: string, source: string, actor: Actor): Promise<OrbVersion>;
  /** Publishes a dev version's source as the next `segment` after the highest semver (none: 0.0.0). */
  promote(orb: string, devVersion: string, segment: Segment | string, actor: Actor): Promise<OrbVersion>;
  /** `ns/orb@1`, `@1.2`, `@1.2.3`, `@volatile`, `@dev:label` resolved as CircleCI resolves them */
  getVersion(ref: string, viewer: Viewer): Promise<OrbVersion | null>;
  /** semver versions, highest first, then unexpired dev versions, newest first */
  listVersions(orb: string, viewer: Viewer, opts?: { includeDev?: boolean }): Promise<OrbVersionInfo[]>;
  /** Deletes expired dev versions (they stopped resolving already); returns how many. */
  sweepExpiredDevVersions(): Promise<number>;

  // ---- categories ----
  listCategories(): Promise<OrbCategory[]>;
  /** by id or name */
  getCategory(ref: string): Promise<OrbCategory | null>;
  addCategorization(orb: string, category: string, actor: Actor): Promise<Orb>;
  removeCategorization(orb: string, category: string, actor: Actor): Promise<Orb>;

  // ---- import (admins) ----
  /** Creates an imported namespace (no organization), or returns the existing one. */
  importNamespace(name: string, actor: Actor): Promise<Namespace>;
  /** Creates an imported orb, or returns the existing one. */
  importOrb(namespace: string, name: string, actor: Actor): Promise<Orb>;
  /**
   * Stores an upstream version. Idempotent: the same source again is fine (`created: false`); a
   * different source for an existing version is TORUS_E_CONFLICT.
   */
  importVersion(
    orb: string,
    version: string,
    source: string,
    actor: Actor,
    opts?: { createdAt?: Date },
  ): Promise<{ version: OrbVersion; created: boolean }>;
  /** Namespaces, orbs and versions in one transaction: all are imported, or none. */
  importOrbVersions(items: ImportItem[], actor: Actor): Promise<ImportSummary>;

  /** The private orbs a viewer sees (resolver.ts scopes its caches by it). */
  visibilityOf(viewer: Viewer): Promise<VisibilityScope>;
}

/** Orb sources are refused above this (the config compiler's own input limit). */
export const MAX_ORB_SOURCE_BYTES = 4 * 1024 * 1024;
const DEFAULT_PAGE = 20;
const MAX_PAGE = 100;
/** Serializes namespace-name changes: names must be unique across namespaces and aliases. */
const NAMESPACE_NAMES_LOCK_KEY = 7_340_011;

// ---------------------------------------------------------------------------------------------
// rows

interface NamespaceRow {
  id: string;
  name: string;
  org_id: string | null;
  imported: boolean;
  aliases: string[];
  created_at: Date;
  created_by: string | null;
}

const NAMESPACE_SELECT = `SELECT n.id, n.name, n.org_id, n.imported, n.created_at, n.created_by,
  COALESCE((SELECT jsonb_agg(a.name ORDER BY a.name) FROM orb_namespace_aliases a WHERE a.namespace_id = n.id), '[]'::jsonb) AS aliases
  FROM orb_namespaces n`;

function toNamespace(r: NamespaceRow): Namespace {
  return {
    id: r.id,
    name: r.name,
    orgId: r.org_id,
    imported: r.imported,
    aliases: r.aliases,
    createdAt: r.created_at,
    createdBy: r.created_by,
  };
}

interface OrbRow {
  id: string;
  namespace_id: string;
  namespace: string;
  name: string;
  org_id: string | null;
  is_private: boolean;
  listed: boolean;
  imported: boolean;
  category_ids: string[];
  created_at: Date;
  created_by: string | null;
}

const ORB_COLUMNS = `o.id, o.namespace_id, n.name AS namespace, o.name, n.org_id, o.is_private, o.listed, o.imported,
  o.created_at, o.created_by,
  COALESCE((SELECT jsonb_agg(oc.category_id) FROM orb_categorizations oc WHERE oc.orb_id = o.id), '[]'::jsonb)
    AS category_ids`;
const ORB_FROM = 'FROM orbs o JOIN orb_namespaces n ON n.id = o.namespace_id';
/** a namespace given by name or by a former name ($n) */
const namespaceNamed = (param: string) =>
  `(n.name = ${param} OR n.id = (SELECT namespace_id FROM orb_namespace_aliases WHERE name = ${param}))`;

function toOrb(r: OrbRow): Orb {
  return {
    id: r.id,
    namespaceId: r.namespace_id,
    namespace: r.namespace,
    name: r.name,
    fullName: `${r.namespace}/${r.name}`,
    orgId: r.org_id,
    private: r.is_private,
    listed: r.listed,
    imported: r.imported,
    categories: categoriesOf(r.category_ids),
    createdAt: r.created_at,
    createdBy: r.created_by,
  };
}

interface VersionRow {
  id: string;
  orb_id: string;
  orb: string;
  version: string;
  major: number | null;
  created_at: Date;
  published_at: Date;
  published_by: string | null;
  expires_at: Date | null;
  imported: boolean;
  source?: string;
}

const VERSION_COLUMNS = `v.id, v.orb_id, n.name || '/' || o.name AS orb, v.version, v.major, v.created_at,
  v.published_at, v.published_by, v.expires_at, v.imported`;
const VERSION_FROM = `FROM orb_versions v JOIN orbs o ON o.id = v.orb_id JOIN orb_namespaces n ON n.id = o.namespace_id`;
const SEMVER_ORDER = 'v.major DESC, v.minor DESC, v.patch DESC';
/** semver versions highest first, then dev versions (major is null) */
const LIST_ORDER =
  'v.major DESC NULLS LAST, v.minor DESC NULLS LAST, v.patch DESC NULLS LAST, v.published_at DESC';

function toVersionInfo(r: VersionRow): OrbVersionInfo {
  return {
    id: r.id,
    orbId: r.orb_id,
    orb: r.orb,
    version: r.version,
    dev: r.major === null,
    createdAt: r.created_at,
    publishedAt: r.published_at,
    publishedBy: r.published_by,
    expiresAt: r.expires_at,
    imported: r.imported,
  };
}

function toVersion(r: VersionRow): OrbVersion {
  return { ...toVersionInfo(r), source: r.source! };
}

// ---------------------------------------------------------------------------------------------
// helpers shared with resolver.ts

/** Whether a reader with `scope` sees an orb. */
export function canSee(scope: VisibilityScope, orb: { private: boolean; orgId: string | null }): boolean {
  if (!orb.private || scope === 'all') return true;
  return orb.orgId !== null && scope.includes(orb.orgId);
}

export async function visibilityOf(q: Queryable, viewer: Viewer): Promise<VisibilityScope> {
  if (viewer === 'system') return 'all';
  if (viewer === 'public') return [];
  if ('orgId' in viewer) return isUuid(viewer.orgId) ? [viewer.orgId] : [];
  if (!isUuid(viewer.userId)) return [];
  const { rows } = await q.query<{ role: string; suspended: boolean; orgs: string[] }>(
    `SELECT u.role, u.suspended_at IS NOT NULL AS suspended,
       COALESCE((SELECT jsonb_agg(m.org_id ORDER BY m.org_id) FROM org_members m WHERE m.user_id = u.id), '[]'::jsonb) AS orgs
     FROM users u WHERE u.id = $1`,
    [viewer.userId],
  );
  const u = rows[0];
  if (!u || u.suspended) return [];
  return u.role === 'admin' ? 'all' : u.orgs;
}

export interface ResolvedVersion {
  version: string;
  source: string;
  /** dev versions: when the resolution stops holding */
  expiresAt: Date | null;
}

/**
 * Resolves `ns/orb@<version>` for a reader as CircleCI does: `X.Y.Z` exactly; `X` and `X.Y` the
 * highest published version with that prefix; `volatile` the highest published version; `dev:label`
 * that dev version while it has not expired. Null when the orb is absent, not visible, or has no
 * such version. Unlisted orbs resolve (unlisting only hides an orb from listings).
 */
export async function resolveOrbVersion(
  q: Queryable,
  ref: string,
  scope: VisibilityScope,
  now: Date,
  withDetails = false,
): Promise<(ResolvedVersion & { row?: VersionRow }) | null> {
  const parsed = parseOrbVersionRef(ref);
  if (!parsed) return null;
  const selector = parseVersionSelector(parsed.version);
  if (!selector) return null;
  const found = await q.query<{ id: string; is_private: boolean; org_id: string | null }>(
    `SELECT o.id, o.is_private, n.org_id ${ORB_FROM} WHERE o.name = $2 AND ${namespaceNamed('$1')}`,
    [parsed.namespace, parsed.orb],
  );
  const orb = found.rows[0];
  if (!orb || !canSee(scope, { private: orb.is_private, orgId: orb.org_id })) return null;
  const { where, params } = selectorSql(selector, now);
  const { rows } = await q.query<VersionRow & { source: string }>(
    `SELECT ${VERSION_COLUMNS}, v.source ${VERSION_FROM}
     WHERE v.orb_id = $1 AND ${where} ORDER BY ${SEMVER_ORDER} LIMIT 1`,
    [orb.id, ...params],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    version: row.version,
    source: row.source,
    expiresAt: row.expires_at,
    ...(withDetails ? { row } : {}),
  };
}

/** The WHERE condition (parameters from $2) picking the versions a selector may resolve to. */
function selectorSql(selector: VersionSelector, now: Date): { where: string; params: unknown[] } {
  switch (selector.kind) {
    case 'exact':
      return { where: 'v.version = $2', params: [formatSemver(selector.semver)] };
    case 'major':
      return { where: 'v.major = $2', params: [selector.major] };
    case 'minor':
      return { where: 'v.major = $2 AND v.minor = $3', params: [selector.major, selector.minor] };
    case 'volatile':
      return { where: 'v.major IS NOT NULL', params: [] };
    case 'dev':
      return { where: 'v.version = $2 AND v.expires_at > $3', params: [selector.version, now] };
    default: {
      const never: never = selector;
      throw new Error(`internal: unknown version selector ${JSON.stringify(never)}`);
    }
  }
}

function checkSource(source: string, ref: string): void {
  if (typeof source !== 'string' || source.trim() === '') {
    throw new TorusError('TORUS_E_BAD_REQUEST', `the orb source of ${ref} is empty`);
  }
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > MAX_ORB_SOURCE_BYTES) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the orb source of ${ref} is ${bytes} bytes; orbs are limited to ${MAX_ORB_SOURCE_BYTES} bytes`,
    );
  }
  let doc: unknown;
  try {
    doc = parse(source, { ...CONFIG_YAML_OPTIONS, uniqueKeys: false });
  } catch (err) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the orb source of ${ref} is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the orb source of ${ref} must be a YAML map (version, description, commands, jobs, executors…)`,
    );
  }
}

function encodeCursor(namespace: string, name: string): string {
  return Buffer.from(JSON.stringify([namespace, name]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string')
      return [v[0], v[1]];
  } catch {
    // not base64 JSON: reported below like any other malformed cursor
  }
  throw new TorusError('TORUS_E_BAD_REQUEST', `${JSON.stringify(cursor)} is not a cursor of this listing`);
}

function actorId(actor: Actor): string | null {
  return actor === 'system' ? null : actor.userId;
}

// ---------------------------------------------------------------------------------------------
// the service

export function createOrbRegistry(res: Resources, opts: OrbRegistryOptions = {}): OrbRegistry {
  const { db, clock, ids } = res;

  /** Runs a change in one transaction; caches in this process forget what they knew after it commits. */
  async function change<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const out = await db.transaction(fn);
    noteRegistryChanged(db);
    return out;
  }

  async function audit(
    tx: Queryable,
    actor: Actor,
    action: string,
    target: string,
    details: Record<string, unknown> = {},
  ): Promise<void> {
    await recordAudit(tx, {
      id: ids.uuid(),
      actorId: actorId(actor),
      action,
      target,
      details,
      occurredAt: clock.now(),
    });
  }

  type Permission = 'admin' | 'org-admin' | 'org-member';

  /** Throws TORUS_E_FORBIDDEN unless the actor may do `what` (`orgId`: the organization concerned). */
  async function authorize(
    tx: Queryable,
    actor: Actor,
    permission: Permission,
    orgId: string | null,
    what: string,
  ): Promise<void> {
    if (actor === 'system') return;
    const { rows } = await tx.query<{ role: string; suspended: boolean; org_role: string | null }>(
      `SELECT u.role, u.suspended_at IS NOT NULL AS suspended,
         (SELECT m.role FROM org_members m WHERE m.user_id = u.id AND m.org_id = $2) AS org_role
       FROM users u WHERE u.id = $1`,
      [isUuid(actor.userId) ? actor.userId : '00000000-0000-0000-0000-000000000000', orgId],
    );
    const user = rows[0];
    if (!user || user.suspended) {
      throw new TorusError('TORUS_E_FORBIDDEN', `cannot ${what}: the user is unknown or suspended`);
    }
    if (user.role === 'admin') return;
    switch (permission) {
      case 'admin':
        throw new TorusError('TORUS_E_FORBIDDEN', `only an admin can ${what}`);
      case 'org-admin':
        if (orgId !== null && user.org_role === 'admin') return;
        throw new TorusError(
          'TORUS_E_FORBIDDEN',
          orgId === null
            ? `only an admin can ${what} (the namespace was imported)`
            : `only an admin of the organization can ${what}`,
        );
      case 'org-member':
        if (orgId !== null && user.org_role !== null) return;
        throw new TorusError(
          'TORUS_E_FORBIDDEN',
          orgId === null
            ? `only an admin can ${what} (the namespace was imported)`
            : `only a member of the namespace's organization can ${what}`,
        );
      default: {
        const never: never = permission;
        throw new Error(`internal: unknown permission ${String(never)}`);
      }
    }
  }

  async function lockNamespaceNames(tx: Queryable): Promise<void> {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [NAMESPACE_NAMES_LOCK_KEY]);
  }

  async function findNamespace(q: Queryable, ref: string): Promise<NamespaceRow | null> {
    const { rows } = await q.query<NamespaceRow>(
      isUuid(ref)
        ? `${NAMESPACE_SELECT} WHERE n.id = $1`
        : `${NAMESPACE_SELECT} WHERE ${namespaceNamed('$1')}`,
      [ref],
    );
    return rows[0] ?? null;
  }

  async function requireNamespace(q: Queryable, ref: string): Promise<NamespaceRow> {
    const ns = await findNamespace(q, ref);
    if (!ns) {
      throw new TorusError(
        'TORUS_E_NOT_FOUND',
        `namespace ${JSON.stringify(ref)} not found: create it with \`torus namespace create\`, or import it with \`torus admin import-orb ${ref}\``,
      );
    }
    return ns;
  }

  /** Throws TORUS_E_CONFLICT when a namespace or an alias is called `name` (other than `except`'s). */
  async function checkNameFree(tx: Queryable, name: string, except?: string): Promise<void> {
    const { rows } = await tx.query<{ current: string; alias: boolean; id: string }>(
      `SELECT n.name AS current, false AS alias, n.id FROM orb_namespaces n WHERE n.name = $1
       UNION ALL
       SELECT n.name, true, n.id FROM orb_namespace_aliases a JOIN orb_namespaces n ON n.id = a.namespace_id WHERE a.name = $1`,
      [name],
    );
    const taken = rows.find((r) => r.id !== except);
    if (!taken) return;
    throw new TorusError(
      'TORUS_E_CONFLICT',
      taken.alias
        ? `namespace name ${JSON.stringify(name)} is taken: it is the former name of namespace ${JSON.stringify(taken.current)} ` +
            'and still resolves to it; an admin can free it with deleteNamespaceAlias'
        : `namespace name ${JSON.stringify(name)} is taken: choose another name`,
    );
  }

  async function findOrb(q: Queryable, ref: string, lock = false): Promise<OrbRow | null> {
    const forUpdate = lock ? ' FOR UPDATE OF o' : '';
    if (isUuid(ref)) {
      const { rows } = await q.query<OrbRow>(
        `SELECT ${ORB_COLUMNS} ${ORB_FROM} WHERE o.id = $1${forUpdate}`,
        [ref],
      );
      return rows[0] ?? null;
    }
    const name = parseOrbName(ref);
    if (!name) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `${JSON.stringify(ref)} is not an orb name: use namespace/orb (or the orb's id)`,
      );
    }
    const { rows } = await q.query<OrbRow>(
      `SELECT ${ORB_COLUMNS} ${ORB_FROM} WHERE o.name = $2 AND ${namespaceNamed('$1')}${forUpdate}`,
      [name.namespace, name.orb],
    );
    return rows[0] ?? null;
  }

  async function requireOrb(q: Queryable, ref: string, lock = false): Promise<OrbRow> {
    const orb = await findOrb(q, ref, lock);
    if (!orb) {
      throw new TorusError(
        'TORUS_E_NOT_FOUND',
        `orb ${ref} not found: create it with \`torus orb create ${ref}\`, or import it with \`torus admin import-orb ${ref}\``,
      );
    }
    return orb;
  }

  async function versionRow(q: Queryable, orbId: string, version: string): Promise<VersionRow | null> {
    const { rows } = await q.query<VersionRow>(
      `SELECT ${VERSION_COLUMNS}, v.source ${VERSION_FROM} WHERE v.orb_id = $1 AND v.version = $2`,
      [orbId, version],
    );
    return rows[0] ?? null;
  }

  function requireCategory(ref: string): OrbCategory {
    const c = findCategory(ref);
    if (!c) {
      throw new TorusError(
        'TORUS_E_NOT_FOUND',
        `orb category ${JSON.stringify(ref)} not found: one of ${ORB_CATEGORIES.map((x) => x.name).join(', ')}`,
      );
    }
    return c;
  }

  async function reloadOrb(q: Queryable, id: string): Promise<Orb> {
    return toOrb((await findOrb(q, id))!);
  }

  // ---- import steps, shared by the single imports and the batch ----

  async function importNamespaceIn(
    tx: Queryable,
    name: string,
    actor: Actor,
  ): Promise<{ ns: NamespaceRow; created: boolean }> {
    checkName('namespace', name);
    await lockNamespaceNames(tx);
    const { rows } = await tx.query<NamespaceRow>(`${NAMESPACE_SELECT} WHERE n.name = $1`, [name]);
    if (rows[0]) return { ns: rows[0], created: false };
    await checkNameFree(tx, name);
    const id = ids.uuid();
    await tx.query(
      `INSERT INTO orb_namespaces (id, name, org_id, imported, created_at, created_by) VALUES ($1, $2, NULL, true, $3, $4)`,
      [id, name, clock.now(), actorId(actor)],
    );
    await audit(tx, actor, 'namespace.import', name);
    return { ns: (await findNamespace(tx, id))!, created: true };
  }

  async function importOrbIn(
    tx: Queryable,
    ns: NamespaceRow,
    name: string,
    actor: Actor,
  ): Promise<{ orb: OrbRow; created: boolean }> {
    checkName('orb', name);
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO orbs (id, namespace_id, name, is_private, listed, imported, created_at, created_by)
       VALUES ($1, $2, $3, false, true, true, $4, $5) ON CONFLICT (namespace_id, name) DO NOTHING RETURNING id`,
      [ids.uuid(), ns.id, name, clock.now(), actorId(actor)],
    );
    const created = inserted.rows.length > 0;
    if (created) await audit(tx, actor, 'orb.import', `${ns.name}/${name}`);
    return { orb: (await findOrb(tx, `${ns.name}/${name}`))!, created };
  }

  async function importVersionIn(
    tx: Queryable,
    orb: OrbRow,
    version: string,
    source: string,
    actor: Actor,
    createdAt: Date | undefined,
  ): Promise<{ row: VersionRow; created: boolean }> {
    const ref = `${orb.namespace}/${orb.name}@${version}`;
    const semver = parseSemver(version);
    if (!semver) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `${JSON.stringify(version)} cannot be imported into ${orb.namespace}/${orb.name}: only published semantic versions (1.2.3) are imported, not dev versions`,
      );
    }
    checkSource(source, ref);
    const at = createdAt ?? clock.now();
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO orb_versions (id, orb_id, version, major, minor, patch, source, created_at, published_at, published_by, imported)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, true)
       ON CONFLICT (orb_id, version) DO NOTHING RETURNING id`,
      [ids.uuid(), orb.id, version, semver.major, semver.minor, semver.patch, source, at, actorId(actor)],
    );
    const row = (await versionRow(tx, orb.id, version))!;
    if (inserted.rows.length > 0) {
      await audit(tx, actor, 'orb.import_version', ref, { createdAt: at.toISOString() });
      return { row, created: true };
    }
    if (row.source !== source) {
      throw new TorusError(
        'TORUS_E_CONFLICT',
        `${ref} already exists here with a different source: published versions are immutable, so it cannot be imported again`,
      );
    }
    return { row, created: false };
  }

  async function listVersionRows(
    q: Queryable,
    orbId: string,
    includeDev: boolean,
    now: Date,
  ): Promise<VersionRow[]> {
    const { rows } = await q.query<VersionRow>(
      `SELECT ${VERSION_COLUMNS} ${VERSION_FROM}
       WHERE v.orb_id = $1 AND (v.major IS NOT NULL ${includeDev ? 'OR v.expires_at > $2' : ''})
       ORDER BY ${LIST_ORDER}`,
      includeDev ? [orbId, now] : [orbId],
    );
    return rows;
  }

  async function highestSemver(q: Queryable, orbId: string): Promise<Semver | null> {
    const { rows } = await q.query<Semver>(
      `SELECT v.major, v.minor, v.patch FROM orb_versions v WHERE v.orb_id = $1 AND v.major IS NOT NULL
       ORDER BY ${SEMVER_ORDER} LIMIT 1`,
      [orbId],
    );
    return rows[0] ?? null;
  }

  return {
    // ---- namespaces ----

    createNamespace: (org, name, actor) =>
      change(async (tx) => {
        checkName('namespace', name);
        const { rows: orgs } = await tx.query<{ id: string; name: string }>(
          `SELECT id, name FROM organizations WHERE ${isUuid(org) ? 'id = $1' : "slug = $1 OR slug = 'circleci/' || $1"}`,
          [org],
        );
        const o = orgs[0];
        if (!o) throw new TorusError('TORUS_E_NOT_FOUND', `organization ${JSON.stringify(org)} not found`);
        await authorize(tx, actor, 'org-admin', o.id, `create a namespace for organization ${o.name}`);
        await lockNamespaceNames(tx);
        await checkNameFree(tx, name);
        const id = ids.uuid();
        await tx.query(
          `INSERT INTO orb_namespaces (id, name, org_id, imported, created_at, created_by) VALUES ($1, $2, $3, false, $4, $5)`,
          [id, name, o.id, clock.now(), actorId(actor)],
        );
        await audit(tx, actor, 'namespace.create', name, { organization: o.name, organizationId: o.id });
        return toNamespace((await findNamespace(tx, id))!);
      }),

    renameNamespace: (namespace, newName, actor) =>
      change(async (tx) => {
        checkName('namespace', newName);
        await authorize(tx, actor, 'admin', null, 'rename a namespace');
        await lockNamespaceNames(tx);
        const ns = await requireNamespace(tx, namespace);
        if (ns.name === newName) return toNamespace(ns);
        // renaming back to a former name of the same namespace takes that alias back
        await checkNameFree(tx, newName, ns.id);
        await tx.query('DELETE FROM orb_namespace_aliases WHERE name = $1', [newName]);
        await tx.query(
          'INSERT INTO orb_namespace_aliases (name, namespace_id, created_at) VALUES ($1, $2, $3)',
          [ns.name, ns.id, clock.now()],
        );
        await tx.query('UPDATE orb_namespaces SET name = $2 WHERE id = $1', [ns.id, newName]);
        await audit(tx, actor, 'namespace.rename', newName, { from: ns.name, to: newName });
        return toNamespace((await findNamespace(tx, ns.id))!);
      }),

    deleteNamespaceAlias: (alias, actor) =>
      change(async (tx) => {
        await authorize(tx, actor, 'admin', null, 'delete a namespace alias');
        await lockNamespaceNames(tx);
        const { rows } = await tx.query<{ namespace_id: string }>(
          'DELETE FROM orb_namespace_aliases WHERE name = $1 RETURNING namespace_id',
          [alias],
        );
        if (!rows[0]) {
          throw new TorusError(
            'TORUS_E_NOT_FOUND',
            `${JSON.stringify(alias)} is not a namespace alias (aliases are the former names of renamed namespaces)`,
          );
        }
        const ns = (await findNamespace(tx, rows[0].namespace_id))!;
        await audit(tx, actor, 'namespace.delete_alias', alias, { namespace: ns.name });
        return toNamespace(ns);
      }),

    deleteNamespaceAndRelatedOrbs: (namespace, actor) =>
      change(async (tx) => {
        await authorize(tx, actor, 'admin', null, 'delete a namespace');
        await lockNamespaceNames(tx);
        const ns = await requireNamespace(tx, namespace);
        const { rows } = await tx.query<{ orbs: string[]; versions: number }>(
          `SELECT COALESCE(jsonb_agg(o.name ORDER BY o.name), '[]'::jsonb) AS orbs,
             (SELECT count(*) FROM orb_versions v JOIN orbs o2 ON o2.id = v.orb_id WHERE o2.namespace_id = $1)::int AS versions
           FROM orbs o WHERE o.namespace_id = $1`,
          [ns.id],
        );
        const { orbs, versions } = rows[0]!;
        await tx.query('DELETE FROM orb_namespaces WHERE id = $1', [ns.id]);
        await audit(tx, actor, 'namespace.delete', ns.name, { orbs, versions, aliases: ns.aliases });
        return { namespace: toNamespace(ns), orbs: orbs.length, versions };
      }),

    async getNamespace(ref) {
      const ns = await findNamespace(db, ref);
      return ns ? toNamespace(ns) : null;
    },

    async listNamespaces() {
      const { rows } = await db.query<NamespaceRow>(`${NAMESPACE_SELECT} ORDER BY n.name`);
      return rows.map(toNamespace);
    },

    // ---- orbs ----

    createOrb: (namespace, name, o, actor) =>
      change(async (tx) => {
        checkName('orb', name);
        const ns = await requireNamespace(tx, namespace);
        await authorize(tx, actor, 'org-member', ns.org_id, `create orbs in namespace ${ns.name}`);
        const inserted = await tx.query<{ id: string }>(
          `INSERT INTO orbs (id, namespace_id, name, is_private, listed, imported, created_at, created_by)
           VALUES ($1, $2, $3, $4, true, false, $5, $6) ON CONFLICT (namespace_id, name) DO NOTHING RETURNING id`,
          [ids.uuid(), ns.id, name, o.private === true, clock.now(), actorId(actor)],
        );
        if (!inserted.rows[0])
          throw new TorusError('TORUS_E_CONFLICT', `orb ${ns.name}/${name} already exists`);
        await audit(tx, actor, 'orb.create', `${ns.name}/${name}`, { private: o.private === true });
        return reloadOrb(tx, inserted.rows[0].id);
      }),

    setOrbListStatus: (orb, listed, actor) =>
      change(async (tx) => {
        const o = await requireOrb(tx, orb, true);
        await authorize(
          tx,
          actor,
          'org-member',
          o.org_id,
          `change whether ${o.namespace}/${o.name} is listed`,
        );
        await tx.query('UPDATE orbs SET listed = $2 WHERE id = $1', [o.id, listed]);
        await audit(tx, actor, 'orb.set_list_status', `${o.namespace}/${o.name}`, { listed });
        return reloadOrb(tx, o.id);
      }),

    async getOrb(ref, viewer) {
      const orb = await findOrb(db, ref);
      if (!orb) return null;
      const o = toOrb(orb);
      return canSee(await visibilityOf(db, viewer), o) ? o : null;
    },

    async listOrbs(o, viewer) {
      const first = Math.min(Math.max(1, Math.floor(o.first ?? DEFAULT_PAGE)), MAX_PAGE);
      const scope = await visibilityOf(db, viewer);
      const where: string[] = [];
      const params: unknown[] = [];
      if (o.namespace !== undefined) {
        const ns = await findNamespace(db, o.namespace);
        if (!ns)
          throw new TorusError('TORUS_E_NOT_FOUND', `namespace ${JSON.stringify(o.namespace)} not found`);
        params.push(ns.id);
        where.push(`o.namespace_id = $${params.length}`);
      }
      if (!o.includeUnlisted) where.push('o.listed');
      const view = o.view ?? 'all';
      if (view === 'public') where.push('NOT o.is_private');
      else if (scope !== 'all') {
        params.push(JSON.stringify(scope));
        const visiblePrivate = `(o.is_private AND n.org_id IN (SELECT jsonb_array_elements_text($${params.length}::jsonb)::uuid))`;
        where.push(view === 'private' ? visiblePrivate : `(NOT o.is_private OR ${visiblePrivate})`);
      } else if (view === 'private') where.push('o.is_private');
      const filter = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
      const total = await db.query<{ count: number }>(
        `SELECT count(*)::int AS count ${ORB_FROM} ${filter}`,
        params,
      );
      const pageWhere = [...where];
      const pageParams = [...params];
      if (o.after) {
        const [afterNs, afterName] = decodeCursor(o.after);
        pageParams.push(afterNs, afterName);
        const [a, b] = [`$${pageParams.length - 1}`, `$${pageParams.length}`];
        // the order of the listing, byte-wise whatever the database's collation
        pageWhere.push(`(n.name COLLATE "C" > ${a} OR (n.name = ${a} AND o.name COLLATE "C" > ${b}))`);
      }
      pageParams.push(first + 1);
      const { rows } = await db.query<OrbRow & { latest: string | null }>(
        `SELECT ${ORB_COLUMNS},
           (SELECT v.version FROM orb_versions v WHERE v.orb_id = o.id AND v.major IS NOT NULL
             ORDER BY ${SEMVER_ORDER} LIMIT 1) AS latest
         ${ORB_FROM} ${pageWhere.length > 0 ? `WHERE ${pageWhere.join(' AND ')}` : ''}
         ORDER BY n.name COLLATE "C", o.name COLLATE "C" LIMIT $${pageParams.length}`,
        pageParams,
      );
      const items = rows.slice(0, first).map((r) => ({
        ...toOrb(r),
        cursor: encodeCursor(r.namespace, r.name),
        latestVersion: r.latest,
      }));
      return {
        items,
        totalCount: total.rows[0]!.count,
        hasNextPage: rows.length > first,
        endCursor: items.at(-1)?.cursor ?? null,
      };
    },

    // ---- versions ----

    async publishVersion(orb, version, source, actor) {
      const v = parsePublishedVersion(version);
      const ref = `${orb}@${version}`;
      checkSource(source, ref);
      const problems = opts.validateSource ? await opts.validateSource(source, ref) : [];
      if (problems.length > 0) {
        throw new TorusError('TORUS_E_BAD_REQUEST', `orb ${ref} is not valid:\n${problems.join('\n')}`);
      }
      return change(async (tx) => {
        const o = await requireOrb(tx, orb, true);
        const full = `${o.namespace}/${o.name}@${version}`;
        await authorize(tx, actor, 'org-member', o.org_id, `publish ${o.namespace}/${o.name}`);
        if (o.imported) {
          throw new TorusError(
            'TORUS_E_CONFLICT',
            `orb ${o.namespace}/${o.name} was imported from an upstream registry: its versions come from there ` +
              `(\`torus admin import-orb ${o.namespace}/${o.name}\`); publish your own orb in a namespace of your organization`,
          );
        }
        const now = clock.now();
        if (v.kind === 'semver') {
          const inserted = await tx.query(
            `INSERT INTO orb_versions (id, orb_id, version, major, minor, patch, source, created_at, published_at, published_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) ON CONFLICT (orb_id, version) DO NOTHING RETURNING id`,
            [
              ids.uuid(),
              o.id,
              version,
              v.semver.major,
              v.semver.minor,
              v.semver.patch,
              source,
              now,
              actorId(actor),
            ],
          );
          if (inserted.rows.length === 0) {
            throw new TorusError(
              'TORUS_E_CONFLICT',
              `${full}: version already exists, and published versions are immutable; publish a higher version ` +
                '(`circleci orb publish increment`) or a dev:<label> version',
            );
          }
          await audit(tx, actor, 'orb.publish', full, { dev: false });
        } else {
          const expires = new Date(now.getTime() + DEV_VERSION_TTL_MS);
          const upserted = await tx.query<{ created: boolean }>(
            `INSERT INTO orb_versions (id, orb_id, version, source, created_at, published_at, published_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7)
             ON CONFLICT (orb_id, version) DO UPDATE SET source = EXCLUDED.source, published_at = EXCLUDED.published_at,
               published_by = EXCLUDED.published_by, expires_at = EXCLUDED.expires_at
             RETURNING (xmax = 0) AS created`,
            [ids.uuid(), o.id, version, source, now, actorId(actor), expires],
          );
          await audit(tx, actor, 'orb.publish', full, {
            dev: true,
            overwritten: upserted.rows[0]?.created === false,
            expiresAt: expires.toISOString(),
          });
        }
        return toVersion((await versionRow(tx, o.id, version))!);
      });
    },

    promote: (orb, devVersion, segment, actor) =>
      change(async (tx) => {
        if (!isSegment(segment)) {
          throw new TorusError(
            'TORUS_E_BAD_REQUEST',
            `${JSON.stringify(segment)} is not a version segment: promote to the next major, minor or patch version`,
          );
        }
        const dev = devVersion.startsWith('dev:') ? devVersion : `dev:${devVersion}`;
        const parsed = parsePublishedVersion(dev);
        if (parsed.kind !== 'dev') {
          throw new TorusError('TORUS_E_BAD_REQUEST', `${JSON.stringify(devVersion)} is not a dev version`);
        }
        const o = await requireOrb(tx, orb, true);
        await authorize(tx, actor, 'org-member', o.org_id, `promote versions of ${o.namespace}/${o.name}`);
        const now = clock.now();
        const from = await versionRow(tx, o.id, dev);
        if (!from || (from.expires_at !== null && from.expires_at <= now)) {
          throw new TorusError(
            'TORUS_E_NOT_FOUND',
            `${o.namespace}/${o.name}@${dev} not found${from ? ' (it expired: dev versions last 90 days after their last publish)' : ''}`,
          );
        }
        const next = nextVersion(await highestSemver(tx, o.id), segment);
        const version = formatSemver(next);
        const full = `${o.namespace}/${o.name}@${version}`;
        const inserted = await tx.query(
          `INSERT INTO orb_versions (id, orb_id, version, major, minor, patch, source, created_at, published_at, published_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) ON CONFLICT (orb_id, version) DO NOTHING RETURNING id`,
          [ids.uuid(), o.id, version, next.major, next.minor, next.patch, from.source, now, actorId(actor)],
        );
        if (inserted.rows.length === 0) {
          throw new TorusError(
            'TORUS_E_CONFLICT',
            `${full}: version already exists (published meanwhile); promote again`,
          );
        }
        await audit(tx, actor, 'orb.promote', full, { from: dev, segment });
        return toVersion((await versionRow(tx, o.id, version))!);
      }),

    async getVersion(ref, viewer) {
      const r = await resolveOrbVersion(db, ref, await visibilityOf(db, viewer), clock.now(), true);
      return r?.row ? toVersion(r.row) : null;
    },

    async listVersions(orb, viewer, o = {}) {
      const row = await findOrb(db, orb);
      if (!row || !canSee(await visibilityOf(db, viewer), toOrb(row))) {
        throw new TorusError('TORUS_E_NOT_FOUND', `orb ${orb} not found`);
      }
      return (await listVersionRows(db, row.id, o.includeDev === true, clock.now())).map(toVersionInfo);
    },

    async sweepExpiredDevVersions() {
      const removed = await change(async (tx) => {
        const { rows } = await tx.query<{ ref: string }>(
          `DELETE FROM orb_versions v USING orbs o, orb_namespaces n
           WHERE o.id = v.orb_id AND n.id = o.namespace_id AND v.expires_at <= $1
           RETURNING n.name || '/' || o.name || '@' || v.version AS ref`,
          [clock.now()],
        );
        if (rows.length > 0) {
          await audit(tx, 'system', 'orb.expire_dev_versions', `${rows.length} dev versions`, {
            versions: rows.map((r) => r.ref).sort(),
          });
        }
        return rows.length;
      });
      return removed;
    },

    // ---- categories ----

    listCategories: () => Promise.resolve([...ORB_CATEGORIES]),

    getCategory: (ref) => Promise.resolve(findCategory(ref)),

    addCategorization: (orb, category, actor) =>
      change(async (tx) => {
        const o = await requireOrb(tx, orb, true);
        await authorize(tx, actor, 'org-member', o.org_id, `categorize ${o.namespace}/${o.name}`);
        const c = requireCategory(category);
        await tx.query(
          'INSERT INTO orb_categorizations (orb_id, category_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
          [o.id, c.id],
        );
        await audit(tx, actor, 'orb.add_category', `${o.namespace}/${o.name}`, { category: c.name });
        return reloadOrb(tx, o.id);
      }),

    removeCategorization: (orb, category, actor) =>
      change(async (tx) => {
        const o = await requireOrb(tx, orb, true);
        await authorize(tx, actor, 'org-member', o.org_id, `categorize ${o.namespace}/${o.name}`);
        const c = requireCategory(category);
        await tx.query('DELETE FROM orb_categorizations WHERE orb_id = $1 AND category_id = $2', [
          o.id,
          c.id,
        ]);
        await audit(tx, actor, 'orb.remove_category', `${o.namespace}/${o.name}`, { category: c.name });
        return reloadOrb(tx, o.id);
      }),

    // ---- import ----

    importNamespace: (name, actor) =>
      change(async (tx) => {
        await authorize(tx, actor, 'admin', null, 'import namespaces');
        return toNamespace((await importNamespaceIn(tx, name, actor)).ns);
      }),

    importOrb: (namespace, name, actor) =>
      change(async (tx) => {
        await authorize(tx, actor, 'admin', null, 'import orbs');
        const ns = await requireNamespace(tx, namespace);
        return toOrb((await importOrbIn(tx, ns, name, actor)).orb);
      }),

    importVersion: (orb, version, source, actor, o = {}) =>
      change(async (tx) => {
        await authorize(tx, actor, 'admin', null, 'import orb versions');
        const row = await requireOrb(tx, orb, true);
        const r = await importVersionIn(tx, row, version, source, actor, o.createdAt);
        return { version: toVersion(r.row), created: r.created };
      }),

    importOrbVersions: (items, actor) =>
      change(async (tx) => {
        await authorize(tx, actor, 'admin', null, 'import orbs');
        const summary: ImportSummary = {
          namespacesCreated: [],
          orbsCreated: [],
          versionsCreated: [],
          versionsUnchanged: [],
        };
        const namespaces = new Map<string, NamespaceRow>();
        const orbs = new Map<string, OrbRow>();
        for (const item of items) {
          let ns = namespaces.get(item.namespace);
          if (!ns) {
            const r = await importNamespaceIn(tx, item.namespace, actor);
            ns = r.ns;
            namespaces.set(item.namespace, ns);
            if (r.created) summary.namespacesCreated.push(ns.name);
          }
          const orbName = `${item.namespace}/${item.orb}`;
          let orb = orbs.get(orbName);
          if (!orb) {
            const r = await importOrbIn(tx, ns, item.orb, actor);
            orb = r.orb;
            orbs.set(orbName, orb);
            if (r.created) summary.orbsCreated.push(orbName);
          }
          const r = await importVersionIn(tx, orb, item.version, item.source, actor, item.createdAt);
          (r.created ? summary.versionsCreated : summary.versionsUnchanged).push(
            `${orbName}@${item.version}`,
          );
        }
        return summary;
      }),

    visibilityOf: (viewer) => visibilityOf(db, viewer),
  };
}
