// The keyring SecretCipher: AES-256-GCM with a random 12-byte nonce per value, the key id written
// into every sealed value, keys kept outside the database (a 0600 file in the data directory, a
// file the operator names, or base64 JSON in TORUS_KEYRING for the scaled-out shape).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { TorusError, type Settings } from '../ops/index.js';

/**
 * Encrypts secret values at rest. `context` names the row a value belongs to (e.g.
 * `project-env:<project id>:<name>`) and is bound to the ciphertext (GCM additional data), so a
 * sealed value copied onto another row does not decrypt.
 */
export interface SecretCipher {
  readonly kind: 'keyring';
  encrypt(plaintext: string, context: string): Promise<string>;
  decrypt(sealed: string, context: string): Promise<string>;
  /** the key new values are sealed under */
  activeKeyId(): string;
  /** the key a sealed value was sealed under */
  keyIdOf(sealed: string): string;
}

/** the keyring's JSON shape, in the file and (base64) in TORUS_KEYRING */
export interface KeyringDocument {
  version: 1;
  active: string;
  keys: Array<{ id: string; key: string; created_at: string }>;
}

export const KEYRING_FILE_NAME = 'keyring.json';
const SEALED_PREFIX = 'tk1';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export type KeyringSource = { kind: 'file'; path: string } | { kind: 'env'; name: 'TORUS_KEYRING' };

export class KeyringCipher implements SecretCipher {
  readonly kind = 'keyring' as const;
  private keys = new Map<string, Buffer>();
  private created = new Map<string, string>();
  private active = '';

  private constructor(
    readonly source: KeyringSource,
    doc: KeyringDocument,
  ) {
    this.load(doc);
  }

  /** base64 JSON, as TORUS_KEYRING holds it */
  static fromBase64(value: string): KeyringCipher {
    let doc: unknown;
    try {
      doc = JSON.parse(Buffer.from(value.trim(), 'base64').toString('utf8'));
    } catch (err) {
      throw new TorusError(
        'TORUS_E_SETTINGS',
        `TORUS_KEYRING is not base64-encoded JSON: ${(err as Error).message}`,
        'set it to the value `torus admin rotate-key --print-keyring` prints',
      );
    }
    return new KeyringCipher({ kind: 'env', name: 'TORUS_KEYRING' }, checkDocument(doc, 'TORUS_KEYRING'));
  }

