// The secret store: project environment variables, contexts and their variables, project SSH keys
// (all values sealed by a SecretCipher before they reach the database), the merged environment a
// job receives, and key rotation (re-encrypting every stored value in one transaction).
import type { Database, Queryable } from '../storage/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import type { SecretCipher } from './keyring.js';
import { describeSshPrivateKey, normalizeFingerprint } from './ssh.js';

// CircleCI's limits (docs: "Contexts and environment variable constraints")
export const MAX_ENV_VAR_NAME_CHARS = 300;
export const MAX_ENV_VAR_VALUE_CHARS = 32_768;
export const MAX_CONTEXT_NAME_CHARS = 200;
export const MAX_VARS_PER_CONTEXT = 100;
export const MAX_CONTEXTS_PER_ORG = 500;
const ENV_VAR_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface ProjectEnvVar {
  name: string;
  /** the clear value: for jobs and for masking, never for API answers */
  value: string;
  createdAt: Date;
}

export interface Context {
  id: string;
  orgId: string;
  name: string;
  createdAt: Date;
}

export interface ContextEnvVar {
  contextId: string;
  name: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface SshKey {
  fingerprint: string;
  fingerprintSha256: string;
  hostname: string;
  publicKey: string;
  createdAt: Date;
}

export interface JobSshKey {
  fingerprint: string;
  fingerprintSha256: string;
  hostname: string;
  privateKey: string;
}

export interface JobEnvironment {
  /** project variables, then each context's in the order given (later ones override earlier ones) */
  environment: Record<string, string>;
  /** the injected values, for masking in step output */
  secrets: string[];
  /** context names the organization does not have (CircleCI fails such a job) */
  missingContexts: string[];
}

export interface ListOptions {
  offset?: number;
  limit?: number;
}

export interface SecretStore {
  /** creates or replaces (CircleCI's POST envvar replaces a variable of the same name) */
  setProjectEnvVar(projectId: string, name: string, value: string): Promise<ProjectEnvVar>;
  /** by name */
  listProjectEnvVars(projectId: string, opts?: ListOptions): Promise<ProjectEnvVar[]>;
  getProjectEnvVar(projectId: string, name: string): Promise<ProjectEnvVar | null>;
  deleteProjectEnvVar(projectId: string, name: string): Promise<boolean>;

  /** TORUS_E_CONFLICT when the organization has a context of that name */
  createContext(orgId: string, name: string): Promise<Context>;
  /** by name */
  listContexts(orgId: string, opts?: ListOptions): Promise<Context[]>;
  getContext(id: string): Promise<Context | null>;
  getContextByName(orgId: string, name: string): Promise<Context | null>;
  /** with its variables */
  deleteContext(id: string): Promise<boolean>;
  /** creates or updates */
  setContextEnvVar(contextId: string, name: string, value: string): Promise<ContextEnvVar>;
  /** by name; values are never listed */
  listContextEnvVars(contextId: string, opts?: ListOptions): Promise<ContextEnvVar[]>;
  deleteContextEnvVar(contextId: string, name: string): Promise<boolean>;

  /** `hostname` '' (or absent) for every host; TORUS_E_CONFLICT when the key is there for that host */
  addSshKey(projectId: string, input: { privateKey: string; hostname?: string }): Promise<SshKey>;
  listSshKeys(projectId: string): Promise<SshKey[]>;
  /** by either fingerprint form; with `hostname`, only that host's entry; returns how many were removed */
  deleteSshKey(projectId: string, fingerprint: string, hostname?: string): Promise<number>;
  /**
   * The keys an `add_ssh_keys` step installs: all the project's keys, or those whose MD5 or SHA256
   * fingerprint is listed. Fingerprints that match nothing are returned in `missing`.
   */
  sshKeysForJob(
    projectId: string,
    fingerprints?: string[],
  ): Promise<{ keys: JobSshKey[]; missing: string[] }>;

  jobEnvironment(projectId: string, orgId: string, contextNames: string[]): Promise<JobEnvironment>;
}

/** Throws a 400 naming the rule CircleCI applies to environment variable names. */
export function validateEnvVarName(name: unknown): string {
  if (typeof name !== 'string' || name === '')
    throw new TorusError('TORUS_E_BAD_REQUEST', 'an environment variable name is required');
  if (name.length > MAX_ENV_VAR_NAME_CHARS) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `environment variable name ${JSON.stringify(name.slice(0, 40) + '…')} is ${name.length} characters long; at most ${MAX_ENV_VAR_NAME_CHARS} allowed`,
    );
  }
  if (!ENV_VAR_NAME_RE.test(name)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `environment variable name ${JSON.stringify(name)} is not valid: use letters, digits and underscores, not starting with a digit`,
    );
  }
  return name;
}

