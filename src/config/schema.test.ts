// The JSON-schema check of 2.1 configs: every valid corpus config passes the patched schema, each
// patch is needed by a config CircleCI accepts, and typical mistakes give located, readable errors.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ConfigError } from './model.js';
import { CORPUS_DIR } from './corpus-orbs.js';
import { MAX_SCHEMA_ERRORS, SCHEMA_PATCHES, schemaValidator, validateSchema } from './schema.js';
import { parseFast } from './fast-source.js';
import { parseSource, type Value } from './source.js';

function check(source: string): { ok: boolean; errors: ConfigError[] } {
  const { root, sourceMap } = parseSource(source, 'config.yml');
  const ctx = { file: 'config.yml', sourceMap, errors: [] as ConfigError[] };
  const ok = validateSchema(root, ctx);
  return { ok, errors: ctx.errors };
}

/** A job around the given step lines (each already indented for `steps:`). */
function job(steps: string, jobKeys = ''): string {
  return [
    'version: 2.1',
    'jobs:',
    '  build:',
    '    docker:',
    '      - image: cimg/base:current',
    ...(jobKeys ? [jobKeys] : []),
    '    steps:',
    steps,
    'workflows:',
    '  main:',
    '    jobs: [build]',
    '',
  ].join('\n');
}

beforeAll(() => {
  schemaValidator();
});

const INDEX = join(CORPUS_DIR, 'INDEX.tsv');
let corpus: { file: string; text: string; root: Value }[] | undefined;

