// SSH private keys a user adds to a project: their public key in OpenSSH's wire format and its two
// fingerprints (MD5 colon-hex, as CircleCI lists them and `add_ssh_keys` names them, and
// `SHA256:…`, as ssh-keygen -l prints them). Reads PEM (PKCS#1, PKCS#8, SEC1) through node:crypto
// and the OpenSSH format by reading its public-key section (no decryption needed for that).
import { createHash, createPrivateKey, createPublicKey, type JsonWebKey } from 'node:crypto';
import { TorusError } from '../ops/index.js';

export interface SshPublicKey {
  /** 'ssh-rsa AAAA…' */
  publicKey: string;
  /** 'aa:bb:…' (MD5) */
  fingerprint: string;
  /** 'SHA256:…' */
  fingerprintSha256: string;
}

const MAX_PRIVATE_KEY_CHARS = 16_384;
const OPENSSH_MAGIC = 'openssh-key-v1\0';
const EC_CURVES: Record<string, string> = { 'P-256': 'nistp256', 'P-384': 'nistp384', 'P-521': 'nistp521' };

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function sshMpint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const trimmed = b.subarray(i);
  return sshString(trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function b64url(s: string | undefined): Buffer {
  return Buffer.from(s ?? '', 'base64url');
}

function blobFromJwk(jwk: JsonWebKey): Buffer {
  if (jwk.kty === 'RSA')
    return Buffer.concat([sshString('ssh-rsa'), sshMpint(b64url(jwk.e)), sshMpint(b64url(jwk.n))]);
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519')
    return Buffer.concat([sshString('ssh-ed25519'), sshString(b64url(jwk.x))]);
  if (jwk.kty === 'EC' && jwk.crv && EC_CURVES[jwk.crv]) {
    const curve = EC_CURVES[jwk.crv]!;
    const point = Buffer.concat([Buffer.from([4]), b64url(jwk.x), b64url(jwk.y)]);
    return Buffer.concat([sshString(`ecdsa-sha2-${curve}`), sshString(curve), sshString(point)]);
  }
  throw new TorusError(
    'TORUS_E_BAD_REQUEST',
    `unsupported SSH key type ${jwk.kty}${jwk.crv ? ` (${jwk.crv})` : ''}: use an RSA, ECDSA or Ed25519 key`,
  );
}

function blobFromOpenSsh(pem: string): Buffer {
  const body = pem.replace(/-----(BEGIN|END) OPENSSH PRIVATE KEY-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(body, 'base64');
  let at = OPENSSH_MAGIC.length;
  const bad = () =>
    new TorusError('TORUS_E_BAD_REQUEST', 'the private key is not a valid OpenSSH private key');
  if (buf.subarray(0, at).toString('latin1') !== OPENSSH_MAGIC) throw bad();
  const read = (): Buffer => {
    if (at + 4 > buf.length) throw bad();
    const len = buf.readUInt32BE(at);
    if (at + 4 + len > buf.length) throw bad();
    const out = buf.subarray(at + 4, at + 4 + len);
    at += 4 + len;
    return out;
  };
  const cipherName = read().toString('latin1');
  read(); // kdf name
  read(); // kdf options
  if (at + 4 > buf.length) throw bad();
  const count = buf.readUInt32BE(at);
  at += 4;
  if (count !== 1) throw bad();
  const blob = read();
  if (cipherName !== 'none') {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'the private key is protected by a passphrase; jobs cannot type one: add a key without a passphrase',
    );
  }
  return blob;
}

/** The public key and fingerprints of a private key (PEM or OpenSSH format, no passphrase). */
export function describeSshPrivateKey(privateKey: string): SshPublicKey {
  if (privateKey.length > MAX_PRIVATE_KEY_CHARS)
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `the private key is longer than ${MAX_PRIVATE_KEY_CHARS} characters`,
    );
  const text = privateKey.replace(/\r\n/g, '\n').trim();
  let blob: Buffer;
  if (text.includes('BEGIN OPENSSH PRIVATE KEY')) {
    blob = blobFromOpenSsh(text);
  } else {
    let jwk: JsonWebKey;
    try {
      jwk = createPublicKey(createPrivateKey({ key: text, format: 'pem' })).export({ format: 'jwk' });
    } catch (err) {
      const msg = (err as Error).message;
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        /passphrase/i.test(msg)
          ? 'the private key is protected by a passphrase; jobs cannot type one: add a key without a passphrase'
          : 'private_key is not a PEM or OpenSSH private key (paste the whole file, BEGIN and END lines included)',
      );
    }
    blob = blobFromJwk(jwk);
  }
  const type = blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1');
  return {
    publicKey: `${type} ${blob.toString('base64')}`,
    fingerprint: createHash('md5')
      .update(blob)
      .digest('hex')
      .replace(/(..)(?!$)/g, '$1:'),
    fingerprintSha256: `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
  };
}

/** 'aa:bb:…', 'AABB…' (no colons), 'MD5:aa:bb:…' or 'SHA256:…' → the stored form and which column holds it */
export function normalizeFingerprint(raw: string): { kind: 'md5' | 'sha256'; value: string } | null {
  const s = raw.trim();
  if (/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(s)) return { kind: 'sha256', value: s.replace(/=$/, '') };
  const hex = s.replace(/^MD5:/i, '').replace(/:/g, '').toLowerCase();
  if (/^[0-9a-f]{32}$/.test(hex)) return { kind: 'md5', value: hex.replace(/(..)(?!$)/g, '$1:') };
  return null;
}

/**
 * The fingerprints an `add_ssh_keys` step names (`fingerprints:` as a list or, as some configs
 * write it, a single string); an empty list means every key of the project.
 */
export function addSshKeysFingerprints(args: Record<string, unknown>): string[] {
  const raw = args.fingerprints;
  const list = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : [];
  return list
    .filter((f): f is string | number => typeof f === 'string' || typeof f === 'number')
    .map((f) => String(f).trim())
    .filter((f) => f !== '');
}
