// Config compiler benchmark: every corpus config (/work/shared/corpus/configs) compiled 20 times
// after a warm-up pass, with the corpus orb resolver already holding every orb's text (as the
// server's registry would), against two baselines run in the same process on the same files: the
// bare `yaml` parse with the compiler's parse options, and CircleCI's own TypeScript parser
// (`@circleci/circleci-config-parser`, its `parseConfig(text)` entry point). Run alone with
// `node --import tsx bench/config/index.ts`; `benchConfig()` returns the figures for bench/index.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LineCounter, parseDocument } from 'yaml';
import { compileConfig, CONFIG_YAML_OPTIONS, type CompileOptions } from '../../src/config/index.js';
import { corpusOrbResolver, CORPUS_DIR } from '../../src/config/corpus-orbs.js';
import { fmt, percentile } from '../lib.js';

const ITERATIONS = Number(process.env.BENCH_CONFIG_ITERATIONS ?? 20);
const TARGET_P50_MS = 2;
const TARGET_PARSE_RATIO = 3;

/** The pipeline values a GitHub push to main would have (as in src/config/corpus.test.ts). */
const PIPELINE_VALUES = {
  'pipeline.id': '0f8e6a4e-1c2b-4d3e-9f00-123456789abc',
  'pipeline.number': 7,
  'pipeline.project.type': 'github',
  'pipeline.project.git_url': 'https://github.com/example/repo',
  'pipeline.git.branch': 'main',
  'pipeline.git.tag': '',
  'pipeline.git.revision': '8d2f3ab6c1e0f4b5a6978d9e0f1a2b3c4d5e6f70',
  'pipeline.git.base_revision': '',
  'pipeline.trigger_source': 'webhook',
};

export interface Timing {
  /** single calls timed */
  samples: number;
  p50: number;
  p99: number;
  /** sum of all timed calls, ms */
  totalMs: number;
}

export interface CircleciParserFigures {
  /** configs `parseConfig(text)` returns for without throwing */
  handled: number;
  /** of those, how many Torus also compiles without error */
  handledAndTorusOk: number;
  /** configs it handles when given the parameter manifests of the corpus orbs they import */
  handledWithOrbManifests: number;
  /** the circleci parser on the files it handles */
  timing: Timing;
  /** Torus on the same files */
  torusOnSameFiles: Timing;
  /** Torus p50 / circleci parser p50 on those files */
  ratioP50: number;
  ratioP99: number;
}

export interface ConfigBenchFigures {
  configs: number;
  iterations: number;
  /** configs Torus compiles without error (with the corpus orbs and push-to-main pipeline values) */
  torusOk: number;
  /** configs using orbs / of those compiled */
  withOrbs: number;
  compiler: Timing;
  /** compiler timings split by configs without / with orbs */
  compilerNoOrbs: Timing;
  compilerWithOrbs: Timing;
  /** compiler timings of the configs that compile without error (the others stop early) */
  compilerOk: Timing;
  /** `parseDocument` of the config text only */
  bareParse: Timing;
  /** `parseDocument` of the config text plus the text of every orb it imports (what the compiler must parse) */
  bareParseWithOrbs: Timing;
  /** bare parse of the configs without orbs, and compiler / that, p50 */
  bareParseNoOrbs: Timing;
  ratioP50NoOrbs: number;
  ratioP50: number;
  ratioP99: number;
  ratioTotal: number;
  /** compiler / (config + orbs bare parse), p50 */
  ratioP50WithOrbs: number;
  targetP50Ms: number;
  targetParseRatio: number;
  meetsTargets: boolean;
  /** null when the package could not be loaded (reason in circleciSkipped) */
  circleci: CircleciParserFigures | null;
  circleciSkipped?: string;
}

interface CorpusConfig {
  file: string;
  source: string;
  /** `ns/name@version` refs from INDEX.tsv */
  orbRefs: string[];
}

function readCorpus(): CorpusConfig[] {
  const lines = readFileSync(join(CORPUS_DIR, 'INDEX.tsv'), 'utf8').trim().split('\n').slice(1);
  return lines.map((line) => {
    const c = line.split('\t');
    const file = c[0]!;
    const orbRefs = (c[8] ?? '')
      .split(' ')
      .filter(Boolean)
      .map((r) => r.slice(r.indexOf('=') + 1));
    return { file, source: readFileSync(join(CORPUS_DIR, 'configs', file), 'utf8'), orbRefs };
  });
}

