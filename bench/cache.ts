// Cache save and restore: a generated ~500 MB tree (BENCH_CACHE_MB to change it) of many small
// source-like files in a node_modules-shaped hierarchy plus a few large files (two compressible,
// one half-compressible, two of random bytes). Torus saves it with `save_cache` in one job and
// restores it with `restore_cache` into the empty home of the next job, through the real server
// (in this process, its filesystem object store) and a local agent (a child process, host executor,
// bubblewrap when present); the seconds are the steps' own times as the agent reported them. The
// baselines run on the same tree: `tar -czf`/`tar -xzf`, `tar --zstd -cf`/`tar --zstd -xf` (zstd's
// default level 3, one thread) and tar through zstd as Torus runs it (ZSTD_LEVEL, `-T0`: every core),
// which shows what Torus itself adds. Each is measured BENCH_CACHE_RUNS times (3), taking turns,
// after one warming read of the tree and a `sync` before each; the median is reported (the ratios
// are Torus's median over the baseline's: below 1 is faster). Every restored tree is compared with
// the original (file count, a digest of names, types, modes and link targets, and one of the
// contents): a wrong restore fails the benchmark.
// Everything lives under os.tmpdir(): TMPDIR=/dev/shm takes the disk out of the figures (where
// creating a file costs a millisecond, file creation dominates Torus and tar alike).
// The local agent writes and reads the archive files of the server's store itself (as `npm start`'s
// agents do); BENCH_CACHE_HTTP=1 makes it send and fetch them over HTTP, as an agent on another
// machine does (TORUS_AGENT_CACHE_FILES=0).
import { createCipheriv } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ZSTD_LEVEL } from '../src/agent/steps/archive.js';
import { makeGitRepo, percentile, runPipeline, withServer } from './lib.js';

const TOTAL_MB = Number(process.env.BENCH_CACHE_MB ?? 500);
const RUNS = Number(process.env.BENCH_CACHE_RUNS ?? 3);
const HTTP = /^(1|true|yes)$/i.test(process.env.BENCH_CACHE_HTTP ?? '');
const MB = 1_000_000;
const TREE = 'tree';

// ---- the tree --------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so every run makes the same tree */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = [
  'ba',
  'co',
  'de',
  'fi',
  'gu',
  'ha',
  'jo',
  'ki',
  'lu',
  'ma',
  'ne',
  'po',
  'qu',
  're',
  'si',
  'tu',
  'va',
  'wo',
  'xi',
  'ze',
];

function vocabulary(rnd: () => number, n: number): string[] {
  const words: string[] = [];
  for (let i = 0; i < n; i++) {
    let w = '';
    const len = 1 + Math.floor(rnd() * 4);
    for (let j = 0; j < len; j++) w += SYLLABLES[Math.floor(rnd() * SYLLABLES.length)];
    words.push(w);
  }
  return words;
}

const capitalizedOf = new WeakMap<string[], string[]>();

function capitals(words: string[]): string[] {
  let c = capitalizedOf.get(words);
  if (!c) capitalizedOf.set(words, (c = words.map((w) => w[0]!.toUpperCase() + w.slice(1))));
  return c;
}

/** JavaScript-looking text of exactly `bytes` bytes */
function sourceText(rnd: () => number, words: string[], bytes: number): string {
  const pick = () => words[Math.floor(rnd() * words.length)]!;
  const capitalized = capitals(words);
  const camel = () => pick() + capitalized[Math.floor(rnd() * capitalized.length)]!;
  const lines: string[] = [];
  let size = 0;
  let depth = 0;
  while (size < bytes) {
    const indent = '  '.repeat(depth);
    let line: string;
    const r = rnd();
    if (r < 0.1) line = `${indent}// ${pick()} ${pick()} ${pick()} ${pick()} ${pick()}`;
    else if (r < 0.2) line = `${indent}const ${camel()} = require('./${pick()}/${pick()}');`;
    else if (r < 0.3 && depth < 4) {
      line = `${indent}function ${camel()}(${pick()}, ${pick()}) {`;
      depth++;
    } else if (r < 0.4 && depth > 0) {
      depth--;
      line = `${'  '.repeat(depth)}}`;
    } else if (r < 0.55) line = `${indent}if (${camel()} === ${Math.floor(rnd() * 1000)}) return ${pick()};`;
    else if (r < 0.7) line = `${indent}${camel()}.${pick()}(${JSON.stringify(pick())}, ${camel()});`;
    else
      line = `${indent}let ${camel()} = ${camel()}[${Math.floor(rnd() * 64)}] + ${(rnd() * 100).toFixed(2)};`;
    lines.push(line);
    size += line.length + 1;
  }
  return (lines.join('\n') + '\n').slice(0, bytes);
}