export function validateEnvVarValue(value: unknown, name: string): string {
  if (typeof value !== 'string')
    throw new TorusError('TORUS_E_BAD_REQUEST', `the value of ${name} must be a string`);
  if (value.length > MAX_ENV_VAR_VALUE_CHARS) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the value of ${name} is ${value.length} characters long; at most ${MAX_ENV_VAR_VALUE_CHARS} allowed`,
    );
  }
  return value;
}

export function validateContextName(name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '')
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'a context name must contain at least one non-whitespace character',
    );
  if (name.length > MAX_CONTEXT_NAME_CHARS)
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `context name is ${name.length} characters long; at most ${MAX_CONTEXT_NAME_CHARS} allowed`,
    );
  if (name !== name.trim() || /[\n\r\v\f\u0085\u2028\u2029]/.test(name))
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `context name ${JSON.stringify(name)} must not have leading, trailing or vertical whitespace`,
    );
  return name;
}

/**
 * How CircleCI shows a stored value: four 'x' then the value's last four characters. A value of
 * four characters or fewer shows as 'xxxx' alone, so a masked value never reveals a whole secret.
 */
export function maskEnvVarValue(value: string): string {
  const chars = [...value];
  return chars.length > 4 ? `xxxx${chars.slice(-4).join('')}` : 'xxxx';
}

// The additional data each sealed value is bound to: moving a ciphertext to another row breaks it.
const aad = {
  projectEnv: (projectId: string, name: string) => `project-env:${projectId}:${name}`,
  contextEnv: (contextId: string, name: string) => `context-env:${contextId}:${name}`,
  sshKey: (projectId: string, fingerprint: string, hostname: string) =>
    `ssh-key:${projectId}:${fingerprint}:${hostname}`,
};

interface ContextRow {
  id: string;
  org_id: string;
  name: string;
  created_at: Date;
}

interface SshRow {
  fingerprint: string;
  fingerprint_sha256: string;
  hostname: string;
  public_key: string;
  private_key_ciphertext: string;
  created_at: Date;
}

const toContext = (r: ContextRow): Context => ({
  id: r.id,
  orgId: r.org_id,
  name: r.name,
  createdAt: r.created_at,
});
const toSshKey = (r: SshRow): SshKey => ({
  fingerprint: r.fingerprint,
  fingerprintSha256: r.fingerprint_sha256,
  hostname: r.hostname,
  publicKey: r.public_key,
  createdAt: r.created_at,
});

function limits(opts: ListOptions | undefined): [number, number] {
  return [opts?.limit ?? 10_000, opts?.offset ?? 0];
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === '23505';
}

export function createSecretStore(
  res: Pick<Resources, 'db' | 'clock' | 'ids'>,
  cipher: SecretCipher,
): SecretStore {
  const { db, clock, ids } = res;

  async function projectEnvVar(
    r: { name: string; ciphertext: string; created_at: Date },
    projectId: string,
  ): Promise<ProjectEnvVar> {
    return {
      name: r.name,
      value: await cipher.decrypt(r.ciphertext, aad.projectEnv(projectId, r.name)),
      createdAt: r.created_at,
    };
  }

  const store: SecretStore = {
    async setProjectEnvVar(projectId, name, value) {
      validateEnvVarName(name);
      validateEnvVarValue(value, name);
      const sealed = await cipher.encrypt(value, aad.projectEnv(projectId, name));
      const r = await db.query<{ created_at: Date }>(
        `INSERT INTO project_env_vars (project_id, name, ciphertext, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (project_id, name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, created_at = EXCLUDED.created_at
         RETURNING created_at`,
        [projectId, name, sealed, clock.now()],
      );
      return { name, value, createdAt: r.rows[0]!.created_at };
    },

    async listProjectEnvVars(projectId, opts) {
      const r = await db.query<{ name: string; ciphertext: string; created_at: Date }>(
        `SELECT name, ciphertext, created_at FROM project_env_vars WHERE project_id = $1 ORDER BY name LIMIT $2 OFFSET $3`,
        [projectId, ...limits(opts)],
      );
      return Promise.all(r.rows.map((row) => projectEnvVar(row, projectId)));
    },

    async getProjectEnvVar(projectId, name) {
      const r = await db.query<{ name: string; ciphertext: string; created_at: Date }>(
        'SELECT name, ciphertext, created_at FROM project_env_vars WHERE project_id = $1 AND name = $2',
        [projectId, name],
      );
      return r.rows[0] ? projectEnvVar(r.rows[0], projectId) : null;
    },

    async deleteProjectEnvVar(projectId, name) {
      const r = await db.query('DELETE FROM project_env_vars WHERE project_id = $1 AND name = $2', [
        projectId,
        name,
      ]);
      return r.rowCount > 0;
    },

    async createContext(orgId, name) {
      validateContextName(name);
      return db.transaction(async (tx) => {
        // serializes context creation per organization, so the limit holds under concurrency
        await tx.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [orgId]);
        const n = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM contexts WHERE org_id = $1', [
          orgId,
        ]);
        if (n.rows[0]!.n >= MAX_CONTEXTS_PER_ORG)
          throw new TorusError(
            'TORUS_E_CONFLICT',
            `the organization has ${MAX_CONTEXTS_PER_ORG} contexts, the most it may have; delete one first`,
          );
        try {
          const r = await tx.query<ContextRow>(
            `INSERT INTO contexts (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, name) DO NOTHING RETURNING id, org_id, name, created_at`,
            [ids.uuid(), orgId, name, clock.now()],
          );
          if (!r.rows[0])
            throw new TorusError(
              'TORUS_E_CONFLICT',
              `the organization already has a context named ${JSON.stringify(name)}`,
            );
          return toContext(r.rows[0]);
        } catch (err) {
          if (isUniqueViolation(err))
            throw new TorusError(
              'TORUS_E_CONFLICT',
              `the organization already has a context named ${JSON.stringify(name)}`,
            );
          throw err;
        }
      });
    },

    async listContexts(orgId, opts) {
      const r = await db.query<ContextRow>(
        'SELECT id, org_id, name, created_at FROM contexts WHERE org_id = $1 ORDER BY name LIMIT $2 OFFSET $3',
        [orgId, ...limits(opts)],
      );
      return r.rows.map(toContext);
    },

    async getContext(id) {
      const r = await db.query<ContextRow>(
        'SELECT id, org_id, name, created_at FROM contexts WHERE id = $1',
        [id],
      );
      return r.rows[0] ? toContext(r.rows[0]) : null;
    },

    async getContextByName(orgId, name) {
      const r = await db.query<ContextRow>(
        'SELECT id, org_id, name, created_at FROM contexts WHERE org_id = $1 AND name = $2',
        [orgId, name],
      );
      return r.rows[0] ? toContext(r.rows[0]) : null;
    },

    async deleteContext(id) {
      const r = await db.query('DELETE FROM contexts WHERE id = $1', [id]);
      return r.rowCount > 0;
    },

    async setContextEnvVar(contextId, name, value) {
      validateEnvVarName(name);
      validateEnvVarValue(value, name);
      const sealed = await cipher.encrypt(value, aad.contextEnv(contextId, name));
      return db.transaction(async (tx) => {
        const ctx = await tx.query('SELECT 1 FROM contexts WHERE id = $1 FOR UPDATE', [contextId]);
        if (ctx.rows.length === 0) throw new TorusError('TORUS_E_NOT_FOUND', 'Context not found.');
        const n = await tx.query<{ n: number; has: boolean }>(
          'SELECT count(*)::int AS n, bool_or(name = $2) AS has FROM context_env_vars WHERE context_id = $1',
          [contextId, name],
        );
        if (n.rows[0]!.n >= MAX_VARS_PER_CONTEXT && !n.rows[0]!.has)
          throw new TorusError(
            'TORUS_E_CONFLICT',
            `the context has ${MAX_VARS_PER_CONTEXT} environment variables, the most it may have; delete one first`,
          );
        const now = clock.now();
        const r = await tx.query<{ created_at: Date; updated_at: Date }>(
          `INSERT INTO context_env_vars (context_id, name, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (context_id, name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = EXCLUDED.updated_at
           RETURNING created_at, updated_at`,
          [contextId, name, sealed, now],
        );
        return { contextId, name, createdAt: r.rows[0]!.created_at, updatedAt: r.rows[0]!.updated_at };
      });
    },

    async listContextEnvVars(contextId, opts) {
      const r = await db.query<{ name: string; created_at: Date; updated_at: Date }>(
        `SELECT name, created_at, updated_at FROM context_env_vars WHERE context_id = $1 ORDER BY name LIMIT $2 OFFSET $3`,
        [contextId, ...limits(opts)],
      );
      return r.rows.map((v) => ({
        contextId,
        name: v.name,
        createdAt: v.created_at,
        updatedAt: v.updated_at,
      }));
    },

    async deleteContextEnvVar(contextId, name) {
      const r = await db.query('DELETE FROM context_env_vars WHERE context_id = $1 AND name = $2', [
        contextId,
        name,
      ]);
      return r.rowCount > 0;
    },

    async addSshKey(projectId, input) {
      if (typeof input.privateKey !== 'string' || !input.privateKey.trim())
        throw new TorusError('TORUS_E_BAD_REQUEST', 'private_key is required');
      const hostname = (input.hostname ?? '').trim();
      if (hostname.length > 253 || /[\s/]/.test(hostname))
        throw new TorusError(
          'TORUS_E_BAD_REQUEST',
          `hostname ${JSON.stringify(hostname)} is not a host name`,
        );
      const pub = describeSshPrivateKey(input.privateKey);
      const privateKey = input.privateKey.replace(/\r\n/g, '\n').trim() + '\n';
      const sealed = await cipher.encrypt(privateKey, aad.sshKey(projectId, pub.fingerprint, hostname));
      try {
        const r = await db.query<SshRow>(
          `INSERT INTO project_ssh_keys (project_id, fingerprint, fingerprint_sha256, hostname, public_key, private_key_ciphertext, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING fingerprint, fingerprint_sha256, hostname, public_key, private_key_ciphertext, created_at`,
          [projectId, pub.fingerprint, pub.fingerprintSha256, hostname, pub.publicKey, sealed, clock.now()],
        );
        return toSshKey(r.rows[0]!);
      } catch (err) {
        if (isUniqueViolation(err))
          throw new TorusError(
            'TORUS_E_CONFLICT',
            `the project already has the key ${pub.fingerprint}${hostname ? ` for ${hostname}` : ''}`,
          );
        throw err;
      }
    },

    async listSshKeys(projectId) {
      const r = await db.query<SshRow>(
        `SELECT fingerprint, fingerprint_sha256, hostname, public_key, private_key_ciphertext, created_at
         FROM project_ssh_keys WHERE project_id = $1 ORDER BY created_at, fingerprint, hostname`,
        [projectId],
      );
      return r.rows.map(toSshKey);
    },

    async deleteSshKey(projectId, fingerprint, hostname) {
      const fp = normalizeFingerprint(fingerprint);
      if (!fp) return 0;
      const column = fp.kind === 'md5' ? 'fingerprint' : 'fingerprint_sha256';
      const r = await db.query(
        `DELETE FROM project_ssh_keys WHERE project_id = $1 AND ${column} = $2 AND ($3::text IS NULL OR hostname = $3)`,
        [projectId, fp.value, hostname ?? null],
      );
      return r.rowCount;
    },

    async sshKeysForJob(projectId, fingerprints) {
      const r = await db.query<SshRow>(
        `SELECT fingerprint, fingerprint_sha256, hostname, public_key, private_key_ciphertext, created_at
         FROM project_ssh_keys WHERE project_id = $1 ORDER BY created_at, fingerprint, hostname`,
        [projectId],
      );
      let rows = r.rows;
      const missing: string[] = [];
      if (fingerprints && fingerprints.length > 0) {
        const wanted = new Set<string>();
        for (const raw of fingerprints) {
          const fp = normalizeFingerprint(raw);
          const hit =
            fp && rows.some((k) => (fp.kind === 'md5' ? k.fingerprint : k.fingerprint_sha256) === fp.value);
          if (!fp || !hit) missing.push(raw);
          else wanted.add(fp.value);
        }
        rows = rows.filter((k) => wanted.has(k.fingerprint) || wanted.has(k.fingerprint_sha256));
      }
      const keys = await Promise.all(
        rows.map(async (k) => ({
          fingerprint: k.fingerprint,
          fingerprintSha256: k.fingerprint_sha256,
          hostname: k.hostname,
          privateKey: await cipher.decrypt(
            k.private_key_ciphertext,
            aad.sshKey(projectId, k.fingerprint, k.hostname),
          ),
        })),
      );
      return { keys, missing };
    },

    async jobEnvironment(projectId, orgId, contextNames) {
      const environment: Record<string, string> = {};
      for (const v of await store.listProjectEnvVars(projectId)) environment[v.name] = v.value;
      const missingContexts: string[] = [];
      // CircleCI applies contexts in the order the job lists them: later contexts override earlier ones,
      // and every context overrides project variables.
      for (const name of contextNames) {
        const ctx = await store.getContextByName(orgId, name);
        if (!ctx) {
          if (!missingContexts.includes(name)) missingContexts.push(name);
          continue;
        }
        const r = await db.query<{ name: string; ciphertext: string }>(
          'SELECT name, ciphertext FROM context_env_vars WHERE context_id = $1 ORDER BY name',
          [ctx.id],
        );
        for (const v of r.rows)
          environment[v.name] = await cipher.decrypt(v.ciphertext, aad.contextEnv(ctx.id, v.name));
      }
      const secrets = [...new Set(Object.values(environment).filter((v) => v !== ''))];
      return { environment, secrets, missingContexts };
    },
  };
  return store;
}

/**
 * Re-encrypts, in one transaction, every stored value not sealed under the cipher's active key.
 * Old keys stay in the keyring (values are read with them until this commits; backups need them).
 * If anything fails the transaction rolls back and every value stays readable under its old key.
 */
export async function rotateKey(db: Database, cipher: SecretCipher): Promise<{ reencrypted: number }> {
  const active = cipher.activeKeyId();
  return db.transaction(async (tx: Queryable) => {
    let reencrypted = 0;
    const projectVars = await tx.query<{ project_id: string; name: string; ciphertext: string }>(
      'SELECT project_id, name, ciphertext FROM project_env_vars ORDER BY project_id, name FOR UPDATE',
    );
    for (const v of projectVars.rows) {
      if (cipher.keyIdOf(v.ciphertext) === active) continue;
      const context = aad.projectEnv(v.project_id, v.name);
      const sealed = await cipher.encrypt(await cipher.decrypt(v.ciphertext, context), context);
      await tx.query('UPDATE project_env_vars SET ciphertext = $3 WHERE project_id = $1 AND name = $2', [
        v.project_id,
        v.name,
        sealed,
      ]);
      reencrypted++;
    }
    const contextVars = await tx.query<{ context_id: string; name: string; ciphertext: string }>(
      'SELECT context_id, name, ciphertext FROM context_env_vars ORDER BY context_id, name FOR UPDATE',
    );
    for (const v of contextVars.rows) {
      if (cipher.keyIdOf(v.ciphertext) === active) continue;
      const context = aad.contextEnv(v.context_id, v.name);
      const sealed = await cipher.encrypt(await cipher.decrypt(v.ciphertext, context), context);
      // updated_at is the variable's, not the ciphertext's: rotation leaves it alone
      await tx.query('UPDATE context_env_vars SET ciphertext = $3 WHERE context_id = $1 AND name = $2', [
        v.context_id,
        v.name,
        sealed,
      ]);
      reencrypted++;
    }
    const sshKeys = await tx.query<{
      project_id: string;
      fingerprint: string;
      hostname: string;
      private_key_ciphertext: string;
    }>(
      `SELECT project_id, fingerprint, hostname, private_key_ciphertext FROM project_ssh_keys
       ORDER BY project_id, fingerprint, hostname FOR UPDATE`,
    );
    for (const k of sshKeys.rows) {
      if (cipher.keyIdOf(k.private_key_ciphertext) === active) continue;
      const context = aad.sshKey(k.project_id, k.fingerprint, k.hostname);
      const sealed = await cipher.encrypt(await cipher.decrypt(k.private_key_ciphertext, context), context);
      await tx.query(
        'UPDATE project_ssh_keys SET private_key_ciphertext = $4 WHERE project_id = $1 AND fingerprint = $2 AND hostname = $3',
        [k.project_id, k.fingerprint, k.hostname, sealed],
      );
      reencrypted++;
    }
    return { reencrypted };
  });
}

/** How many stored values each key seals (the operator's check that rotation finished). */
export async function countSecretsByKey(
  db: Queryable,
  cipher: SecretCipher,
): Promise<Record<string, number>> {
  const r = await db.query<{ ciphertext: string }>(
    `SELECT ciphertext FROM project_env_vars UNION ALL SELECT ciphertext FROM context_env_vars
     UNION ALL SELECT private_key_ciphertext FROM project_ssh_keys`,
  );
  const counts: Record<string, number> = {};
  for (const row of r.rows) {
    const id = cipher.keyIdOf(row.ciphertext);
    counts[id] = (counts[id] ?? 0) + 1;
  }
  return counts;
}