/** The bare parse, with the options the compiler's parseSource uses. */
function bareParse(text: string): number {
  const doc = parseDocument(text, { ...CONFIG_YAML_OPTIONS, lineCounter: new LineCounter() });
  return doc.errors.length;
}

function timing(samples: number[]): Timing {
  return {
    samples: samples.length,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    totalMs: samples.reduce((a, b) => a + b, 0),
  };
}

/**
 * Times each of `fns` on every item: one untimed warm-up pass, then `iterations` passes in which
 * the functions run back to back on each item, so that every figure and its baseline see the same
 * machine load (this machine is shared; load swings change absolute figures by 2×).
 */
async function timeInterleaved<T, K extends string>(
  items: T[],
  iterations: number,
  fns: Record<K, (item: T) => unknown>,
): Promise<Record<K, Map<T, number[]>>> {
  const names = Object.keys(fns) as K[];
  for (const item of items) for (const name of names) await fns[name](item);
  const out = {} as Record<K, Map<T, number[]>>;
  for (const name of names) out[name] = new Map(items.map((i) => [i, []]));
  for (let pass = 0; pass < iterations; pass++) {
    for (const item of items) {
      for (const name of names) {
        const t0 = performance.now();
        await fns[name](item);
        out[name].get(item)!.push(performance.now() - t0);
      }
    }
  }
  return out;
}

/** Adds the samples of `b` to those of `a`, pass by pass. */
function addSamples<T>(a: Map<T, number[]>, b: Map<T, number[]>): Map<T, number[]> {
  return new Map([...a].map(([item, xs]) => [item, xs.map((x, i) => x + b.get(item)![i]!)]));
}

function collect<T>(byItem: Map<T, number[]>, keep: (item: T) => boolean = () => true): Timing {
  const all: number[] = [];
  for (const [item, samples] of byItem) if (keep(item)) all.push(...samples);
  return timing(all);
}

interface CircleciParser {
  parseConfig(configIn: unknown, orbImportManifests?: Record<string, unknown>): unknown;
  parseParameterList(parameters: unknown): unknown;
}

async function loadCircleciParser(): Promise<CircleciParser | string> {
  try {
    // a webpack CommonJS bundle: its exports come as the default export
    const mod = (await import('@circleci/circleci-config-parser')) as unknown as { default?: CircleciParser };
    const parser = mod.default ?? (mod as unknown as CircleciParser);
    if (typeof parser.parseConfig !== 'function') return 'parseConfig not found in the package';
    return parser;
  } catch (err) {
    return `cannot load @circleci/circleci-config-parser: ${(err as Error).message}`;
  }
}

function tryParse(parser: CircleciParser, source: string, manifests?: Record<string, unknown>): boolean {
  try {
    parser.parseConfig(source, manifests);
    return true;
  } catch {
    // a throw is exactly what is being counted: the parser refuses the config
    return false;
  }
}

type PlainMap = Record<string, unknown>;
const isPlainMap = (v: unknown): v is PlainMap => typeof v === 'object' && v !== null && !Array.isArray(v);

/** YAML 1.1 text as plain values; null when it does not parse (the config then fails anyway). */
function toPlain(text: string): unknown {
  try {
    return parseDocument(text, { version: '1.1', merge: true, uniqueKeys: false }).toJS({
      maxAliasCount: -1,
    });
  } catch {
    // merge-key alias chains the yaml library refuses to expand: no manifest for this config
    return null;
  }
}

/**
 * The OrbImportManifest (parameters of each orb job/command/executor) CircleCI's parser needs to
 * accept orb references; built from the corpus orb sources. Unbuildable entries are left out.
 */
