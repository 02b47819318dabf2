// The server's dev-version sweep loop: it deletes expired dev versions at start and then every
// interval, and stops when asked (waiting for a sweep under way).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestResources, type TestResources } from '../../test/api/resources.js';
import { createAccounts } from '../accounts/index.js';
import { createOrbRegistry, DevVersionSweepLoop } from './index.js';

const SOURCE = 'version: 2.1\ncommands:\n  hello:\n    steps:\n      - run: echo hi\n';
const DAY_MS = 86_400_000;

async function rows(res: TestResources): Promise<string[]> {
  const r = await res.db.query<{ version: string }>('SELECT version FROM orb_versions ORDER BY version');
  return r.rows.map((x) => x.version);
}

async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('DevVersionSweepLoop', () => {
  let res: TestResources;
  beforeAll(async () => {
    res = await openTestResources('pglite');
  });
  afterAll(() => res?.close());

  it('deletes expired dev versions at start and every interval, keeps the rest, and stops', async () => {
    const registry = createOrbRegistry(res);
    const org = await createAccounts(res).createOrg('acme');
    await registry.createNamespace(org.id, 'acme', 'system');
    await registry.createOrb('acme', 'tools', {}, 'system');
    const start = new Date('2026-01-01T00:00:00Z');
    res.setNow(start);
    await registry.publishVersion('acme/tools', 'dev:old', SOURCE, 'system');
    await registry.publishVersion('acme/tools', '1.0.0', SOURCE, 'system');
    res.setNow(new Date(start.getTime() + 60 * DAY_MS));
    await registry.publishVersion('acme/tools', 'dev:newer', SOURCE, 'system');
    res.setNow(new Date(start.getTime() + 91 * DAY_MS));
    const swept: number[] = [];
    const loop = new DevVersionSweepLoop(
      res,
      {
        sweepExpiredDevVersions: async () => {
          const n = await registry.sweepExpiredDevVersions();
          swept.push(n);
          return n;
        },
      },
      30,
    );
    loop.start();
    await until(async () => (await rows(res)).length === 2);
    expect(await rows(res)).toEqual(['1.0.0', 'dev:newer']);
    // the next interval: dev:newer expires 90 days after its publish
    res.setNow(new Date(start.getTime() + 151 * DAY_MS));
    await until(async () => (await rows(res)).length === 1);
    expect(await rows(res)).toEqual(['1.0.0']);
    await loop.stop();
    const sweeps = swept.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(swept.length).toBe(sweeps);
    expect(swept.filter((n) => n > 0)).toEqual([1, 1]);
  });
});
