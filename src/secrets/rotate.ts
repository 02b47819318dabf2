// `torus admin rotate-key`: adds a fresh key to the keyring and re-encrypts every stored secret under
// it. Runs against the database and keyring directly (not through a server's API): in the embedded
// shape stop the server first (PGlite has one connection); in the scaled-out shape run it anywhere
// that has TORUS_DATABASE_URL and the keyring.
import type { Database } from '../storage/index.js';
import { openDatabase } from '../storage/index.js';
import { TorusError, type Settings } from '../ops/index.js';
import { openKeyring } from './keyring.js';
import { countSecretsByKey, rotateKey } from './store.js';

export interface RotateKeyOptions {
  settings: Settings;
  /** re-encrypt under the keyring's active key without adding one (the second step with TORUS_KEYRING) */
  reencryptOnly?: boolean;
  /** with TORUS_KEYRING: print a new keyring value (old keys kept, a new active key) and change nothing */
  printKeyring?: boolean;
  print(line: string): void;
  /** an open database (tests); otherwise the configured one is opened and closed */
  db?: Database;
}

export interface RotateKeyResult {
  activeKeyId: string;
  reencrypted: number;
  /** stored values per key id after rotation */
  byKey: Record<string, number>;
}

export async function rotateKeyCommand(opts: RotateKeyOptions): Promise<RotateKeyResult | undefined> {
  const { settings, print } = opts;
  const keyring = openKeyring(settings);
  const where = keyring.source.kind === 'file' ? keyring.source.path : 'TORUS_KEYRING';

  if (opts.printKeyring) {
    if (keyring.source.kind === 'file') {
      throw new TorusError(
        'TORUS_E_SETTINGS',
        `--print-keyring is for a keyring given in TORUS_KEYRING; this server's keyring is the file ${where}`,
        'run `torus admin rotate-key` without it',
      );
    }
    const id = keyring.addKey();
    print(`new keyring with active key ${id} (the old keys are kept). Set it on every server:`);
    print(`TORUS_KEYRING=${keyring.toBase64()}`);
    print('then restart them and run `torus admin rotate-key --reencrypt-only` with it.');
    return undefined;
  }
  if (keyring.source.kind === 'env' && !opts.reencryptOnly) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      'the keyring comes from TORUS_KEYRING, which this command cannot change',
      'run `torus admin rotate-key --print-keyring`, set the printed TORUS_KEYRING on every server, then run `torus admin rotate-key --reencrypt-only`',
    );
  }

  const db =
    opts.db ?? (await openDatabase({ databaseUrl: settings.databaseUrl, dataDir: settings.dataDir }));
  try {
    if (!opts.reencryptOnly) {
      const id = keyring.addKey();
      print(`added key ${id} to ${where}; new secrets are sealed with it`);
    }
    const { reencrypted } = await rotateKey(db, keyring);
    const byKey = await countSecretsByKey(db, keyring);
    print(`re-encrypted ${reencrypted} secret value(s) under key ${keyring.activeKeyId()}`);
    print(
      `old keys stay in the keyring: values in backups taken before now are sealed with them (keys: ${keyring.keyIds().join(', ')})`,
    );
    return { activeKeyId: keyring.activeKeyId(), reencrypted, byKey };
  } finally {
    if (!opts.db) await db.close();
  }
}