async function orbManifests(
  parser: CircleciParser,
  config: CorpusConfig,
  resolver: ReturnType<typeof corpusOrbResolver>,
): Promise<Record<string, unknown> | undefined> {
  const doc = toPlain(config.source);
  if (!isPlainMap(doc) || !isPlainMap(doc.orbs)) return undefined;
  const manifests: Record<string, unknown> = {};
  for (const [alias, ref] of Object.entries(doc.orbs)) {
    if (typeof ref !== 'string') continue;
    const found = await resolver.resolve(ref);
    if (!found) continue;
    const orb = toPlain(found.source);
    if (!isPlainMap(orb)) continue;
    const manifest: Record<string, Record<string, unknown>> = { jobs: {}, commands: {}, executors: {} };
    for (const kind of ['jobs', 'commands', 'executors'] as const) {
      const elements = orb[kind];
      if (!isPlainMap(elements)) continue;
      for (const [name, def] of Object.entries(elements)) {
        try {
          manifest[kind]![name] = parser.parseParameterList(isPlainMap(def) ? (def.parameters ?? {}) : {});
        } catch {
          // a parameter list CircleCI's parser cannot read: that element stays unknown to it
        }
      }
    }
    manifests[alias] = manifest;
  }
  return manifests;
}

export async function benchConfig(iterations = ITERATIONS): Promise<ConfigBenchFigures> {
  const corpus = readCorpus();
  const resolver = corpusOrbResolver();
  const opts: CompileOptions = { orbResolver: resolver, pipelineValues: PIPELINE_VALUES };

  // warm the resolver (orb packing and file reads) so the timed passes see the server's situation
  const orbSources = new Map<CorpusConfig, string[]>();
  for (const c of corpus) {
    const texts: string[] = [];
    for (const ref of c.orbRefs) {
      const found = await resolver.resolve(ref);
      if (found) texts.push(found.source);
    }
    orbSources.set(c, texts);
  }

  const torusOk = new Set<CorpusConfig>();
  for (const c of corpus) if ((await compileConfig(c.source, opts)).ok) torusOk.add(c);

  const times = await timeInterleaved(corpus, iterations, {
    compile: (c: CorpusConfig) => compileConfig(c.source, opts),
    parse: (c: CorpusConfig) => bareParse(c.source),
    parseOrbs: (c: CorpusConfig) => orbSources.get(c)!.reduce((n, text) => n + bareParse(text), 0),
  });
  const compileTimes = times.compile;
  const parseTimes = times.parse;
  const parseOrbTimes = addSamples(times.parse, times.parseOrbs);
  const compiler = collect(compileTimes);
  const bare = collect(parseTimes);
  const bareOrbs = collect(parseOrbTimes);
  const hasOrbs = (c: CorpusConfig): boolean => c.orbRefs.length > 0;
  const compilerNoOrbs = collect(compileTimes, (c) => !hasOrbs(c));
  const bareNoOrbs = collect(parseTimes, (c) => !hasOrbs(c));

  const figures: ConfigBenchFigures = {
    configs: corpus.length,
    iterations,
    torusOk: torusOk.size,
    withOrbs: corpus.filter(hasOrbs).length,
    compiler,
    compilerNoOrbs,
    compilerWithOrbs: collect(compileTimes, hasOrbs),
    compilerOk: collect(compileTimes, (c) => torusOk.has(c)),
    bareParse: bare,
    bareParseWithOrbs: bareOrbs,
    bareParseNoOrbs: bareNoOrbs,
    ratioP50NoOrbs: compilerNoOrbs.p50 / bareNoOrbs.p50,
    ratioP50: compiler.p50 / bare.p50,
    ratioP99: compiler.p99 / bare.p99,
    ratioTotal: compiler.totalMs / bare.totalMs,
    ratioP50WithOrbs: compiler.p50 / bareOrbs.p50,
    targetP50Ms: TARGET_P50_MS,
    targetParseRatio: TARGET_PARSE_RATIO,
    meetsTargets: compiler.p50 <= TARGET_P50_MS && compiler.p50 / bare.p50 <= TARGET_PARSE_RATIO,
    circleci: null,
  };

  const parser = await loadCircleciParser();
  if (typeof parser === 'string') {
    figures.circleciSkipped = parser;
    return figures;
  }
  const handled = corpus.filter((c) => tryParse(parser, c.source));
  let handledWithOrbManifests = 0;
  for (const c of corpus) {
    if (tryParse(parser, c.source, await orbManifests(parser, c, resolver))) handledWithOrbManifests++;
  }
  const sameFiles = await timeInterleaved(handled, iterations, {
    circleci: (c: CorpusConfig) => tryParse(parser, c.source),
    torus: (c: CorpusConfig) => compileConfig(c.source, opts),
  });
  const cc = collect(sameFiles.circleci);
  const torusSame = collect(sameFiles.torus);
  figures.circleci = {
    handled: handled.length,
    handledAndTorusOk: handled.filter((c) => torusOk.has(c)).length,
    handledWithOrbManifests,
    timing: cc,
    torusOnSameFiles: torusSame,
    ratioP50: torusSame.p50 / cc.p50,
    ratioP99: torusSame.p99 / cc.p99,
  };
  return figures;
}

