// The in-job `circleci` script, run as a job would run it: under busybox sh with nothing but busybox
// applets on PATH (no bash, no coreutils), and under dash and bash.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJUnitString, timingsFile, type TestCase } from '../junit.js';
import {
  CIRCLECI_SHIM_SCRIPT,
  FAILED_TESTS_FILE_ENV,
  HALT_FILE_ENV,
  TIMINGS_FILE_ENV,
  failedTestsFile,
  shimEnvironment,
} from './index.js';

const BUSYBOX = '/usr/bin/busybox';
let root: string;
let script: string;
let busyboxBin: string;

interface Shell {
  name: string;
  argv: string[];
  path: () => string;
}
const SHELLS: Shell[] = [
  { name: 'busybox sh', argv: [BUSYBOX, 'sh'], path: () => busyboxBin },
  { name: 'dash', argv: ['/usr/bin/dash'], path: () => process.env.PATH ?? '/usr/bin:/bin' },
  { name: 'bash', argv: ['/usr/bin/bash'], path: () => process.env.PATH ?? '/usr/bin:/bin' },
];

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function run(
  shell: Shell,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; input?: string } = {},
): Run {
  const home = path.join(root, 'home');
  const r = spawnSync(shell.argv[0] ?? '', [...shell.argv.slice(1), script, ...args], {
    cwd: opts.cwd ?? root,
    input: opts.input ?? '',
    encoding: 'utf8',
    env: { PATH: shell.path(), HOME: home, [TIMINGS_FILE_ENV]: path.join(root, 'none.tsv'), ...opts.env },
    timeout: 20_000,
  });
  // a script that exits before reading its input (an error path) closes the pipe: that is not a failure
  const epipe = (r.error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' && r.status !== null;
  if (r.error && !epipe) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'torus-shim-'));
  script = path.join(root, 'circleci');
  writeFileSync(script, CIRCLECI_SHIM_SCRIPT, { mode: 0o755 });
  // a PATH holding only busybox applets proves the script needs nothing else
  busyboxBin = path.join(root, 'busybox-bin');
  mkdirSync(busyboxBin);
  const applets = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const applet of applets) if (applet !== 'bash') symlinkSync(BUSYBOX, path.join(busyboxBin, applet));
  // a small checkout to glob in
  const files = [
    'spec/models/user_spec.rb',
    'spec/models/post_spec.rb',
    'spec/a/b/deep_spec.rb',
    'spec/x_spec.rb',
    'spec/a/readme.md',
    'test/t1.py',
    'test/t2.py',
    'test/t3.rb',
    'top_spec.rb',
  ];
  for (const f of files) {
    mkdirSync(path.join(root, 'repo', path.dirname(f)), { recursive: true });
    writeFileSync(path.join(root, 'repo', f), 'x'.repeat(f.length));
  }
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe.each(SHELLS)('circleci under $name', (shell) => {
  it('tests glob: *, **, ?, [..], {a,b}, several patterns, sorted and unique', () => {
    const cwd = path.join(root, 'repo');
    const r = run(
      shell,
      ['tests', 'glob', 'spec/**/*_spec.rb', 'test/*.{py,rb}', '*_spec.rb', 'spec/?_spec.rb'],
      { cwd },
    );
    expect(r.err).toBe('');
    expect(lines(r.out)).toEqual([
      'spec/a/b/deep_spec.rb',
      'spec/models/post_spec.rb',
      'spec/models/user_spec.rb',
      'spec/x_spec.rb',
      'test/t1.py',
      'test/t2.py',
      'test/t3.rb',
      'top_spec.rb',
    ]);
    expect(lines(run(shell, ['tests', 'glob', 'test/t[!1].py', './spec/[mx]*/*.rb'], { cwd }).out)).toEqual([
      'spec/models/post_spec.rb',
      'spec/models/user_spec.rb',
      'test/t2.py',
    ]);
    // `*` stops at a slash; an absolute pattern prints absolute paths; no match prints nothing
    expect(
      lines(run(shell, ['tests', 'glob', 'spec/*.rb', `${cwd}/test/*.rb`, 'nope/**/*.rb'], { cwd }).out),
    ).toEqual([`${cwd}/test/t3.rb`, 'spec/x_spec.rb']);
  });

  it('tests split by name: alphabetical round-robin from CIRCLE_NODE_INDEX/TOTAL, names from stdin or a file', () => {
    const input = 'd.rb b.rb\na.rb\n\n  c.rb e.rb\n';
    const shards = [0, 1].map((i) =>
      lines(
        run(shell, ['tests', 'split'], {
          input,
          env: { CIRCLE_NODE_INDEX: String(i), CIRCLE_NODE_TOTAL: '2' },
        }).out,
      ),
    );
    expect(shards).toEqual([
      ['a.rb', 'c.rb', 'e.rb'],
      ['b.rb', 'd.rb'],
    ]);
    const listFile = path.join(root, 'names.txt');
    writeFileSync(listFile, input);
    expect(lines(run(shell, ['tests', 'split', '--index', '1', '--total=2', listFile]).out)).toEqual([
      'b.rb',
      'd.rb',
    ]);
    // no parallelism: everything on the one node
    expect(lines(run(shell, ['tests', 'split'], { input }).out)).toHaveLength(5);
  });

  it('tests split by timings: autodetects filename or classname, says which, and warns about tests without timings', () => {
    const timings = path.join(root, `timings-${shell.name}.tsv`);
    writeFileSync(
      timings,
      timingsFile([
        { name: 'a1', classname: 'A', file: './spec/a_spec.rb', result: 'success', runTime: 10 },
        { name: 'a2', classname: 'A', file: './spec/a_spec.rb', result: 'success', runTime: 5 },
        { name: 'b', classname: 'B', file: 'spec/b_spec.rb', result: 'failure', runTime: 3 },
        { name: 'c', classname: 'C', file: `${root}/spec/c_spec.rb`, result: 'success', runTime: 2 },
      ]),
    );
    const input = 'spec/a_spec.rb spec/b_spec.rb spec/c_spec.rb spec/new_spec.rb spec/d_spec.rb';
    const env = { [TIMINGS_FILE_ENV]: timings, CIRCLE_NODE_TOTAL: '2' };
    const r0 = run(shell, ['tests', 'split', '--split-by=timings', '--show-counts'], {
      input,
      env: { ...env, CIRCLE_NODE_INDEX: '0' },
    });
    const r1 = run(shell, ['tests', 'split', '--split-by=timings'], {
      input,
      env: { ...env, CIRCLE_NODE_INDEX: '1' },
    });
    // a (15s) alone; b+c (5s) together; the two new files spread over both nodes, lightest first
    expect(lines(r0.out)).toEqual(['spec/a_spec.rb', 'spec/new_spec.rb']);
    expect(lines(r1.out)).toEqual(['spec/b_spec.rb', 'spec/c_spec.rb', 'spec/d_spec.rb']);
    expect(lines(r0.err)).toEqual([
      'Autodetected filename timings.',
      'No timing found for "spec/d_spec.rb"',
      'No timing found for "spec/new_spec.rb"',
      'node 0 of 2: 2 of 5 tests',
    ]);

    const byClass = run(
      shell,
      ['tests', 'split', '--split-by=timings', '--time-default=20s', '--index=0', '--total=2'],
      {
        input: 'A B C Z',
        env: { [TIMINGS_FILE_ENV]: timings },
      },
    );
    expect(lines(byClass.err)).toEqual(['Autodetected classname timings.', 'No timing found for "Z"']);
    expect(lines(byClass.out)).toEqual(['Z']); // Z weighs 20s by --time-default: heavier than A (15s)

    const byTestName = run(
      shell,
      [
        'tests',
        'split',
        '--split-by=timings',
        '--timings-type=testname',
        '--index=1',
        '--total=2',
        `--timings-file=${timings}`,
      ],
      { input: 'a1 a2 b c' }, // the env var points nowhere: --timings-file wins
    );
    expect(lines(byTestName.out)).toEqual(['a2', 'b', 'c']);
  });

  it('tests split by timings matches absolute report paths under the working directory (~ expanded)', () => {
    const home = path.join(root, 'home');
    const timings = path.join(root, `abs-${shell.name}.tsv`);
    writeFileSync(
      timings,
      timingsFile([
        { name: 'x', classname: 'X', file: `${home}/project/spec/x_spec.rb`, result: 'success', runTime: 9 },
        { name: 'y', classname: 'Y', file: `${home}/project/spec/y_spec.rb`, result: 'success', runTime: 1 },
        { name: 'z', classname: 'Z', file: `${home}/project/spec/z_spec.rb`, result: 'success', runTime: 1 },
      ]),
    );
    const r = run(
      shell,
      ['tests', 'split', '--split-by=timings', '--timings-type=filename', '--index=1', '--total=2'],
      {
        input: 'spec/x_spec.rb spec/y_spec.rb spec/z_spec.rb',
        env: { [TIMINGS_FILE_ENV]: timings, CIRCLE_WORKING_DIRECTORY: '~/project' },
      },
    );
    expect(r.err).toBe('');
    expect(lines(r.out)).toEqual(['spec/y_spec.rb', 'spec/z_spec.rb']);
  });

  it('tests split by timings without timing data falls back to name, with CircleCI message', () => {
    const r = run(shell, ['tests', 'split', '--split-by=timings', '--index=1', '--total=2'], {
      input: 'x y z',
    });
    expect(r.err).toBe('Error auto-detecting timing type, falling back to weighting by name.\n');
    expect(lines(r.out)).toEqual(['y']);
  });

  it('tests split by filesize: biggest files first onto the lightest node', () => {
    const cwd = path.join(root, 'repo');
    const input = 'spec/models/user_spec.rb spec/x_spec.rb test/t1.py top_spec.rb'; // sizes 24, 14, 10, 11
    const shards = [0, 1].map((i) =>
      lines(
        run(shell, ['tests', 'split', '--split-by=filesize', `--index=${i}`, '--total=2'], { cwd, input })
          .out,
      ),
    );
    // 24 → node 0; 14 → node 1; 11 → node 1 (25); 10 → node 0, the lighter (34)
    expect(shards).toEqual([
      ['spec/models/user_spec.rb', 'test/t1.py'],
      ['spec/x_spec.rb', 'top_spec.rb'],
    ]);
  });

  it('tests run pipes the shard to the command on stdin and skips the command for an empty shard', () => {
    const out = path.join(root, `run-${shell.name}.txt`);
    const cmd = `cat > '${out}'`;
    const r = run(shell, ['tests', 'run', `--command=${cmd}`, '--index=0', '--total=2', '--verbose'], {
      input: 'b a c',
    });
    expect(r.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('a c');
    expect(r.err).toContain('Running tests on node 0 of 2');
    rmSync(out);
    const empty = run(shell, ['tests', 'run', '--command', cmd, '--index=1', '--total=2'], { input: 'a' });
    expect(empty.code).toBe(0);
    expect(existsSync(out)).toBe(false);
    const failing = run(shell, ['tests', 'run', '--command=xargs false'], { input: 'a' });
    expect(failing.code).not.toBe(0);
    const missing = run(shell, ['tests', 'run'], { input: 'a' });
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('--command is required');
  });

  it('tests run in a failed-tests rerun keeps only the files and classes that failed, then splits them', () => {
    const failed = path.join(root, `failed-${shell.name}.tsv`);
    writeFileSync(
      failed,
      failedTestsFile({
        workflowId: 'wf-123',
        totalTests: 56,
        failed: [
          { name: 'works', classname: 'spec.b', file: './spec/b_spec.rb' },
          { name: 'also', classname: 'spec.b', file: './spec/b_spec.rb' },
          { name: 'c fails', classname: 'C', file: `${root}/spec/c_spec.rb` },
          { name: 'TestGone', classname: 'pkg/gone' },
          { name: 'TestQ', classname: 'pkg/q' },
        ],
      }),
    );
    const out = path.join(root, `rerun-${shell.name}.txt`);
    const cmd = `cat > '${out}'`;
    const env = { [FAILED_TESTS_FILE_ENV]: failed };
    const files = 'spec/a_spec.rb spec/b_spec.rb\nspec/c_spec.rb spec/d_spec.rb';
    const r = run(shell, ['tests', 'run', `--command=${cmd}`, '--verbose'], { input: files, env });
    expect(r.code).toBe(0);
    // by file (./ and an absolute path under the current directory match): b and c, nothing else
    expect(readFileSync(out, 'utf8')).toBe('spec/b_spec.rb spec/c_spec.rb');
    expect(r.err).toContain('received failed tests from workflow wf-123');
    expect(r.err).toContain('5 test(s) failed out of 56 total test(s). Rerunning 2 test file(s)');

    // the failed ones are split over the parallel runs like any input
    const node1 = run(shell, ['tests', 'run', `--command=${cmd}`, '--index=1', '--total=2'], {
      input: files,
      env,
    });
    expect(node1.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('spec/c_spec.rb');

    // by classname (Go packages): pkg/q failed, pkg/p did not
    run(shell, ['tests', 'run', `--command=${cmd}`, '--timings-type=classname'], {
      input: 'pkg/p pkg/q',
      env,
    });
    expect(readFileSync(out, 'utf8')).toBe('pkg/q');

    // by test name only with --timings-type=testname
    run(shell, ['tests', 'run', `--command=${cmd}`, '--timings-type=testname'], {
      input: 'TestP TestQ works',
      env,
    });
    expect(readFileSync(out, 'utf8')).toBe('TestQ works');
    run(shell, ['tests', 'run', `--command=${cmd}`], { input: 'TestP TestQ works spec.b', env });
    expect(readFileSync(out, 'utf8')).toBe('spec.b');

    // `tests split` never filters
    expect(lines(run(shell, ['tests', 'split'], { input: files, env }).out)).toHaveLength(4);
  });

  it('tests run in a failed-tests rerun runs everything when nothing failed or nothing matches', () => {
    const out = path.join(root, `rerun-all-${shell.name}.txt`);
    const cmd = `cat > '${out}'`;
    const none = path.join(root, `failed-none-${shell.name}.tsv`);
    writeFileSync(none, failedTestsFile({ workflowId: 'wf-1', totalTests: 3, failed: [] }));
    const r = run(shell, ['tests', 'run', `--command=${cmd}`], {
      input: 'b a',
      env: { [FAILED_TESTS_FILE_ENV]: none },
    });
    expect(r.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('a b');
    expect(r.err).toContain('No failed tests were recorded for the previous run of this job');

    // failures without file or classname matching any input name: CircleCI reruns everything
    const other = path.join(root, `failed-other-${shell.name}.tsv`);
    writeFileSync(
      other,
      failedTestsFile({ workflowId: 'wf-2', totalTests: 9, failed: [{ name: 'x', classname: 'X' }] }),
    );
    const all = run(shell, ['tests', 'run', `--command=${cmd}`], {
      input: 'b a',
      env: { [FAILED_TESTS_FILE_ENV]: other },
    });
    expect(readFileSync(out, 'utf8')).toBe('a b');
    expect(all.err).toContain('ensure your JUnit XML has a file or classname attribute');

    const unreadable = run(shell, ['tests', 'run', `--command=${cmd}`], {
      input: 'a',
      env: { [FAILED_TESTS_FILE_ENV]: path.join(root, 'no-such-file.tsv') },
    });
    expect(unreadable.code).toBe(1);
    expect(unreadable.err).toContain('cannot read the failed tests');
  });

  it('step halt writes the marker file the agent checks (env path, else under $HOME)', () => {
    const marker = path.join(root, `halt-${shell.name}`, 'halt');
    expect(run(shell, ['step', 'halt'], { env: { [HALT_FILE_ENV]: marker } }).code).toBe(0);
    expect(existsSync(marker)).toBe(true);
    const home = path.join(root, 'home');
    const env = shimEnvironment(home);
    rmSync(path.join(home, '.circleci-torus'), { recursive: true, force: true });
    expect(run(shell, ['task', 'halt']).code).toBe(0);
    expect(existsSync(env[HALT_FILE_ENV] ?? '')).toBe(true);
  });

  it('rejects what it does not support, naming what Torus supports', () => {
    const r = run(shell, ['config', 'validate']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('unknown command "config validate"');
    expect(r.err).toContain('tests split');
    expect(run(shell, ['tests', 'split', '--split-by=magic'], { input: 'a' }).err).toContain(
      'allowed values are "name", "filesize", and "timings"',
    );
    expect(run(shell, ['tests', 'split', '--index=4', '--total=4'], { input: 'a' }).err).toContain(
      'index 4 must be less than total 4',
    );
    expect(
      run(shell, ['tests', 'split', '--time-default=soon', '--split-by=timings'], { input: 'a' }).err,
    ).toContain('invalid --time-default');
  });

  it('env subst replaces $VAR and ${VAR}', () => {
    const r = run(shell, ['env', 'subst'], {
      input: '{"foo": "$FOO", "p": "${PROVIDER}", "n": "$NOPE"}\n',
      env: { FOO: 'bar', PROVIDER: 'circleci' },
    });
    expect(r.out).toBe('{"foo": "bar", "p": "circleci", "n": ""}\n');
  });
});

// ---------------------------------------------------------------------------------------------
// Balance: timings from a realistic JUnit report, 4 nodes.

/** Deterministic PRNG (mulberry32) so the report is the same on every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An RSpec-style report: 200 spec files, 1–30 examples each, heavy-tailed durations (a few slow feature specs). */
function realisticReport(): string {
  const rand = prng(42);
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<testsuite name="rspec" tests="0" failures="0" time="0">',
  ];
  for (let f = 0; f < 200; f++) {
    const kind = f % 10 === 0 ? 'features' : f % 3 === 0 ? 'requests' : 'models';
    const file = `./spec/${kind}/file_${String(f).padStart(3, '0')}_spec.rb`;
    const examples = 1 + Math.floor(rand() * 30);
    const scale = kind === 'features' ? 4 : kind === 'requests' ? 0.6 : 0.08;
    for (let e = 0; e < examples; e++) {
      const seconds = scale * -Math.log(1 - rand()) * (rand() < 0.03 ? 10 : 1); // exponential, rare 10× outliers
      out.push(
        `  <testcase classname="spec.${kind}.file_${f}_spec" name="example ${e} &amp; more" file="${file}" time="${seconds.toFixed(6)}"/>`,
      );
    }
  }
  out.push('</testsuite>');
  return out.join('\n');
}

describe('timings split balance (4 nodes, 200 files from a JUnit report)', () => {
  let tests: TestCase[];
  let files: string[];
  let perFile: Map<string, number>;
  let timingsPath: string;

  beforeAll(async () => {
    tests = (await parseJUnitString(realisticReport(), 'rspec.xml')).tests;
    timingsPath = path.join(root, 'balance-timings.tsv');
    writeFileSync(timingsPath, timingsFile(tests));
    perFile = new Map();
    for (const t of tests) {
      const f = (t.file ?? '').replace(/^\.\//, '');
      perFile.set(f, (perFile.get(f) ?? 0) + t.runTime);
    }
    files = [...perFile.keys()].reverse(); // input order must not matter
  });

  it('puts the slowest shard within 10% of the ideal, covers every file exactly once, on every shell, deterministically', () => {
    const total = [...perFile.values()].reduce((a, b) => a + b, 0);
    const ideal = total / 4;
    expect(Math.max(...perFile.values())).toBeLessThan(ideal); // the data allows a balanced split
    const results = SHELLS.map((shell) =>
      [0, 1, 2, 3].map((i) => {
        const r = run(shell, ['tests', 'split', '--split-by=timings', `--index=${i}`, '--total=4'], {
          input: files.join('\n') + '\n',
          env: { [TIMINGS_FILE_ENV]: timingsPath },
        });
        expect(r.code).toBe(0);
        expect(r.err).toBe('Autodetected filename timings.\n');
        return lines(r.out);
      }),
    );
    const shards = results[0] ?? [];
    const all = shards.flat();
    expect(all).toHaveLength(200);
    expect(new Set(all).size).toBe(200);
    expect(new Set(all)).toEqual(new Set(files));
    const loads = shards.map((s) => s.reduce((sum, f) => sum + (perFile.get(f) ?? 0), 0));
    expect(Math.max(...loads)).toBeLessThanOrEqual(ideal * 1.1);
    // every shell computes the same split, and again on a second run
    expect(results[1]).toEqual(shards);
    expect(results[2]).toEqual(shards);
    const again = run(
      SHELLS[0] as Shell,
      ['tests', 'split', '--split-by=timings', '--index=2', '--total=4'],
      {
        input: [...files].sort().join(' '),
        env: { [TIMINGS_FILE_ENV]: timingsPath },
      },
    );
    expect(lines(again.out)).toEqual(shards[2]);
  });

  it('splits by name into a partition too (no duplicates, nothing lost)', () => {
    const shards = [0, 1, 2, 3].map((i) =>
      lines(
        run(SHELLS[0] as Shell, ['tests', 'split', `--index=${i}`, '--total=4'], { input: files.join(' ') })
          .out,
      ),
    );
    expect(shards.map((s) => s.length)).toEqual([50, 50, 50, 50]);
    expect(new Set(shards.flat())).toEqual(new Set(files));
  });
});