/** log lines: timestamps, levels, request ids; `bytes` long */
function logText(rnd: () => number, words: string[], bytes: number): string {
  const levels = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
  const parts: string[] = [];
  let size = 0;
  let t = Date.UTC(2024, 0, 1);
  while (size < bytes) {
    t += Math.floor(rnd() * 5000);
    const line =
      `${new Date(t).toISOString()} ${levels[Math.floor(rnd() * levels.length)]} ` +
      `req=${Math.floor(rnd() * 1e9).toString(16)} ${words[Math.floor(rnd() * words.length)]} ` +
      `${words[Math.floor(rnd() * words.length)]} took ${Math.floor(rnd() * 900)}ms status=${rnd() < 0.9 ? 200 : 500}\n`;
    parts.push(line);
    size += line.length;
  }
  return parts.join('').slice(0, bytes);
}

/** deterministic incompressible bytes: AES-CTR over zeros with a fixed key */
function randomBytes(seed: number, bytes: number): Buffer {
  const key = Buffer.alloc(16, seed);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]);
}

/** bytes of a few values each (a database page, a model file): about half compressible */
function lowEntropyBytes(seed: number, bytes: number): Buffer {
  const b = randomBytes(seed, bytes);
  for (let i = 0; i < b.length; i++) b[i]! &= 0x0f;
  return b;
}

export interface TreeFacts {
  files: number;
  bytes: number;
  largeFiles: number;
}

/**
 * Writes the tree at `dir`: a 40 % share in small files (100 B–20 KB, log-uniform) of packages
 * under node_modules (nested node_modules, .bin symlinks, an executable per package), the rest in
 * five large files.
 */
export function makeCacheTree(dir: string, totalBytes: number): TreeFacts {
  const rnd = prng(0x7013);
  const words = vocabulary(rnd, 3000);
  let files = 0;
  let bytes = 0;
  const write = (file: string, body: string | Buffer, mode = 0o644) => {
    writeFileSync(file, body, { mode });
    files++;
    bytes += typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  };
  const smallSize = () => Math.floor(100 * Math.pow(200, rnd()));
  const smallBudget = totalBytes * 0.4;
  const modules = join(dir, 'node_modules');
  mkdirSync(join(modules, '.bin'), { recursive: true });
  let pkg = 0;
  while (bytes < smallBudget) {
    const name = `${words[pkg % words.length]}-${pkg}`;
    const nested = pkg % 7 === 3;
    const root = nested
      ? join(modules, `${words[(pkg - 1) % words.length]}-${pkg - 1}`, 'node_modules', name)
      : join(modules, name);
    pkg++;
    mkdirSync(join(root, 'lib', 'internal'), { recursive: true });
    mkdirSync(join(root, 'dist'), { recursive: true });
    write(
      join(root, 'package.json'),
      JSON.stringify({ name, version: `1.${pkg % 13}.${pkg % 7}`, main: 'lib/index.js' }, null, 2),
    );
    write(join(root, 'README.md'), sourceText(rnd, words, smallSize()));
    write(join(root, 'cli.js'), `#!/usr/bin/env node\n${sourceText(rnd, words, smallSize())}`, 0o755);
    if (!nested) symlinkSync(`../${name}/cli.js`, join(modules, '.bin', name));
    const count = 3 + Math.floor(rnd() * 30);
    for (let i = 0; i < count; i++) {
      const sub = i % 3 === 0 ? 'lib' : i % 3 === 1 ? 'lib/internal' : 'dist';
      write(
        join(root, sub, `${words[Math.floor(rnd() * words.length)]}-${i}.js`),
        sourceText(rnd, words, smallSize()),
      );
    }
  }
  const large = join(dir, 'large');
  mkdirSync(large);
  const rest = totalBytes - bytes;
  write(join(large, 'app.log'), logText(rnd, words, Math.floor(rest * 0.3)));
  write(join(large, 'bundle.js'), sourceText(rnd, words, Math.floor(rest * 0.2)));
  write(join(large, 'data.bin'), lowEntropyBytes(3, Math.floor(rest * 0.17)));
  write(join(large, 'random-1.bin'), randomBytes(1, Math.floor(rest * 0.22)));
  write(join(large, 'random-2.bin'), randomBytes(2, totalBytes - bytes));
  return { files, bytes, largeFiles: 5 };
}