/** The valid 2.1 corpus configs, read once by the fast reader (the exact one only when it declines). */
function validCorpus(): { file: string; text: string; root: Value }[] {
  corpus ??= readFileSync(INDEX, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'))
    .filter((c) => c[4] === '2.1' && c[6]!.startsWith('valid'))
    .map((c) => {
      const text = readFileSync(join(CORPUS_DIR, 'configs', c[0]!), 'utf8');
      return { file: c[0]!, text, root: parseFast(text) ?? parseSource(text, c[0]!).root };
    });
  return corpus;
}

describe('the corpus', () => {
  it.skipIf(!existsSync(INDEX))('accepts every valid 2.1 corpus config', () => {
    const configs = validCorpus();
    expect(configs.length).toBeGreaterThanOrEqual(70);
    const validate = schemaValidator();
    const rejected = configs
      .filter((c) => !validate(c.root))
      .map(
        (c) =>
          `${c.file}: ${check(c.text)
            .errors.map((e) => e.message)
            .join('; ')}`,
      );
    expect(rejected).toEqual([]);
  });
});

/** For each patch: a piece of the config (or orb) its reason names, which CircleCI accepts. */
const PATCH_EXAMPLES: Record<string, string> = {
  // CircleCI-Public__circleci-cli.yml (snyk__cli.yml has windows.large)
  '/properties/executors/additionalProperties/oneOf/0/properties/resource_class': [
    'version: 2.1',
    'executors:',
    '  linux:',
    '    docker:',
    '      - image: cimg/go:1.23',
    '    resource_class: large.gen3',
    'jobs:',
    '  build:',
    '    executor: linux',
    '    steps: [checkout]',
  ].join('\n'),
  // CircleCI-Public__circleci-demo-javascript-express.yml
  '/definitions/step/oneOf/1/properties/store_artifacts/properties/prefix': job(
    '      - store_artifacts:\n          path: test-results.xml\n          prefix: tests',
  ),
  // circleci/slack@5.1.1 src/commands/notify.yml
  '/definitions/step/oneOf/1/properties/restore_cache/oneOf/0/properties/when': job(
    '      - restore_cache:\n          key: cache-{{ .Environment.CIRCLE_PIPELINE_ID }}\n          when: always',
  ),
  '/definitions/step/oneOf/1/properties/restore_cache/oneOf/1/properties/when': job(
    '      - restore_cache:\n          keys:\n            - cache-{{ .Environment.CIRCLE_PIPELINE_ID }}\n          when: always',
  ),
  // mozilla-services__autograph.yml
  '/definitions/step/oneOf/1/properties/run/oneOf/1/properties/name': job(
    '      - run:\n          name:\n          command: make integration-test',
  ),
  // sunpy__sunpy.yml
  '/definitions/step/oneOf/1/properties/add_ssh_keys/oneOf/1/properties/fingerprints': job(
    '      - add_ssh_keys:\n          fingerprints: "7b:8f:c8:1c:13:a3:b4:46:ec:9a:a5:0d:3f:62:69:78"',
  ),
};

/** Placeholders where the schema wants another type (ethereum__solidity.yml; circleci/go, docker orbs). */
const PLACEHOLDER_EXAMPLE = [
  'version: 2.1',
  'parameters:',
  '  ip_ranges: {type: boolean, default: false}',
  'commands:',
  '  notify:',
  '    parameters:',
  '      condition: {type: enum, enum: [on_fail, always], default: on_fail}',
  '      timeout: {type: string, default: 20m}',
  '      dlc: {type: boolean, default: false}',
  '      steps: {type: steps, default: []}',
  '    steps:',
  '      - setup_remote_docker:',
  '          docker_layer_caching: << parameters.dlc >>',
  '      - run:',
  '          command: ./notify.sh',
  '          when: << parameters.condition >>',
  '          no_output_timeout: << parameters.timeout >>',
  '      - when:',
  '          condition: << parameters.dlc >>',
  '          steps: << parameters.steps >>',
  'jobs:',
  '  build:',
  '    docker: [{image: cimg/base:current}]',
  '    circleci_ip_ranges: << pipeline.parameters.ip_ranges >>',
  '    steps: [notify]',
].join('\n');

describe('patches', () => {
  let unpatched: (root: unknown) => boolean;
  beforeAll(() => {
    const ajv = new Ajv({
      strict: false,
      logger: false,
      messages: false,
      inlineRefs: false,
      code: { optimize: false },
    });
    ajv.addFormat('uri', true);
    const schema = JSON.parse(
      readFileSync(new URL('./circleci-config.schema.json', import.meta.url), 'utf8'),
    ) as object;
    const v = ajv.compile(schema);
    unpatched = (root) => v(root);
  });

  it('has an example for every patch, accepted only with the patch', () => {
    expect(Object.keys(PATCH_EXAMPLES).sort()).toEqual(SCHEMA_PATCHES.map((p) => p.pointer).sort());
    for (const patch of SCHEMA_PATCHES) {
      const source = PATCH_EXAMPLES[patch.pointer]!;
      expect(check(source).errors, patch.pointer).toEqual([]);
      expect(unpatched(parseSource(source, 'x').root), patch.pointer).toBe(false);
    }
  });

  it('lets `<< >>` placeholders stand for booleans, enum values, patterns and step lists', () => {
    expect(check(PLACEHOLDER_EXAMPLE).errors).toEqual([]);
    expect(unpatched(parseSource(PLACEHOLDER_EXAMPLE, 'x').root)).toBe(false);
  });

  it('still refuses what the patches do not cover', () => {
    expect(check(job('      - store_artifacts:\n          path: a\n          prefx: b')).ok).toBe(false);
    expect(check(job('      - add_ssh_keys:\n          fingerprints: 7')).ok).toBe(false);
    expect(check(job('      - run:\n          command: x\n          when: never')).ok).toBe(false);
  });
});

describe('user mistakes', () => {
  it('names a misspelt key of a built-in step, where it is, with the likely key', () => {
    const r = check(
      job('      - checkout\n      - save_cache:\n          key: v1\n          pahts: [node_modules]'),
    );
    expect(r.ok).toBe(false);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({
      code: 'TORUS_E_CONFIG_SCHEMA',
      line: 10,
      column: 11,
      message: 'config.yml:10:11: jobs.build.steps[1].save_cache: unknown key "pahts"',
      hint: 'did you mean "paths"?',
    });
  });

  it('names a missing required key and the misspelling that stands for it', () => {
    const r = check(job('      - run:\n          comand: make test'));
    expect(r.errors.map((e) => [e.message, e.hint])).toEqual([
      [
        'config.yml:7:9: jobs.build.steps[0].run: missing required key "command"',
        '"comand" should probably be "command"',
      ],
    ]);
  });

  it('says which type parallelism needs, with one error instead of every alternative', () => {
    const r = check(job('      - checkout', '    parallelism: four'));
    expect(r.errors.map((e) => e.message)).toEqual([
      'config.yml:6:5: jobs.build.parallelism: must be an integer, not the string "four"',
    ]);
    const quoted = check(job('      - checkout', '    parallelism: "4"'));
    expect(quoted.errors[0]?.hint).toBe('write the number without quotes');
  });

  it('refuses a resource class that is not a string', () => {
    const r = check(job('      - checkout', '    resource_class: 4'));
    expect(r.errors.map((e) => e.message)).toEqual([
      'config.yml:6:5: jobs.build.resource_class: must be a string, not the number 4',
    ]);
  });

  it('merges the alternatives of a step that is neither text nor a map', () => {
    const r = check(job('      - run: 5'));
    expect(r.errors.map((e) => e.message)).toEqual([
      'config.yml:7:9: jobs.build.steps[0].run: must be a string or a map, not the number 5',
    ]);
  });

  it('lists the allowed values of an enum', () => {
    const r = check(job('      - run:\n          command: x\n          when: sometimes'));
    expect(r.errors[0]).toMatchObject({
      message: 'config.yml:9:11: jobs.build.steps[0].run.when: the string "sometimes" is not allowed here',
      hint: 'use one of: always, on_success, on_fail',
    });
  });

  it('points at a key indented too little', () => {
    const r = check(job('      - run:\n        command: make'));
    expect(r.errors[0]).toMatchObject({
      message: 'config.yml:7:9: jobs.build.steps[0]: takes at most 1 key(s)',
      hint: 'are the keys after the first indented one level too little?',
    });
  });

  it('reports errors in different places separately, in workflows too', () => {
    const r = check(
      [
        'version: 2.1',
        'jobs:',
        '  build:',
        '    docker: [{imag: cimg/base:current}]',
        '    steps: [checkout]',
        'workflows:',
        '  main:',
        '    jobs:',
        '      - build:',
        '          filters:',
        '            branches:',
        '              onli: main',
      ].join('\n'),
    );
    expect(r.errors.map((e) => [e.message, e.hint])).toEqual([
      ['config.yml:4:15: jobs.build.docker[0]: unknown key "imag"', 'did you mean "image"?'],
      [
        'config.yml:12:15: workflows.main.jobs[0].build.filters.branches: unknown key "onli"',
        'did you mean "only"?',
      ],
    ]);
  });

  it(`reports at most ${MAX_SCHEMA_ERRORS} errors`, () => {
    const steps = Array.from(
      { length: 15 },
      (_, i) => `      - save_cache:\n          key: k${i}\n          pats: [a]`,
    );
    const r = check(job(steps.join('\n')));
    expect(r.errors).toHaveLength(MAX_SCHEMA_ERRORS);
    expect(r.errors[9]!.message).toContain('jobs.build.steps[9].save_cache: unknown key "pats"');
  });

  it('accepts unknown top-level keys, where configs keep their YAML anchors', () => {
    const r = check(`references:\n  img: &img cimg/base:current\n${job('      - checkout')}`);
    expect(r.errors).toEqual([]);
  });
});

describe('speed', () => {
  it.skipIf(!existsSync(INDEX))('validates a corpus config in well under a millisecond (p50)', () => {
    const files = validCorpus().map((c) => c.root);
    const validate = schemaValidator();
    const times: number[] = [];
    for (let round = 0; round < 5; round++) {
      for (const root of files) {
        const start = performance.now();
        validate(root);
        times.push(performance.now() - start);
      }
    }
    times.sort((a, b) => a - b);
    const p50 = times[times.length >> 1]!;
    console.log(`schema validation p50 ${p50.toFixed(3)} ms over ${files.length} corpus configs`);
    expect(p50).toBeLessThan(1);
  });
});
