// The orb registry (issue 5: "Resolving the orbs of every corpus config against the registry: p50
// per config (target ≤ 1 ms with a warm cache); importing all corpus orbs: seconds").
// - Import: every corpus orb from an upstream registry, as `torus admin import-orb <ns>…` does: the
//   fake upstream (test/fakes/orb-upstream.ts, the shared corpus over loopback HTTP) into an
//   embedded registry (PGlite), one namespace after the other, every orb and version. "Seconds" is
//   taken as ≤ 10 s.
// - Resolution: with the registry so filled, every corpus config that uses orbs is compiled once
//   through registryOrbResolver (warming its cache), noting each reference the compiler resolves
//   (the config's orbs and the orbs they import); then each config's references are resolved
//   again, all configs in turn, ROUNDS times: the time per config, p50 and p99. Many configs name an
//   orb version the corpus could not save (orbs/REFS.tsv says why): the registry answers those with
//   nothing, as a compile would be told, and they count like the others; the configs whose orbs
//   were all found get their own p50 too.
// Run alone: `node --import tsx bench/orbs.ts`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { startFakeOrbUpstream } from '../test/fakes/orb-upstream.js';
import { compileConfig, type OrbResolver } from '../src/config/index.js';
import { CORPUS_DIR } from '../src/config/corpus-orbs.js';
import {
  createProxiedFetch,
  defaultSettings,
  randomIds,
  systemClock,
  type Resources,
} from '../src/ops/index.js';
import {
  createOrbRegistry,
  createUpstreamRegistry,
  importFromUpstream,
  parseImportTarget,
  registryOrbResolver,
} from '../src/orbs/index.js';
import { FsObjectStore, openDatabase } from '../src/storage/index.js';
import { percentile } from './lib.js';

const IMPORT_TARGET_S = 10;
const RESOLVE_TARGET_MS = 1;
const ROUNDS = 20;

export interface OrbImportFigures {
  namespaces: number;
  orbs: number;
  versions: number;
  requests: number;
  seconds: number;
}

export interface OrbResolutionFigures {
  /** corpus configs that use orbs: all of them are measured */
  configs: number;
  /** of which every reference resolved (the others also ask for an orb the corpus did not save) */
  configsAllFound: number;
  /** references the registry does not hold (resolved to nothing, as the compiler would be told) */
  missing: string[];
  /** references resolved per config: the config's orbs and the orbs they import */
  refsPerConfig: { p50: number; max: number };
  rounds: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** p50 over the configs whose every reference resolved */
  allFoundP50Ms: number;
}

export interface OrbsFigures {
  import: OrbImportFigures;
  resolution: OrbResolutionFigures;
}

/** A registry on an embedded database in a temporary directory, for the time of `fn`. */
async function withRegistryResources<T>(fn: (res: Resources) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'torus-bench-orbs-'));
  const db = await openDatabase({});
  try {
    const settings = { ...defaultSettings(), dataDir: dir };
    return await fn({
      db,
      store: new FsObjectStore(join(dir, 'objects')),
      clock: systemClock,
      ids: randomIds,
      logger: pino({ level: 'silent' }),
      settings,
    });
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function importAllCorpusOrbs(res: Resources): Promise<OrbImportFigures> {
  const fake = await startFakeOrbUpstream();
  const fetch = createProxiedFetch({});
  try {
    const registry = createOrbRegistry(res);
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
    await fetch.close();
    await fake.close();
  }
}

/** the corpus configs that use orbs, with them (INDEX.tsv's last column: `alias=ns/orb@version …`) */
function corpusConfigsWithOrbs(): Array<{ file: string; orbs: string[] }> {
  return readFileSync(join(CORPUS_DIR, 'INDEX.tsv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'))
    .map((c) => ({
      file: c[0]!,
      orbs: (c[8] ?? '')
        .split(' ')
        .filter(Boolean)
        .map((a) => a.slice(a.indexOf('=') + 1)),
    }))
    .filter((c) => c.orbs.length > 0);
}

async function resolveCorpusConfigs(res: Resources): Promise<OrbResolutionFigures> {
  const resolver = registryOrbResolver(res);
  // compile each config once: the cache is then warm, and the references the compiler asks for known
  const configs: Array<{ refs: string[]; allFound: boolean }> = [];
  const missing = new Set<string>();
  for (const { file, orbs } of corpusConfigsWithOrbs()) {
    // the config's own orbs (an invalid config can stop the compiler before it resolves them), and
    // every reference the compiler asks for (the orbs those orbs import)
    const refs = new Set(orbs);
    const recording: OrbResolver = {
      resolve: (ref) => {
        refs.add(ref);
        return resolver.resolve(ref);
      },
    };
    await compileConfig(readFileSync(join(CORPUS_DIR, 'configs', file), 'utf8'), { orbResolver: recording });
    let allFound = true;
    for (const ref of refs) {
      if (await resolver.resolve(ref)) continue;
      allFound = false;
      missing.add(ref);
    }
    configs.push({ refs: [...refs], allFound });
  }
  if (!configs.some((c) => c.allFound))
    throw new Error('no corpus config found all its orbs in the registry');

  const times: number[] = [];
  const allFoundTimes: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of configs) {
      const t = performance.now();
      for (const ref of c.refs) await resolver.resolve(ref);
      const ms = performance.now() - t;
      times.push(ms);
      if (c.allFound) allFoundTimes.push(ms);
    }
  }
  const counts = configs.map((c) => c.refs.length);
  return {
    configs: configs.length,
    configsAllFound: configs.filter((c) => c.allFound).length,
    missing: [...missing].sort(),
    refsPerConfig: { p50: percentile(counts, 50), max: Math.max(...counts) },
    rounds: ROUNDS,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    maxMs: Math.max(...times),
    allFoundP50Ms: percentile(allFoundTimes, 50),
  };
}

export async function benchOrbs(): Promise<OrbsFigures> {
  return withRegistryResources(async (res) => {
    const imported = await importAllCorpusOrbs(res);
    return { import: imported, resolution: await resolveCorpusConfigs(res) };
  });
}

export function printOrbs(r: OrbsFigures): void {
  const s = r.resolution;
  const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
  console.log(
    `orb resolution (warm registryOrbResolver, PGlite): ${s.configs} corpus configs with orbs × ${s.rounds}, ` +
      `${s.refsPerConfig.p50} references per config (max ${s.refsPerConfig.max}): p50 ${us(s.p50Ms)}, ` +
      `p99 ${us(s.p99Ms)}, max ${us(s.maxMs)} per config ` +
      `(target p50 ≤ ${RESOLVE_TARGET_MS} ms, ${(s.p50Ms / RESOLVE_TARGET_MS).toFixed(3)}× target); ` +
      `the ${s.configsAllFound} configs whose orbs were all found: p50 ${us(s.allFoundP50Ms)}; ` +
      `${s.missing.length} references not in the corpus, so not in the registry (resolved to nothing)`,
  );
  const i = r.import;
  console.log(
    `orb import (all corpus orbs from the fake upstream, PGlite): ${i.versions} versions of ${i.orbs} orbs ` +
      `in ${i.namespaces} namespaces, ${i.requests} upstream requests, ${i.seconds.toFixed(2)} s ` +
      `(target ≤ ${IMPORT_TARGET_S} s, ${(i.seconds / IMPORT_TARGET_S).toFixed(2)}× target)`,
  );
  console.log(JSON.stringify({ bench: 'orbs', ...r }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printOrbs(await benchOrbs());
  process.exit(0);
}
