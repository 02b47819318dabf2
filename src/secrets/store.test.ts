// The secret store on a real database: project variables, contexts, SSH keys, the environment a job
// gets (CircleCI's precedence), what the database holds (never a clear value) and key rotation.
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../storage/index.js';
import { PgliteDatabase } from '../storage/index.js';
import { randomIds, systemClock } from '../ops/index.js';
import { databaseKinds, openTestDatabase } from '../../test/harness/db.js';
import {
  countSecretsByKey,
  createSecretStore,
  KeyringCipher,
  maskEnvVarValue,
  openKeyring,
  rotateKey,
  rotateKeyCommand,
  type SecretCipher,
  type SecretStore,
} from './index.js';

const SECRET_VALUES = ['pr0ject-Secret-Value', 'c0ntext-A-secret', 'c0ntext-B-secret', 'sh0rt'];

/** the fingerprint comparisons with OpenSSH's own ssh-keygen are skipped (with a line) where it is absent */
function hasSshKeygen(): boolean {
  const found = spawnSync('ssh-keygen', ['-?'], { stdio: 'ignore' }).error === undefined;
  if (!found) console.warn('SKIP ssh-keygen comparisons: openssh-client is not installed');
  return found;
}

describe.each(databaseKinds())('secret store on %s', (kind) => {
  let db: Database;
  let dir: string;
  let keyring: KeyringCipher;
  let store: SecretStore;
  let orgId: string;
  let projectId: string;

  beforeAll(async () => {
    db = await openTestDatabase(kind);
    dir = mkdtempSync(join(tmpdir(), 'torus-secrets-'));
  });
  afterAll(async () => {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await db.query(
      'TRUNCATE project_env_vars, context_env_vars, contexts, project_ssh_keys, projects, organizations CASCADE',
    );
    rmSync(join(dir, 'keyring.json'), { force: true });
    keyring = openKeyring({ dataDir: dir });
    store = createSecretStore({ db, clock: systemClock, ids: randomIds }, keyring);
    orgId = randomUUID();
    projectId = randomUUID();
    await db.query(`INSERT INTO organizations (id, name, slug) VALUES ($1, 'acme', 'circleci/acme')`, [
      orgId,
    ]);
    await db.query(
      `INSERT INTO projects (id, org_id, name, slug, vcs_url) VALUES ($1, $2, 'app', 'circleci/acme/app', 'file:///x')`,
      [projectId, orgId],
    );
  });

  describe('project environment variables', () => {
    it('are set, replaced, listed by name, read and deleted', async () => {
      await store.setProjectEnvVar(projectId, 'TOKEN', 'first-value');
      await store.setProjectEnvVar(projectId, 'A_VAR', 'alpha');
      await store.setProjectEnvVar(projectId, 'TOKEN', 'second-value');
      expect((await store.listProjectEnvVars(projectId)).map((v) => [v.name, v.value])).toEqual([
        ['A_VAR', 'alpha'],
        ['TOKEN', 'second-value'],
      ]);
      expect((await store.listProjectEnvVars(projectId, { offset: 1, limit: 1 })).map((v) => v.name)).toEqual(
        ['TOKEN'],
      );
      expect((await store.getProjectEnvVar(projectId, 'TOKEN'))?.value).toBe('second-value');
      expect(await store.deleteProjectEnvVar(projectId, 'TOKEN')).toBe(true);
      expect(await store.deleteProjectEnvVar(projectId, 'TOKEN')).toBe(false);
      expect(await store.getProjectEnvVar(projectId, 'TOKEN')).toBeNull();
    });

    it('refuse names CircleCI refuses, saying the rule', async () => {
      for (const bad of ['1ABC', 'MY-VAR', 'A B', '', 'É'])
        await expect(store.setProjectEnvVar(projectId, bad, 'v')).rejects.toThrow(
          bad === '' ? /name is required/ : /letters, digits and underscores, not starting with a digit/,
        );
      await expect(store.setProjectEnvVar(projectId, 'X'.repeat(301), 'v')).rejects.toThrow(/at most 300/);
      await expect(store.setProjectEnvVar(projectId, 'BIG', 'x'.repeat(32_769))).rejects.toThrow(
        /at most 32768/,
      );
      await store.setProjectEnvVar(projectId, '_ok_1', '');
      expect((await store.getProjectEnvVar(projectId, '_ok_1'))?.value).toBe('');
    });

    it('mask as CircleCI shows them, never revealing a whole short value', () => {
      expect(maskEnvVarValue('supersecret1234')).toBe('xxxx1234');
      expect(maskEnvVarValue('abcd')).toBe('xxxx');
      expect(maskEnvVarValue('')).toBe('xxxx');
    });
  });

  describe('contexts', () => {
    it('have names unique per organization and lose their variables when deleted', async () => {
      const ctx = await store.createContext(orgId, 'deploy');
      await expect(store.createContext(orgId, 'deploy')).rejects.toThrow(
        /already has a context named "deploy"/,
      );
      await expect(store.createContext(orgId, ' padded')).rejects.toThrow(
        /leading, trailing or vertical whitespace/,
      );
      await expect(store.createContext(orgId, '   ')).rejects.toThrow(/non-whitespace/);
      await store.createContext(orgId, 'aws');
      expect((await store.listContexts(orgId)).map((c) => c.name)).toEqual(['aws', 'deploy']);
      await store.setContextEnvVar(ctx.id, 'KEY', 'value-1');
      expect(await store.deleteContext(ctx.id)).toBe(true);
      expect(await store.getContext(ctx.id)).toBeNull();
      const n = await db.query('SELECT 1 FROM context_env_vars');
      expect(n.rows).toHaveLength(0);
    });

    it('update a variable in place (created_at kept, updated_at moves) and list names only', async () => {
      const ctx = await store.createContext(orgId, 'c');
      const first = await store.setContextEnvVar(ctx.id, 'PASS', 'one-value');
      await new Promise((r) => setTimeout(r, 5));
      const second = await store.setContextEnvVar(ctx.id, 'PASS', 'two-value');
      expect(second.createdAt).toEqual(first.createdAt);
      expect(second.updatedAt.getTime()).toBeGreaterThan(first.updatedAt.getTime());
      expect(await store.listContextEnvVars(ctx.id)).toEqual([
        { contextId: ctx.id, name: 'PASS', createdAt: first.createdAt, updatedAt: second.updatedAt },
      ]);
      await expect(store.setContextEnvVar(randomUUID(), 'PASS', 'x')).rejects.toThrow(/Context not found/);
      expect(await store.deleteContextEnvVar(ctx.id, 'PASS')).toBe(true);
      expect(await store.listContextEnvVars(ctx.id)).toEqual([]);
    });

    it('hold at most 100 variables each', async () => {
      const ctx = await store.createContext(orgId, 'full');
      for (let i = 0; i < 100; i++) await store.setContextEnvVar(ctx.id, `V${i}`, 'x');
      await expect(store.setContextEnvVar(ctx.id, 'ONE_MORE', 'x')).rejects.toThrow(
        /100 environment variables/,
      );
      await store.setContextEnvVar(ctx.id, 'V7', 'replacing is fine');
    });
  });

  describe('the environment of a job', () => {
    it('is project variables overridden by contexts, later contexts over earlier ones', async () => {
      await store.setProjectEnvVar(projectId, 'SHARED', 'from-project');
      await store.setProjectEnvVar(projectId, 'ONLY_PROJECT', SECRET_VALUES[0]!);
      const a = await store.createContext(orgId, 'ctx-a');
      const b = await store.createContext(orgId, 'ctx-b');
      await store.setContextEnvVar(a.id, 'SHARED', SECRET_VALUES[1]!);
      await store.setContextEnvVar(a.id, 'ONLY_A', 'a-only-value');
      await store.setContextEnvVar(b.id, 'SHARED', SECRET_VALUES[2]!);

      const ab = await store.jobEnvironment(projectId, orgId, ['ctx-a', 'ctx-b']);
      expect(ab.environment).toEqual({
        SHARED: SECRET_VALUES[2],
        ONLY_PROJECT: SECRET_VALUES[0],
        ONLY_A: 'a-only-value',
      });
      expect(ab.secrets.sort()).toEqual([SECRET_VALUES[2], SECRET_VALUES[0], 'a-only-value'].sort());
      expect(ab.missingContexts).toEqual([]);

      const ba = await store.jobEnvironment(projectId, orgId, ['ctx-b', 'ctx-a']);
      expect(ba.environment.SHARED).toBe(SECRET_VALUES[1]);

      const none = await store.jobEnvironment(projectId, orgId, []);
      expect(none.environment.SHARED).toBe('from-project');
    });

    it('reports contexts the organization does not have', async () => {
      const other = randomUUID();
      await db.query(`INSERT INTO organizations (id, name, slug) VALUES ($1, 'other', 'circleci/other')`, [
        other,
      ]);
      await store.createContext(other, 'theirs');
      const r = await store.jobEnvironment(projectId, orgId, ['theirs', 'nope', 'nope']);
      expect(r.missingContexts).toEqual(['theirs', 'nope']);
    });
  });

  describe('project SSH keys', () => {
    it('are found by the MD5 and SHA256 fingerprints ssh-keygen prints', async (t) => {
      if (!hasSshKeygen()) t.skip();
      const keyFile = join(dir, 'id_test');
      rmSync(keyFile, { force: true });
      rmSync(`${keyFile}.pub`, { force: true });
      execFileSync('ssh-keygen', ['-t', 'ed25519', '-N', '', '-q', '-f', keyFile]);
      const md5 = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', keyFile], { encoding: 'utf8' }).split(
        ' ',
      )[1]!;
      const sha = execFileSync('ssh-keygen', ['-l', '-f', keyFile], { encoding: 'utf8' }).split(' ')[1]!;
      const privateKey = readFileSync(keyFile, 'utf8');
      const added = await store.addSshKey(projectId, { privateKey, hostname: 'github.com' });
      expect(`MD5:${added.fingerprint}`).toBe(md5);
      expect(added.fingerprintSha256).toBe(sha);
      expect(added.publicKey).toBe(readFileSync(`${keyFile}.pub`, 'utf8').split(' ').slice(0, 2).join(' '));
      await expect(store.addSshKey(projectId, { privateKey, hostname: 'github.com' })).rejects.toThrow(
        /already has the key/,
      );

      for (const fp of [added.fingerprint, sha, md5]) {
        const job = await store.sshKeysForJob(projectId, [fp]);
        expect(job.missing).toEqual([]);
        expect(job.keys.map((k) => k.privateKey)).toEqual([privateKey.trim() + '\n']);
      }
      expect((await store.sshKeysForJob(projectId, ['aa:bb'])).missing).toEqual(['aa:bb']);
      expect(await store.deleteSshKey(projectId, sha)).toBe(1);
      expect(await store.listSshKeys(projectId)).toEqual([]);
    });

    it('read PEM RSA and ECDSA keys, and refuse what is not a key', async (t) => {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
        type: 'pkcs1',
        format: 'pem',
      });
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
        type: 'sec1',
        format: 'pem',
      });
      const a = await store.addSshKey(projectId, { privateKey: rsa.toString() });
      const b = await store.addSshKey(projectId, { privateKey: ec.toString() });
      expect(a.publicKey).toMatch(/^ssh-rsa AAAAB3NzaC1yc2E/);
      expect(b.publicKey).toMatch(/^ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY/);
      expect(a.fingerprint).toMatch(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
      expect((await store.sshKeysForJob(projectId)).keys).toHaveLength(2);
      await expect(store.addSshKey(projectId, { privateKey: 'hello' })).rejects.toThrow(
        /not a PEM or OpenSSH private key/,
      );
      if (!hasSshKeygen()) return t.skip();
      // ssh-keygen agrees on the RSA fingerprint
      const f = join(dir, 'rsa.pem');
      execFileSync('sh', ['-c', `umask 077; cat > ${f}`], { input: rsa });
      const md5 = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', f], { encoding: 'utf8' }).split(
        ' ',
      )[1];
      expect(md5).toBe(`MD5:${a.fingerprint}`);
    });
  });

  it('never puts a clear value in the database', async () => {
    await store.setProjectEnvVar(projectId, 'P', SECRET_VALUES[0]!);
    const ctx = await store.createContext(orgId, 'ctx');
    await store.setContextEnvVar(ctx.id, 'C', SECRET_VALUES[1]!);
    await store.setContextEnvVar(ctx.id, 'S', SECRET_VALUES[3]!);
    const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await store.addSshKey(projectId, { privateKey: pem });
    const rows = await db.query<{ t: string }>(
      `SELECT t::text AS t FROM project_env_vars t UNION ALL SELECT c::text FROM context_env_vars c
       UNION ALL SELECT k::text FROM project_ssh_keys k`,
    );
    const text = rows.rows.map((r) => r.t).join('\n');
    const pemBody = pem.split('\n')[1]!;
    for (const v of [...SECRET_VALUES.slice(0, 2), SECRET_VALUES[3]!, pemBody]) expect(text).not.toContain(v);
    if (db instanceof PgliteDatabase) {
      // the bytes of the whole data directory (tables, WAL), as a backup would copy them
      const bytes = Buffer.from(await (await db.dump()).arrayBuffer());
      for (const v of [...SECRET_VALUES.slice(0, 2), pemBody])
        expect(bytes.includes(Buffer.from(v))).toBe(false);
      expect(bytes.includes(Buffer.from(keyring.activeKeyId()))).toBe(true);
    }
  });

  describe('key rotation', () => {
    async function seed(): Promise<void> {
      await store.setProjectEnvVar(projectId, 'P1', 'project-one');
      await store.setProjectEnvVar(projectId, 'P2', 'project-two');
      const ctx = await store.createContext(orgId, 'ctx');
      await store.setContextEnvVar(ctx.id, 'C1', 'context-one');
      await store.setContextEnvVar(ctx.id, 'C2', 'context-two');
      const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
      await store.addSshKey(projectId, { privateKey: pem.toString() });
    }
    async function readAll(s: SecretStore) {
      const env = await s.jobEnvironment(projectId, orgId, ['ctx']);
      const ssh = await s.sshKeysForJob(projectId);
      return { env: env.environment, ssh: ssh.keys.map((k) => k.privateKey) };
    }

    it('re-encrypts everything under the new key and loses nothing', async () => {
      await seed();
      const before = await readAll(store);
      const oldKey = keyring.activeKeyId();
      const newKey = keyring.addKey();
      expect(await countSecretsByKey(db, keyring)).toEqual({ [oldKey]: 5 });
      expect(await rotateKey(db, keyring)).toEqual({ reencrypted: 5 });
      expect(await countSecretsByKey(db, keyring)).toEqual({ [newKey]: 5 });
      expect(await readAll(store)).toEqual(before);
      // a server that opened the keyring before the rotation reads the new values too
      const fresh = createSecretStore(
        { db, clock: systemClock, ids: randomIds },
        openKeyring({ dataDir: dir }),
      );
      expect(await readAll(fresh)).toEqual(before);
      expect(await rotateKey(db, keyring)).toEqual({ reencrypted: 0 });
    });

    it('rolls back when it fails half-way: every value still opens under its old key', async () => {
      await seed();
      const before = await readAll(store);
      const oldKey = keyring.activeKeyId();
      keyring.addKey();
      let encrypts = 0;
      const crashing: SecretCipher = {
        kind: 'keyring',
        activeKeyId: () => keyring.activeKeyId(),
        keyIdOf: (s) => keyring.keyIdOf(s),
        decrypt: (s, c) => keyring.decrypt(s, c),
        encrypt: async (p, c) => {
          if (++encrypts === 3) throw new Error('simulated crash in the middle of the rotation');
          return keyring.encrypt(p, c);
        },
      };
      await expect(rotateKey(db, crashing)).rejects.toThrow(/simulated crash/);
      expect(await countSecretsByKey(db, keyring)).toEqual({ [oldKey]: 5 });
      expect(await readAll(store)).toEqual(before);
      // running it again finishes the job
      expect(await rotateKey(db, keyring)).toEqual({ reencrypted: 5 });
      expect(await readAll(store)).toEqual(before);
    });

    it('torus admin rotate-key adds a key to the file and re-encrypts; TORUS_KEYRING takes two steps', async () => {
      await seed();
      const before = await readAll(store);
      const lines: string[] = [];
      const settings = { dataDir: dir } as Parameters<typeof rotateKeyCommand>[0]['settings'];
      const result = await rotateKeyCommand({ settings, db, print: (l) => lines.push(l) });
      expect(result?.reencrypted).toBe(5);
      expect(result?.byKey).toEqual({ [result!.activeKeyId]: 5 });
      expect(lines.join('\n')).toMatch(/re-encrypted 5 secret value\(s\) under key k[0-9a-f]{8}/);
      expect(await readAll(store)).toEqual(before);

      const envSettings = { ...settings, keyring: openKeyring({ dataDir: dir }).toBase64() };
      await expect(rotateKeyCommand({ settings: envSettings, db, print: () => {} })).rejects.toThrow(
        /cannot change/,
      );
      const printed: string[] = [];
      await rotateKeyCommand({
        settings: envSettings,
        db,
        printKeyring: true,
        print: (l) => printed.push(l),
      });
      const next = printed.find((l) => l.startsWith('TORUS_KEYRING='))!.slice('TORUS_KEYRING='.length);
      const r2 = await rotateKeyCommand({
        settings: { ...settings, keyring: next },
        db,
        reencryptOnly: true,
        print: () => {},
      });
      expect(r2?.reencrypted).toBe(5);
      const envStore = createSecretStore(
        { db, clock: systemClock, ids: randomIds },
        KeyringCipher.fromBase64(next),
      );
      expect(await readAll(envStore)).toEqual(before);
    });
  });
});
