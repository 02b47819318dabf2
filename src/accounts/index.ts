// Accounts: users (admin|member, suspension, a GitHub id for sign-in later), personal API tokens
// (shown once, stored as sha256), organizations (`circleci/<name>`) and their members, and the
// bootstrap admin created at first start.
import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../storage/index.js';
import { TorusError, type Resources } from '../ops/index.js';

export type Role = 'admin' | 'member';

export interface User {
  id: string;
  login: string;
  name: string;
  role: Role;
  suspended: boolean;
  createdAt: Date;
  email: string | null;
  /** set once the account is linked to GitHub (sign-in comes in a later issue) */
  githubId: number | null;
}

export interface ApiToken {
  id: string;
  userId: string;
  label: string;
  /** the token's first characters, so its owner can recognise it in a list */
  hint: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export interface NewToken extends ApiToken {
  /** the secret itself: returned once, never stored */
  token: string;
}

export interface Organization {
  id: string;
  name: string;
  /** 'circleci/<name>' */
  slug: string;
  vcsType: string;
  createdAt: Date;
}

export interface OrgMember {
  orgId: string;
  userId: string;
  login: string;
  name: string;
  role: Role;
  createdAt: Date;
}

export interface CreateUserInput {
  login: string;
  name?: string;
  role?: Role;
  email?: string;
  githubId?: number;
}

export interface Accounts {
  /** personal API token → its user; null when unknown, revoked or the user is suspended */
  authenticate(token: string): Promise<User | null>;
  /**
   * First start: creates user 'admin' (the first user is the bootstrap admin). With `adminToken`
   * (TORUS_ADMIN_TOKEN) the admin's 'bootstrap' token is replaced by it at every start; without,
   * a token is generated only when the admin has none, and returned once.
   */
  bootstrapAdmin(adminToken?: string): Promise<{ user: User; token?: string }>;
  createUser(input: CreateUserInput): Promise<User>;
  /** by id, or by login */
  getUser(idOrLogin: string): Promise<User | null>;
  listUsers(): Promise<User[]>;
  setSuspended(userId: string, suspended: boolean): Promise<User>;
  createToken(userId: string, label: string): Promise<NewToken>;
  /** the user's tokens that are not revoked, newest first */
  listTokens(userId: string): Promise<ApiToken[]>;
  revokeToken(userId: string, tokenId: string): Promise<void>;
  /** TORUS_E_CONFLICT when the organization exists */
  createOrg(name: string): Promise<Organization>;
  /** by id, name or slug ('circleci/<name>') */
  getOrg(ref: string): Promise<Organization | null>;
  listOrgs(): Promise<Organization[]>;
  /** organizations the user is a member of */
  listOrgsOf(userId: string): Promise<Organization[]>;
  /** adds, or changes the role of an existing member */
  addMember(orgId: string, userId: string, role: Role): Promise<void>;
  removeMember(orgId: string, userId: string): Promise<void>;
  listMembers(orgId: string): Promise<OrgMember[]>;
  /** the user's role in the organization, null when not a member */
  memberRole(orgId: string, userId: string): Promise<Role | null>;
}

/** CircleCI's personal tokens are 40 hex characters with no prefix; so are Torus'. */
const TOKEN_BYTES = 20;
const TOKEN_HINT_CHARS = 4;
/** last_used_at is refreshed at most this often, so reads do not turn every request into a write */
const LAST_USED_RESOLUTION_MS = 60_000;
export const BOOTSTRAP_ADMIN_LOGIN = 'admin';
export const BOOTSTRAP_TOKEN_LABEL = 'bootstrap';
const LOGIN_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ORG_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function generateToken(): string {
  return randomBytes(TOKEN_BYTES).toString('hex');
}

interface UserRow {
  id: string;
  login: string;
  name: string;
  email: string | null;
  role: Role;
  github_id: number | null;
  suspended_at: Date | null;
  created_at: Date;
}

interface TokenRow {
  id: string;
  user_id: string;
  label: string;
  token_hint: string;
  created_at: Date;
  last_used_at: Date | null;
}

interface OrgRow {
  id: string;
  name: string;
  slug: string;
  vcs_type: string;
  created_at: Date;
}

const USER_COLUMNS = 'u.id, u.login, u.name, u.email, u.role, u.github_id, u.suspended_at, u.created_at';

function toUser(r: UserRow): User {
  return {
    id: r.id,
    login: r.login,
    name: r.name,
    role: r.role,
    suspended: r.suspended_at !== null,
    createdAt: r.created_at,
    email: r.email,
    githubId: r.github_id,
  };
}

function toToken(r: TokenRow): ApiToken {
  return {
    id: r.id,
    userId: r.user_id,
    label: r.label,
    hint: r.token_hint,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
  };
}

function toOrg(r: OrgRow): Organization {
  return { id: r.id, name: r.name, slug: r.slug, vcsType: r.vcs_type, createdAt: r.created_at };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

export function createAccounts(res: Resources): Accounts {
  const { db, clock, ids } = res;

  async function userBy(q: Queryable, idOrLogin: string): Promise<User | null> {
    const where = isUuid(idOrLogin) ? 'u.id = $1' : 'u.login = $1';
    const r = await q.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users u WHERE ${where}`, [idOrLogin]);
    return r.rows[0] ? toUser(r.rows[0]) : null;
  }

  async function requireUser(q: Queryable, userId: string): Promise<User> {
    const u = await userBy(q, userId);
    if (!u) throw new TorusError('TORUS_E_NOT_FOUND', `user ${userId} not found`);
    return u;
  }

  async function insertUser(q: Queryable, input: CreateUserInput): Promise<User> {
    if (!LOGIN_RE.test(input.login)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `login ${JSON.stringify(input.login)} is not valid: use letters, digits, '-', '_' and '.', starting with a letter or digit (at most 64)`,
      );
    }
    const role = input.role ?? 'member';
    if (role !== 'admin' && role !== 'member') {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `role must be admin or member, got ${JSON.stringify(role)}`,
      );
    }
    const r = await q.query<UserRow>(
      `INSERT INTO users (id, login, name, email, role, github_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT DO NOTHING
       RETURNING id, login, name, email, role, github_id, suspended_at, created_at`,
      [
        ids.uuid(),
        input.login,
        input.name ?? input.login,
        input.email ?? null,
        role,
        input.githubId ?? null,
        clock.now(),
      ],
    );
    if (!r.rows[0]) {
      throw new TorusError(
        'TORUS_E_CONFLICT',
        `a user with login ${JSON.stringify(input.login)} (or that GitHub id) already exists`,
      );
    }
    return toUser(r.rows[0]);
  }

  async function insertToken(q: Queryable, userId: string, label: string, token: string): Promise<NewToken> {
    const r = await q.query<TokenRow>(
      `INSERT INTO api_tokens (id, user_id, label, token_hash, token_hint, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       RETURNING id, user_id, label, token_hint, created_at, last_used_at`,
      [ids.uuid(), userId, label, hashToken(token), token.slice(0, TOKEN_HINT_CHARS), clock.now()],
    );
    return { ...toToken(r.rows[0]!), token };
  }

  async function orgBy(q: Queryable, ref: string): Promise<Organization | null> {
    const where = isUuid(ref) ? 'id = $1' : 'slug = $1';
    const value = isUuid(ref) || ref.includes('/') ? ref : `circleci/${ref}`;
    const r = await q.query<OrgRow>(
      `SELECT id, name, slug, vcs_type, created_at FROM organizations WHERE ${where}`,
      [value],
    );
    return r.rows[0] ? toOrg(r.rows[0]) : null;
  }

  async function requireOrg(q: Queryable, orgId: string): Promise<Organization> {
    const o = await orgBy(q, orgId);
    if (!o) throw new TorusError('TORUS_E_NOT_FOUND', `organization ${orgId} not found`);
    return o;
  }

  return {
    async authenticate(token) {
      if (!token) return null;
      const r = await db.query<UserRow & { token_id: string; last_used_at: Date | null }>(
        `SELECT ${USER_COLUMNS}, t.id AS token_id, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL`,
        [hashToken(token)],
      );
      const row = r.rows[0];
      if (!row || row.suspended_at !== null) return null;
      const now = clock.now();
      if (!row.last_used_at || now.getTime() - row.last_used_at.getTime() >= LAST_USED_RESOLUTION_MS) {
        await db.query('UPDATE api_tokens SET last_used_at = $2 WHERE id = $1', [row.token_id, now]);
      }
      return toUser(row);
    },

    async bootstrapAdmin(adminToken) {
      return db.transaction(async (tx) => {
        // Several replicas may start at once: one of them bootstraps, the others see its result.
        await tx.query(`SELECT pg_advisory_xact_lock(hashtext('torus_bootstrap_admin'))`);
        const first = await tx.query<UserRow>(
          `SELECT ${USER_COLUMNS} FROM users u WHERE u.role = 'admin' ORDER BY u.created_at, u.id LIMIT 1`,
        );
        let user: User;
        if (first.rows[0]) {
          user = toUser(first.rows[0]);
        } else {
          const any = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
          if ((any.rows[0]?.n ?? 0) > 0) {
            throw new TorusError(
              'TORUS_E_CONFLICT',
              'users exist but none is an admin: promote one (UPDATE users SET role = admin) before starting',
            );
          }
          user = await insertUser(tx, { login: BOOTSTRAP_ADMIN_LOGIN, name: 'Administrator', role: 'admin' });
        }
        if (adminToken) {
          const hash = hashToken(adminToken);
          const kept = await tx.query(
            `SELECT 1 FROM api_tokens WHERE user_id = $1 AND token_hash = $2 AND label = $3 AND revoked_at IS NULL`,
            [user.id, hash, BOOTSTRAP_TOKEN_LABEL],
          );
          if (kept.rows.length === 0) {
            await tx.query('DELETE FROM api_tokens WHERE user_id = $1 AND (label = $2 OR token_hash = $3)', [
              user.id,
              BOOTSTRAP_TOKEN_LABEL,
              hash,
            ]);
            const taken = await tx.query('SELECT 1 FROM api_tokens WHERE token_hash = $1', [hash]);
            if (taken.rows.length > 0) {
              throw new TorusError(
                'TORUS_E_CONFLICT',
                'TORUS_ADMIN_TOKEN is already the API token of another user; choose another',
              );
            }
            await insertToken(tx, user.id, BOOTSTRAP_TOKEN_LABEL, adminToken);
          }
          return { user };
        }
        const has = await tx.query(
          'SELECT 1 FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL LIMIT 1',
          [user.id],
        );
        if (has.rows.length > 0) return { user };
        const created = await insertToken(tx, user.id, BOOTSTRAP_TOKEN_LABEL, generateToken());
        return { user, token: created.token };
      });
    },

    createUser: (input) => insertUser(db, input),

    getUser: (idOrLogin) => userBy(db, idOrLogin),

    async listUsers() {
      const r = await db.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users u ORDER BY u.created_at, u.login`);
      return r.rows.map(toUser);
    },

    async setSuspended(userId, suspended) {
      const r = await db.query<UserRow>(
        `UPDATE users u SET suspended_at = CASE WHEN $2::boolean THEN coalesce(u.suspended_at, $3) ELSE NULL END
         WHERE u.id = $1 RETURNING ${USER_COLUMNS}`,
        [userId, suspended, clock.now()],
      );
      if (!r.rows[0]) throw new TorusError('TORUS_E_NOT_FOUND', `user ${userId} not found`);
      return toUser(r.rows[0]);
    },

    async createToken(userId, label) {
      await requireUser(db, userId);
      return insertToken(db, userId, label, generateToken());
    },

    async listTokens(userId) {
      const r = await db.query<TokenRow>(
        `SELECT id, user_id, label, token_hint, created_at, last_used_at FROM api_tokens
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id`,
        [userId],
      );
      return r.rows.map(toToken);
    },

    async revokeToken(userId, tokenId) {
      if (!isUuid(tokenId)) throw new TorusError('TORUS_E_NOT_FOUND', `token ${tokenId} not found`);
      const r = await db.query(
        'UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL',
        [tokenId, userId, clock.now()],
      );
      if (r.rowCount === 0) throw new TorusError('TORUS_E_NOT_FOUND', `token ${tokenId} not found`);
    },

    async createOrg(name) {
      if (!ORG_NAME_RE.test(name)) {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `organization name ${JSON.stringify(name)} is not valid: use letters, digits, '-', '_' and '.' (at most 100)`,
        );
      }
      const r = await db.query<OrgRow>(
        `INSERT INTO organizations (id, name, vcs_type, slug, created_at) VALUES ($1, $2, 'circleci', $3, $4)
         ON CONFLICT (slug) DO NOTHING RETURNING id, name, slug, vcs_type, created_at`,
        [ids.uuid(), name, `circleci/${name}`, clock.now()],
      );
      if (!r.rows[0])
        throw new TorusError('TORUS_E_CONFLICT', `organization circleci/${name} already exists`);
      return toOrg(r.rows[0]);
    },

    getOrg: (ref) => orgBy(db, ref),

    async listOrgs() {
      const r = await db.query<OrgRow>(
        'SELECT id, name, slug, vcs_type, created_at FROM organizations ORDER BY name',
      );
      return r.rows.map(toOrg);
    },

    async listOrgsOf(userId) {
      const r = await db.query<OrgRow>(
        `SELECT o.id, o.name, o.slug, o.vcs_type, o.created_at FROM organizations o
         JOIN org_members m ON m.org_id = o.id WHERE m.user_id = $1 ORDER BY o.name`,
        [userId],
      );
      return r.rows.map(toOrg);
    },

    async addMember(orgId, userId, role) {
      if (role !== 'admin' && role !== 'member') {
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `role must be admin or member, got ${JSON.stringify(role)}`,
        );
      }
      await requireOrg(db, orgId);
      await requireUser(db, userId);
      await db.query(
        `INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role`,
        [orgId, userId, role, clock.now()],
      );
    },

    async removeMember(orgId, userId) {
      const r = await db.query('DELETE FROM org_members WHERE org_id = $1 AND user_id = $2', [orgId, userId]);
      if (r.rowCount === 0)
        throw new TorusError('TORUS_E_NOT_FOUND', `user ${userId} is not a member of organization ${orgId}`);
    },

    async listMembers(orgId) {
      const r = await db.query<{
        org_id: string;
        user_id: string;
        login: string;
        name: string;
        role: Role;
        created_at: Date;
      }>(
        `SELECT m.org_id, m.user_id, u.login, u.name, m.role, m.created_at FROM org_members m
         JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.login`,
        [orgId],
      );
      return r.rows.map((m) => ({
        orgId: m.org_id,
        userId: m.user_id,
        login: m.login,
        name: m.name,
        role: m.role,
        createdAt: m.created_at,
      }));
    },

    async memberRole(orgId, userId) {
      const r = await db.query<{ role: Role }>(
        'SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2',
        [orgId, userId],
      );
      return r.rows[0]?.role ?? null;
    },
  };
}