// ---- comparing trees ---------------------------------------------------------------------------

/** the shell script printing a tree's digest; the same text runs inside the restoring job */
const DIGEST_SCRIPT = [
  'cd "$1" || exit 1',
  'echo "files $(find . -type f | wc -l)"',
  'echo "meta $(find . -printf \'%y %m %p -> %l\\n\' | LC_ALL=C sort | sha256sum | cut -c1-64)"',
  'echo "data $(find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"',
].join('\n');

/**
 * Runs a shell script with arguments. Asynchronously: the server answers its agent meanwhile (a
 * server stuck in a synchronous spawn makes the agent's claims time out).
 */
async function sh(script: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('/bin/sh', ['-c', script, 'sh', ...args], {
      maxBuffer: 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    throw new Error(`${script} failed: ${(err as Error).message}`);
  }
}

async function digestOf(dir: string): Promise<string> {
  return (await sh(DIGEST_SCRIPT, dir)).trim();
}

function expectSame(what: string, got: string, want: string): void {
  if (got !== want) throw new Error(`${what} restored a different tree:\n${got}\nexpected:\n${want}`);
}

// ---- measuring ---------------------------------------------------------------------------------

/** seconds `script` takes, after a sync so the previous measurement's writes are not in it */
async function timed(script: string, ...args: string[]): Promise<number> {
  await sh('sync');
  const t0 = performance.now();
  await sh(script, ...args);
  return (performance.now() - t0) / 1000;
}

function config(repo: string): string {
  return `version: 2.1
jobs:
  save:
    machine: true
    steps:
      - run:
          name: copy the tree into the home
          command: cp -a ${repo}/${TREE} ~/${TREE} && sync
      - save_cache:
          key: bench-<< pipeline.number >>
          paths: [~/${TREE}]
  restore:
    machine: true
    steps:
      - run: sync
      - restore_cache:
          keys: [bench-<< pipeline.number >>]
      - run:
          name: digest
          command: |
${DIGEST_SCRIPT.split('\n')
  .map((l) => `            ${l}`)
  .join('\n')
  .replace('"$1"', `~/${TREE}`)}
workflows:
  w:
    jobs: [save, { restore: { requires: [save] } }]
`;
}

export interface CacheFigures {
  tree: TreeFacts;
  runs: number;
  /** the highest 1-minute load average at the start of a run */
  load: number;
  /** median seconds */
  torusSave: number;
  torusRestore: number;
  gzipCreate: number;
  gzipExtract: number;
  zstdCreate: number;
  zstdExtract: number;
  /** tar through zstd with Torus's level and threads (`tar -I 'zstd -1 -T0'`): Torus's own overhead */
  sameCreate: number;
  sameExtract: number;
  /** archive sizes (bytes) */
  torusArchive: number;
  gzipArchive: number;
  zstdArchive: number;
  sameArchive: number;
}

interface StepRow {
  job: string;
  step_index: number;
  started_at: Date;
  stopped_at: Date;
  status: string;
}

/** the 1-minute load average: other work on the machine shows in every figure */
function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

export async function benchCache(): Promise<CacheFigures> {
  const repo = makeGitRepo({ '.circleci/config.yml': 'version: 2.1\n' });
  const work = mkdtempSync(join(tmpdir(), 'torus-bench-cache-'));
  try {
    const source = join(repo, TREE);
    mkdirSync(source);
    const tree = makeCacheTree(source, TOTAL_MB * MB);
    writeFileSync(join(repo, '.circleci/config.yml'), config(repo));
    spawnSync(
      'git',
      ['-C', repo, '-c', 'user.name=b', '-c', 'user.email=b@torus.invalid', 'commit', '-qam', 'bench'],
      {
        stdio: 'ignore',
      },
    );
    const want = await digestOf(source);
    // warm: read every file once (GNU tar skips reading contents when writing to /dev/null itself)
    await sh('tar -cf - -C "$1" "$2" | cat > /dev/null', repo, TREE);

    const times = {
      gzipCreate: [] as number[],
      gzipExtract: [] as number[],
      zstdCreate: [] as number[],
      zstdExtract: [] as number[],
      sameCreate: [] as number[],
      sameExtract: [] as number[],
      torusSave: [] as number[],
      torusRestore: [] as number[],
    };
    const sizes = { gzip: 0, zstd: 0, same: 0, torus: 0 };
    const load: number[] = [];

    /** tar with `flag` creating an archive of the tree and extracting it into an empty directory */
    const tarRun = async (run: number, kind: 'gzip' | 'zstd' | 'same', flag: string) => {
      const archive = join(work, `tree.tar.${kind}`);
      const into = join(work, `into-${kind}`);
      times[`${kind}Create`].push(await timed(`tar ${flag} -cf "$1" -C "$2" "$3"`, archive, repo, TREE));
      sizes[kind] = statSync(archive).size;
      mkdirSync(into);
      times[`${kind}Extract`].push(await timed(`tar ${flag} -xf "$1" -C "$2"`, archive, into));
      if (run === 0) expectSame(`tar ${flag} -xf`, await digestOf(join(into, TREE)), want);
      rmSync(into, { recursive: true, force: true });
      rmSync(archive, { force: true });
    };

    // read by the local launcher when it starts the agent
    if (HTTP) process.env.TORUS_AGENT_CACHE_FILES = '0';
    await withServer({ TORUS_LOCAL_AGENTS: '1' }, async (server) => {
      const project = await server.engine.createProject({
        orgName: 'bench',
        name: 'cache',
        vcsUrl: `file://${repo}`,
      });
      /** one pipeline: save_cache in a job, restore_cache in the next; checks the restored tree */
      const torusRun = async () => {
        await sh('sync');
        const { pipelineId, status } = await runPipeline(server, project.id, { pollMs: 100 });
        const steps = await server.res.db.query<StepRow>(
          `SELECT j.name AS job, s.step_index, s.started_at, s.stopped_at, s.status
           FROM jobs j JOIN workflows w ON w.id = j.workflow_id JOIN tasks t ON t.job_id = j.id
           JOIN steps s ON s.task_id = t.id WHERE w.pipeline_id = $1`,
          [pipelineId],
        );
        const jobs = await server.res.db.query<{ name: string; number: number }>(
          'SELECT j.name, j.number FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE w.pipeline_id = $1',
          [pipelineId],
        );
        const output = async (job: string, step: number) => {
          const number = jobs.rows.find((j) => j.name === job)!.number;
          const res = await fetch(`${server.url}/api/v1.1/project/${project.slug}/${number}`, {
            headers: { 'circle-token': 'bench' },
          });
          const v1 = (await res.json()) as {
            steps: Array<{ actions: Array<{ step: number; output_url: string | null }> }>;
          };
          const action = v1.steps.flatMap((s) => s.actions).find((a) => a.step === step);
          if (!action?.output_url) return '';
          const msgs = (await fetch(action.output_url, { headers: { 'circle-token': 'bench' } }).then((r) =>
            r.json(),
          )) as Array<{ message: string }>;
          return msgs.map((m) => m.message).join('');
        };
        if (status !== 'success') {
          const texts = await Promise.all(
            steps.rows.map(
              async (s) => `## ${s.job} ${s.step_index} ${s.status}\n${await output(s.job, s.step_index)}`,
            ),
          );
          throw new Error(`the cache pipeline ended ${status}:\n${texts.join('\n')}`);
        }
        // step 0 spins up, 1 prints the environment; the config's steps follow
        const seconds = (job: string, step: number) => {
          const s = steps.rows.find((r) => r.job === job && r.step_index === step)!;
          return (s.stopped_at.getTime() - s.started_at.getTime()) / 1000;
        };
        times.torusSave.push(seconds('save', 3));
        times.torusRestore.push(seconds('restore', 3));
        const saved = await output('save', 3);
        const size = /Archive size: ([\d.]+) (B|KiB|MiB|GiB)/.exec(saved);
        if (!size) throw new Error(`save_cache printed no archive size:\n${saved}`);
        const unit = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[size[2] as 'B'];
        sizes.torus = Number(size[1]) * unit;
        const restored = await output('restore', 3);
        if (!/Restored (\d+ entries|the cache)/.test(restored))
          throw new Error(`restore_cache did not restore:\n${restored}`);
        expectSame('restore_cache', (await output('restore', 4)).trim(), want);
      };
      // the baselines and Torus take turns, so that other work on the machine weighs on all of them
      for (let run = 0; run < RUNS; run++) {
        load.push(loadAverage());
        await tarRun(run, 'gzip', '-z');
        await tarRun(run, 'zstd', '--zstd');
        await tarRun(run, 'same', `-I 'zstd -${ZSTD_LEVEL} -T0'`);
        await torusRun();
      }
    });
    const median = (v: number[]) => percentile(v, 50);
    return {
      tree,
      runs: RUNS,
      load: Math.max(...load),
      torusSave: median(times.torusSave),
      torusRestore: median(times.torusRestore),
      gzipCreate: median(times.gzipCreate),
      gzipExtract: median(times.gzipExtract),
      zstdCreate: median(times.zstdCreate),
      zstdExtract: median(times.zstdExtract),
      sameCreate: median(times.sameCreate),
      sameExtract: median(times.sameExtract),
      torusArchive: sizes.torus,
      gzipArchive: sizes.gzip,
      zstdArchive: sizes.zstd,
      sameArchive: sizes.same,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(repo, { recursive: true, force: true });
  }
}

export function printCache(r: CacheFigures): void {
  const s = (x: number) => `${x.toFixed(2)} s`;
  const mb = (x: number) => `${(x / MB).toFixed(0)} MB`;
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const same = `tar -I 'zstd -${ZSTD_LEVEL} -T0'`;
  console.log(
    `cache tree: ${mb(r.tree.bytes)} in ${r.tree.files} files (${r.tree.largeFiles} large); ` +
      `archives ${HTTP ? 'sent to and fetched from the server over HTTP' : "written and read as the store's files"}; ` +
      `medians of ${r.runs} runs ` +
      `on ${availableParallelism()} cores (load average up to ${r.load.toFixed(1)}); ` +
      `archives: Torus ${mb(r.torusArchive)} (zstd -${ZSTD_LEVEL} -T0), tar -z ${mb(r.gzipArchive)}, ` +
      `tar --zstd ${mb(r.zstdArchive)}, ${same} ${mb(r.sameArchive)}`,
  );
  console.log(
    `cache save: Torus ${s(r.torusSave)}; tar -czf ${s(r.gzipCreate)} (Torus ${ratio(r.torusSave, r.gzipCreate)}), ` +
      `tar --zstd -cf ${s(r.zstdCreate)} (Torus ${ratio(r.torusSave, r.zstdCreate)}; target ≤ 1.00×), ` +
      `${same} -cf ${s(r.sameCreate)} (Torus ${ratio(r.torusSave, r.sameCreate)})`,
  );
  console.log(
    `cache restore: Torus ${s(r.torusRestore)}; tar -xzf ${s(r.gzipExtract)} (Torus ${ratio(r.torusRestore, r.gzipExtract)}), ` +
      `tar --zstd -xf ${s(r.zstdExtract)} (Torus ${ratio(r.torusRestore, r.zstdExtract)}; target ≤ 1.00×), ` +
      `${same} -xf ${s(r.sameExtract)} (Torus ${ratio(r.torusRestore, r.sameExtract)})`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printCache(await benchCache());
  process.exit(0);
}
