// The keyring cipher: what an operator and an attacker with the database would notice — the file
// it creates, values that only open with the right key and row, keys added without losing old values.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeyringCipher, openKeyring } from './index.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'torus-keyring-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('keyring file', () => {
  it('is created on first use in the data directory, readable by its owner only, and reused', async () => {
    const a = openKeyring({ dataDir: dir });
    const path = join(dir, 'keyring.json');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const sealed = await a.encrypt('hunter2-password', 'project-env:p:DB_PASSWORD');
    const b = openKeyring({ dataDir: dir });
    expect(b.activeKeyId()).toBe(a.activeKeyId());
    expect(await b.decrypt(sealed, 'project-env:p:DB_PASSWORD')).toBe('hunter2-password');
    const doc = JSON.parse(readFileSync(path, 'utf8')) as { active: string; keys: unknown[] };
    expect(doc.keys).toHaveLength(1);
    expect(doc.active).toBe(a.activeKeyId());
  });

  it('follows TORUS_KEYRING_FILE when given, and TORUS_KEYRING over both', async () => {
    const file = join(dir, 'elsewhere', 'ring.json');
    const fromFile = openKeyring({ dataDir: dir, keyringFile: file });
    expect(statSync(file).isFile()).toBe(true);
    const inline = openKeyring({ dataDir: dir, keyringFile: file, keyring: fromFile.toBase64() });
    expect(inline.source).toEqual({ kind: 'env', name: 'TORUS_KEYRING' });
    const sealed = await fromFile.encrypt('shared-by-replicas', 'c');
    expect(await inline.decrypt(sealed, 'c')).toBe('shared-by-replicas');
  });

  it('rejects a TORUS_KEYRING that is not a keyring, saying what to set', () => {
    expect(() => KeyringCipher.fromBase64('not base64 json')).toThrow(
      /TORUS_KEYRING is not base64-encoded JSON/,
    );
    const noActive = Buffer.from(JSON.stringify({ version: 1, active: 'x', keys: [] })).toString('base64');
    expect(() => KeyringCipher.fromBase64(noActive)).toThrow(/keys must be a non-empty list/);
  });
});

describe('sealing', () => {
  it('uses a fresh nonce per value, names the key, and never holds the plaintext', async () => {
    const k = openKeyring({ dataDir: dir });
    const one = await k.encrypt('s3cr3t-value', 'ctx');
    const two = await k.encrypt('s3cr3t-value', 'ctx');
    expect(one).not.toBe(two);
    expect(one.startsWith(`tk1:${k.activeKeyId()}:`)).toBe(true);
    expect(k.keyIdOf(one)).toBe(k.activeKeyId());
    expect(one).not.toContain('s3cr3t');
    expect(Buffer.from(one.split(':')[2]!, 'base64').toString('latin1')).not.toContain('s3cr3t');
  });

  it('binds a value to its row: moved to another row, or altered, it does not open', async () => {
    const k = openKeyring({ dataDir: dir });
    const sealed = await k.encrypt('value', 'project-env:a:TOKEN');
    await expect(k.decrypt(sealed, 'project-env:b:TOKEN')).rejects.toThrow(/failed authentication/);
    const bytes = Buffer.from(sealed.split(':')[2]!, 'base64');
    bytes[14]! ^= 1;
    const altered = `tk1:${k.activeKeyId()}:${bytes.toString('base64')}`;
    await expect(k.decrypt(altered, 'project-env:a:TOKEN')).rejects.toThrow(/failed authentication/);
    await expect(k.decrypt('plain text', 'x')).rejects.toThrow(/not in the keyring format/);
  });

  it('keeps an empty value and any unicode', async () => {
    const k = openKeyring({ dataDir: dir });
    for (const v of ['', 'ключ 🔑 with\nnewline'])
      expect(await k.decrypt(await k.encrypt(v, 'c'), 'c')).toBe(v);
  });
});

describe('adding a key', () => {
  it('makes it active, keeps the old ones readable, and other processes pick it up from the file', async () => {
    const server = openKeyring({ dataDir: dir });
    const old = await server.encrypt('before-rotation', 'c');
    const admin = openKeyring({ dataDir: dir });
    const id = admin.addKey();
    expect(admin.activeKeyId()).toBe(id);
    expect(statSync(join(dir, 'keyring.json')).mode & 0o777).toBe(0o600);
    const fresh = await admin.encrypt('after-rotation', 'c');
    expect(await admin.decrypt(old, 'c')).toBe('before-rotation');
    // the server read the file before the key existed: it re-reads it on an unknown key id
    expect(await server.decrypt(fresh, 'c')).toBe('after-rotation');
    expect(server.keyIds()).toHaveLength(2);
    // and seals new values under the new key without a restart
    expect(server.keyIdOf(await server.encrypt('later', 'c'))).toBe(id);
  });

  it('says which key is missing when the keyring is not the one values were sealed with', async () => {
    const a = openKeyring({ dataDir: join(dir, 'a') });
    const b = openKeyring({ dataDir: join(dir, 'b') });
    const sealed = await a.encrypt('v', 'c');
    await expect(b.decrypt(sealed, 'c')).rejects.toThrow(`encrypted under key ${a.activeKeyId()}`);
  });
});
