// Importing every corpus orb from an upstream registry, as `torus admin import-orb <ns>…` does: the
// fake upstream (test/fakes/orb-upstream.ts, the shared corpus over loopback HTTP) into an embedded
// registry, one namespace after the other, every orb and version. Issue 5's target: "seconds" (taken
// as ≤ 10 s). Run alone: `node --import tsx bench/orb-import.ts`.
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { startFakeOrbUpstream } from '../test/fakes/orb-upstream.js';
import { createProxiedFetch, defaultSettings, randomIds, systemClock } from '../src/ops/index.js';
import {
  createOrbRegistry,
  createUpstreamRegistry,
  importFromUpstream,
  parseImportTarget,
} from '../src/orbs/index.js';
import { FsObjectStore, openDatabase } from '../src/storage/index.js';

const TARGET_S = 10;

export interface OrbImportBench {
  namespaces: number;
  orbs: number;
  versions: number;
  requests: number;
  seconds: number;
}

export async function benchOrbImport(): Promise<OrbImportBench> {
  const fake = await startFakeOrbUpstream();
  const fetch = createProxiedFetch({});
  const db = await openDatabase({});
  try {
    const settings = defaultSettings();
    const registry = createOrbRegistry({
      db,
      store: new FsObjectStore(`${settings.dataDir}/objects`),
      clock: systemClock,
      ids: randomIds,
      logger: pino({ level: 'silent' }),
      settings,
    });
    const upstream = createUpstreamRegistry({ url: fake.url, fetch });
    const namespaces = [...new Set(fake.orbNames().map((n) => n.split('/')[0]!))];
    const started = performance.now();
    let orbs = 0;
    let versions = 0;
    for (const ns of namespaces) {
      const r = await importFromUpstream({ registry, upstream, actor: 'system' }, parseImportTarget(ns));
      orbs += r.orbsCreated.length;
      versions += r.versionsCreated.length;
    }
    const seconds = (performance.now() - started) / 1000;
    return { namespaces: namespaces.length, orbs, versions, requests: fake.requests.length, seconds };
  } finally {
    await db.close();
    await fetch.close();
    await fake.close();
  }
}

export function printOrbImport(b: OrbImportBench): void {
  console.log(
    `orb import (all corpus orbs from the fake upstream, PGlite): ${b.versions} versions of ${b.orbs} orbs ` +
      `in ${b.namespaces} namespaces, ${b.requests} upstream requests, ${b.seconds.toFixed(2)} s ` +
      `(target ≤ ${TARGET_S} s, ${(b.seconds / TARGET_S).toFixed(2)}× target)`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printOrbImport(await benchOrbImport());
  process.exit(0);
}