  /** Reads the keyring file, creating it (mode 0600, one fresh key) when it does not exist. */
  static openFile(path: string): KeyringCipher {
    if (!existsSync(path)) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      try {
        writeNew(path, JSON.stringify(newDocument(), null, 2) + '\n');
      } catch (err) {
        // another process created it between the check and the write: use theirs
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    const stamp = fileStamp(path);
    const keyring = new KeyringCipher({ kind: 'file', path }, readDocument(path));
    keyring.loadedStamp = stamp;
    return keyring;
  }

  activeKeyId(): string {
    return this.active;
  }

  keyIds(): string[] {
    return [...this.keys.keys()];
  }

  keyIdOf(sealed: string): string {
    return parseSealed(sealed).keyId;
  }

  async encrypt(plaintext: string, context: string): Promise<string> {
    this.reloadIfChanged();
    const key = this.keys.get(this.active)!;
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const sealed = Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
    return `${SEALED_PREFIX}:${this.active}:${sealed}`;
  }

  async decrypt(sealed: string, context: string): Promise<string> {
    const { keyId, bytes } = parseSealed(sealed);
    let key = this.keys.get(keyId);
    // Another process (torus admin rotate-key, another replica) may have added the key since we read the file.
    if (!key && this.source.kind === 'file') {
      this.loadFile();
      key = this.keys.get(keyId);
    }
    if (!key) {
      throw new TorusError(
        'TORUS_E_SETTINGS',
        `a secret is encrypted under key ${keyId}, which ${describe(this.source)} does not hold`,
        'every server must use the same keyring; restore the keyring that was in use when the secret was stored',
      );
    }
    const nonce = bytes.subarray(0, NONCE_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([
        decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      // GCM authentication failed: the value was altered or moved to another row; the cause is not secret
      throw new TorusError(
        'TORUS_E_SETTINGS',
        `a secret stored for ${context.split(':')[0]} failed authentication under key ${keyId}: it was altered in the database, or the keyring's key ${keyId} is not the one it was sealed with`,
      );
    }
  }

  /**
   * Adds a fresh key and makes it the active one; old keys stay (values sealed under them, and
   * backups taken before, remain readable). A file keyring is rewritten atomically (0600); an
   * environment keyring changes in memory only (print `toBase64()` and deploy it).
   */
  addKey(): string {
    this.loadFile();
    const id = newKeyId(this.keys);
    const doc = this.document();
    doc.keys.push({
      id,
      key: randomBytes(KEY_BYTES).toString('base64'),
      created_at: new Date().toISOString(),
    });
    doc.active = id;
    if (this.source.kind === 'file') {
      const tmp = `${this.source.path}.${process.pid}.tmp`;
      writeNew(tmp, JSON.stringify(doc, null, 2) + '\n');
      renameSync(tmp, this.source.path);
      this.loadFile();
    } else {
      this.load(doc);
    }
    return id;
  }

  toBase64(): string {
    return Buffer.from(JSON.stringify(this.document())).toString('base64');
  }

  private document(): KeyringDocument {
    return {
      version: 1,
      active: this.active,
      keys: [...this.keys].map(([id, key]) => ({
        id,
        key: key.toString('base64'),
        created_at: this.created.get(id) ?? new Date().toISOString(),
      })),
    };
  }

  /**
   * A long-running server must seal new values under the key `torus admin rotate-key` just added,
   * not the one it started with: the file's change time is checked before sealing (writes are rare).
   */
  private reloadIfChanged(): void {
    if (this.source.kind !== 'file') return;
    const stamp = fileStamp(this.source.path);
    if (stamp !== this.loadedStamp) this.loadFile();
  }

  /** reads the file; its stamp is taken first, so a change made while reading is seen next time */
  private loadFile(): void {
    if (this.source.kind !== 'file') return;
    this.loadedStamp = fileStamp(this.source.path);
    this.load(readDocument(this.source.path));
  }

  private loadedStamp = '';

  private load(doc: KeyringDocument): void {
    this.keys = new Map(doc.keys.map((k) => [k.id, Buffer.from(k.key, 'base64')]));
    this.created = new Map(doc.keys.map((k) => [k.id, k.created_at]));
    this.active = doc.active;
  }
}

/** The keyring the settings name: TORUS_KEYRING, else TORUS_KEYRING_FILE, else `<dataDir>/keyring.json`. */
export function openKeyring(settings: Pick<Settings, 'dataDir' | 'keyring' | 'keyringFile'>): KeyringCipher {
  if (settings.keyring) return KeyringCipher.fromBase64(settings.keyring);
  return KeyringCipher.openFile(settings.keyringFile ?? join(settings.dataDir, KEYRING_FILE_NAME));
}

function describe(source: KeyringSource): string {
  return source.kind === 'file' ? `the keyring file ${source.path}` : 'TORUS_KEYRING';
}

function newKeyId(existing: Map<string, Buffer>): string {
  for (;;) {
    const id = `k${randomBytes(4).toString('hex')}`;
    if (!existing.has(id)) return id;
  }
}

function newDocument(): KeyringDocument {
  const id = newKeyId(new Map());
  return {
    version: 1,
    active: id,
    keys: [{ id, key: randomBytes(KEY_BYTES).toString('base64'), created_at: new Date().toISOString() }],
  };
}

/** creates a file that must not exist yet, readable by its owner only */
function writeNew(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

function fileStamp(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch (err) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      `cannot read the keyring file ${path}: ${(err as Error).message}`,
    );
  }
}

function readDocument(path: string): KeyringDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      `cannot read the keyring file ${path}: ${(err as Error).message}`,
    );
  }
  return checkDocument(doc, path);
}

function checkDocument(raw: unknown, where: string): KeyringDocument {
  const bad = (why: string) =>
    new TorusError('TORUS_E_SETTINGS', `the keyring in ${where} is not valid: ${why}`);
  if (!raw || typeof raw !== 'object') throw bad('expected a JSON object {version, active, keys}');
  const doc = raw as Partial<KeyringDocument>;
  if (doc.version !== 1) throw bad(`unknown version ${JSON.stringify(doc.version)}`);
  if (!Array.isArray(doc.keys) || doc.keys.length === 0) throw bad('keys must be a non-empty list');
  const seen = new Set<string>();
  for (const k of doc.keys) {
    if (!k || typeof k.id !== 'string' || !KEY_ID_RE.test(k.id)) throw bad(`key id ${JSON.stringify(k?.id)}`);
    if (seen.has(k.id)) throw bad(`key ${k.id} is listed twice`);
    seen.add(k.id);
    if (typeof k.key !== 'string' || Buffer.from(k.key, 'base64').length !== KEY_BYTES)
      throw bad(`key ${k.id} must be ${KEY_BYTES} bytes, base64-encoded`);
  }
  if (typeof doc.active !== 'string' || !seen.has(doc.active))
    throw bad(`active key ${JSON.stringify(doc.active)} is not among the keys`);
  return doc as KeyringDocument;
}

function parseSealed(sealed: string): { keyId: string; bytes: Buffer } {
  const parts = sealed.split(':');
  const bytes = parts.length === 3 ? Buffer.from(parts[2]!, 'base64') : Buffer.alloc(0);
  if (
    parts[0] !== SEALED_PREFIX ||
    !KEY_ID_RE.test(parts[1] ?? '') ||
    bytes.length < NONCE_BYTES + TAG_BYTES
  ) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      'a stored secret is not in the keyring format (tk1:<key id>:<data>)',
    );
  }
  return { keyId: parts[1]!, bytes };
}
