// Orbs: resolved through an OrbResolver or written inline, their elements used as alias/element,
// lexical scoping inside an orb, and `circleci orb pack` for src/ trees.
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { compileConfig, type OrbResolver } from './index.js';
import { packOrb } from './corpus-orbs.js';
import { clearOrbCache, parseOrb } from './orbs.js';

const GREETER = `
version: 2.1
orbs:
  util: acme/util@1.0.0
commands:
  greet:
    parameters:
      who: {type: string, default: world}
    steps:
      - run: echo hello << parameters.who >>
      - util/mark
executors:
  default:
    parameters:
      tag: {type: string, default: "3.19"}
    docker: [{image: "alpine:<< parameters.tag >>"}]
jobs:
  hello:
    parameters:
      e: {type: executor, default: default}
    executor: << parameters.e >>
    steps: [checkout, greet]
`;
const UTIL = `
version: 2.1
commands:
  mark:
    steps: [run: touch /tmp/mark]
`;

function resolver(sources: Record<string, string>): OrbResolver & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    resolve(ref: string) {
      asked.push(ref);
      const s = sources[ref];
      return Promise.resolve(s === undefined ? null : { version: ref.split('@')[1]!, source: s });
    },
  };
}

describe('orbs', () => {
  it('uses orb commands, executors and jobs, with the orb scoping its own names', async () => {
    const r = await compileConfig(
      `version: 2.1
orbs:
  g: acme/greeter@2.0.0
commands:
  greet:
    steps: [run: echo the config's greet]
executors:
  mine: {machine: {image: ubuntu-2204:current}}
jobs:
  local:
    executor: g/default
    steps: [g/greet, greet]
workflows:
  w:
    jobs:
      - local
      - g/hello
      - g/hello: {name: on-vm, e: mine}
`,
      { orbResolver: resolver({ 'acme/greeter@2.0.0': GREETER, 'acme/util@1.0.0': UTIL }) },
    );
    if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'));
    const [local, hello, onVm] = r.config.workflows[0]!.jobs;
    expect(r.config.jobs[local!.job!]!.executor).toEqual({
      type: 'docker',
      images: [{ image: 'alpine:3.19', environment: {} }],
    });
    expect(r.config.jobs[local!.job!]!.steps.map((s) => s.name)).toEqual([
      'echo hello world',
      'touch /tmp/mark',
      "echo the config's greet",
    ]);
    // inside the orb, `greet` is the orb's command, not the config's
    expect(r.config.jobs[hello!.job!]!.steps.map((s) => s.name)).toEqual([
      'Checkout code',
      'echo hello world',
      'touch /tmp/mark',
    ]);
    expect(hello!.name).toBe('g/hello');
    // an executor passed from the config resolves in the config
    expect(r.config.jobs[onVm!.job!]!.executor).toEqual({ type: 'machine', image: 'ubuntu-2204:current' });
    expect(r.processedYaml).not.toMatch(/orbs:/);
  });

  it('follows element aliases between orbs and override-with', async () => {
    const r = await compileConfig(
      `version: 2.1
orbs:
  tools:
    orbs:
      util: acme/util@1.0.0
    commands:
      mark: util/mark
    jobs:
      lint:
        docker: [{image: alpine}]
        steps: [mark]
jobs:
  lint:
    docker: [{image: alpine}]
    steps: [run: local lint]
  test:
    docker: [{image: alpine}]
    steps: [run: local test]
workflows:
  w:
    jobs:
      - lint: {override-with: tools/lint}
      - test: {override-with: tools/test}
`,
      { orbResolver: resolver({ 'acme/util@1.0.0': UTIL }) },
    );
    if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'));
    const [lint, test] = r.config.workflows[0]!.jobs;
    expect(lint!.name).toBe('lint');
    expect(r.config.jobs[lint!.job!]!.steps.map((s) => s.name)).toEqual(['touch /tmp/mark']);
    expect(r.config.jobs[test!.job!]!.steps.map((s) => s.name)).toEqual(['local test']);
  });

  it('supports inline orbs', async () => {
    const r = await compileConfig(
      `version: 2.1
orbs:
  tools:
    commands:
      lint:
        parameters: {dir: {type: string, default: .}}
        steps: [run: "lint << parameters.dir >>"]
jobs:
  build:
    docker: [{image: alpine}]
    steps: [{tools/lint: {dir: src}}]
`,
    );
    if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'));
    expect(r.config.jobs.build!.steps.map((s) => s.name)).toEqual(['lint src']);
  });

  it('reports an orb the resolver does not know, naming it and how to import it', async () => {
    const res = resolver({});
    const r = await compileConfig(
      `version: 2.1\norbs:\n  node: circleci/node@5.1.0\njobs:\n  build:\n    executor: node/default\n    steps: [checkout]\n`,
      {
        orbResolver: res,
      },
    );
    expect(res.asked).toEqual(['circleci/node@5.1.0']);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_ORB');
    expect(r.errors[0]!.message).toMatch(
      /config\.yml:3:3: orb circleci\/node@5\.1\.0 \(alias "node"\) was not found/,
    );
    expect(r.errors[0]!.hint).toBe('import it with: torus admin import-orb circleci/node@5.1.0');
  });

  it('reports an undeclared orb alias', async () => {
    const r = await compileConfig(
      `version: 2.1\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [aws/setup]\n`,
    );
    expect(r.ok === false && r.errors[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_ORB');
    expect(r.ok === false && r.errors[0]!.message).toMatch(/alias "aws", which is not declared/);
  });

  it('lets a pipeline parameter choose the orb version', async () => {
    const res = resolver({ 'acme/util@1.0.0': UTIL });
    const r = await compileConfig(
      `version: 2.1\nparameters:\n  v: {type: string, default: "1.0.0"}\norbs:\n  util: acme/util@<< pipeline.parameters.v >>\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [util/mark]\n`,
      { orbResolver: res },
    );
    expect(r.ok).toBe(true);
    expect(res.asked).toEqual(['acme/util@1.0.0']);
  });

  it('reports errors inside an orb at the orb source position', async () => {
    const r = await compileConfig(
      `version: 2.1\norbs:\n  b: acme/broken@1.0.0\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [b/go]\n`,
      {
        orbResolver: resolver({
          'acme/broken@1.0.0': 'version: 2.1\ncommands:\n  go:\n    steps:\n      - nothing-here\n',
        }),
      },
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_COMMAND');
    expect(r.errors[0]!.message).toMatch(
      /^orb acme\/broken@1\.0\.0:5:9: command "nothing-here" is not defined in orb b/,
    );
  });

  it('reuses a parsed orb across compiles without changing it, keeping errors located in the orb', async () => {
    const orb =
      'version: 2.1\ncommands:\n  go:\n    parameters:\n      n: {type: integer, default: 1}\n    steps:\n      - run: echo << parameters.n >>\n      - nothing-here\n';
    const config = (n: number): string =>
      `version: 2.1\norbs:\n  c: acme/cached@1.0.0\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [{c/go: {n: ${n}}}]\n`;
    const res = resolver({ 'acme/cached@1.0.0': orb });
    const first = parseOrb(orb, 'orb acme/cached@1.0.0');
    const snapshot = structuredClone(first.root);
    for (const n of [1, 2, 3]) {
      const r = await compileConfig(config(n), { orbResolver: res });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.errors.map((e) => e.message)).toEqual([
        'orb acme/cached@1.0.0:8:9: command "nothing-here" is not defined in orb c',
      ]);
    }
    // the same tree is served every time, frozen and unchanged by the compiles
    expect(parseOrb(orb, 'orb acme/cached@1.0.0')).toBe(first);
    expect(Object.isFrozen(first.root)).toBe(true);
    expect(first.root).toEqual(snapshot);
    clearOrbCache();
    expect(parseOrb(orb, 'orb acme/cached@1.0.0')).not.toBe(first);
  });
});

describe('packOrb', () => {
  const dir = mkdtempSync(join(tmpdir(), 'torus-orb-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('packs a src tree like circleci orb pack, inlining includes with << escaped', async () => {
    mkdirSync(join(dir, 'commands'));
    mkdirSync(join(dir, 'scripts'));
    mkdirSync(join(dir, 'tests'));
    writeFileSync(join(dir, '@orb.yml'), 'version: 2.1\ndescription: demo\nunknown-key: dropped\n');
    writeFileSync(
      join(dir, 'commands', 'greet.yml'),
      'parameters:\n  who: {type: string, default: x}\nsteps:\n  - run:\n      environment: {WHO: << parameters.who >>}\n      command: <<include(scripts/greet.sh)>>\n',
    );
    writeFileSync(join(dir, 'scripts', 'greet.sh'), 'cat <<EOF\nhello $WHO << not a param >>\nEOF\n');
    writeFileSync(join(dir, 'tests', 'ignored.yml'), 'jobs: {x: {}}\n');
    const packed = parse(packOrb(dir)) as Record<string, unknown>;
    expect(Object.keys(packed).sort()).toEqual(['commands', 'description', 'version']);
    const text = packOrb(dir);
    expect(text).toContain('\\<<EOF');
    const r = await compileConfig(
      `version: 2.1\norbs:\n  d: acme/demo@1.0.0\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [{d/greet: {who: me}}]\n`,
      {
        orbResolver: resolver({ 'acme/demo@1.0.0': text }),
      },
    );
    if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'));
    const step = r.config.jobs.build!.steps[0] as { command: string; environment: Record<string, string> };
    expect(step.command).toBe('cat <<EOF\nhello $WHO << not a param >>\nEOF\n');
    expect(step.environment).toEqual({ WHO: 'me' });
  });
});