/** One line per figure with its ratio, then one JSON line with everything. */
export function printConfigBench(f: ConfigBenchFigures): void {
  const t = (x: Timing): string =>
    `p50 ${fmt(x.p50)}, p99 ${fmt(x.p99)}, total ${fmt(x.totalMs)} (${x.samples} compiles)`;
  console.log(
    `config compiler (${f.configs} corpus configs × ${f.iterations}, ${f.torusOk} compile ok): ${t(f.compiler)}; ` +
      `target p50 ≤ ${f.targetP50Ms} ms: ${(f.compiler.p50 / f.targetP50Ms).toFixed(2)}× target`,
  );
  console.log(
    `config compiler without orbs (${f.configs - f.withOrbs} configs): p50 ${fmt(f.compilerNoOrbs.p50)}, p99 ${fmt(f.compilerNoOrbs.p99)}; ` +
      `with orbs (${f.withOrbs} configs): p50 ${fmt(f.compilerWithOrbs.p50)}, p99 ${fmt(f.compilerWithOrbs.p99)}; ` +
      `only the ${f.torusOk} that compile: p50 ${fmt(f.compilerOk.p50)}, p99 ${fmt(f.compilerOk.p99)}`,
  );
  console.log(
    `bare yaml parseDocument: p50 ${fmt(f.bareParse.p50)}, p99 ${fmt(f.bareParse.p99)}, total ${fmt(f.bareParse.totalMs)}; ` +
      `compiler/parse ${f.ratioP50.toFixed(2)}× p50, ${f.ratioP99.toFixed(2)}× p99, ${f.ratioTotal.toFixed(2)}× total (target ≤ ${f.targetParseRatio}×); ` +
      `configs without orbs: parse p50 ${fmt(f.bareParseNoOrbs.p50)}, compiler/parse ${f.ratioP50NoOrbs.toFixed(2)}× p50`,
  );
  console.log(
    `bare yaml parseDocument of config + its orbs: p50 ${fmt(f.bareParseWithOrbs.p50)}, p99 ${fmt(f.bareParseWithOrbs.p99)}, ` +
      `total ${fmt(f.bareParseWithOrbs.totalMs)}; compiler/parse ${f.ratioP50WithOrbs.toFixed(2)}× p50, ` +
      `${(f.compiler.totalMs / f.bareParseWithOrbs.totalMs).toFixed(2)}× total`,
  );
  const c = f.circleci;
  if (c) {
    console.log(
      `@circleci/circleci-config-parser parseConfig(text): handles ${c.handled}/${f.configs} without throwing ` +
        `(${c.handledWithOrbManifests} given orb manifests) vs Torus ${f.torusOk}/${f.configs}; ` +
        `on its ${c.handled}: p50 ${fmt(c.timing.p50)}, p99 ${fmt(c.timing.p99)} vs Torus p50 ${fmt(c.torusOnSameFiles.p50)}, ` +
        `p99 ${fmt(c.torusOnSameFiles.p99)} = Torus/circleci ${c.ratioP50.toFixed(2)}× p50, ${c.ratioP99.toFixed(2)}× p99`,
    );
  } else {
    console.log(`@circleci/circleci-config-parser: skipped (${f.circleciSkipped})`);
  }
  console.log(
    `targets (p50 ≤ ${f.targetP50Ms} ms and ≤ ${f.targetParseRatio}× bare parse): ${f.meetsTargets ? 'met' : 'NOT met'}`,
  );
  console.log(JSON.stringify({ bench: 'config', ...f }));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const started = performance.now();
  printConfigBench(await benchConfig());
  console.log(`(config benchmark took ${((performance.now() - started) / 1000).toFixed(1)} s)`);
}
