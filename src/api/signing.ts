// Signed step-output URLs: CircleCI's `output_url`s are presigned links that work without an API
// token (scripts fetch them as they are); Torus signs its own with an HMAC key kept in the
// database's `settings` table, so every replica signs and checks alike.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Queryable } from '../storage/index.js';
import type { Clock } from '../ops/index.js';

/** how long an output_url works without a token (the job details can always be fetched again) */
export const OUTPUT_URL_TTL_MS = 60 * 60 * 1000;
const KEY_SETTING = 'api.output_url_signing_key';

export interface OutputSigner {
  /** `exp=…&sig=…` for the output of step `step` of parallel run `index` of job `jobNumber` */
  sign(projectSlug: string, jobNumber: number, step: number, index: number): Promise<string>;
  /** true when sig is this server's signature of that output and exp has not passed */
  verify(
    projectSlug: string,
    jobNumber: number,
    step: number,
    index: number,
    exp: string,
    sig: string,
  ): Promise<boolean>;
}

export function createOutputSigner(db: Queryable, clock: Clock): OutputSigner {
  let key: Promise<Buffer> | undefined;
  const loadKey = (): Promise<Buffer> => {
    key ??= (async () => {
      // First signer wins; the others read its key.
      await db.query(
        `INSERT INTO settings (key, value) VALUES ($1, to_jsonb($2::text)) ON CONFLICT (key) DO NOTHING`,
        [KEY_SETTING, randomBytes(32).toString('hex')],
      );
      const r = await db.query<{ value: string }>('SELECT value FROM settings WHERE key = $1', [KEY_SETTING]);
      const hex = r.rows[0]?.value;
      if (typeof hex !== 'string') throw new Error(`settings ${KEY_SETTING} is missing or not a string`);
      return Buffer.from(hex, 'hex');
    })().catch((err: unknown) => {
      key = undefined; // try again at the next request
      throw err;
    });
    return key;
  };
  const mac = async (payload: string) =>
    createHmac('sha256', await loadKey())
      .update(payload)
      .digest();
  const payload = (slug: string, n: number, step: number, index: number, exp: string) =>
    `${slug}|${n}|${step}|${index}|${exp}`;

  return {
    async sign(slug, n, step, index) {
      const exp = String(Math.floor((clock.now().getTime() + OUTPUT_URL_TTL_MS) / 1000));
      const sig = (await mac(payload(slug, n, step, index, exp))).toString('base64url');
      return `exp=${exp}&sig=${sig}`;
    },
    async verify(slug, n, step, index, exp, sig) {
      if (!/^\d{1,12}$/.test(exp) || Number(exp) * 1000 < clock.now().getTime()) return false;
      const want = await mac(payload(slug, n, step, index, exp));
      const got = Buffer.from(sig, 'base64url');
      return got.length === want.length && timingSafeEqual(got, want);
    },
  };
}
