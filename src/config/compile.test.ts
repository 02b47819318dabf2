// Unit tests of the config compiler, one block per feature a config author relies on.
import { describe, expect, it } from 'vitest';
import {
  compileConfig,
  DEFAULT_NO_OUTPUT_TIMEOUT_MS,
  type CompileOptions,
  type CompileResult,
  type CompiledConfig,
  type Step,
} from './index.js';

async function ok(
  source: string,
  opts: CompileOptions = {},
): Promise<CompiledConfig & { processedYaml: string }> {
  const r = await compileConfig(source, opts);
  if (!r.ok)
    throw new Error(`expected success, got:\n${r.errors.map((e) => `${e.code} ${e.message}`).join('\n')}`);
  return { ...r.config, processedYaml: r.processedYaml };
}

async function fail(
  source: string,
  opts: CompileOptions = {},
): Promise<Extract<CompileResult, { ok: false }>['errors']> {
  const r = await compileConfig(source, opts);
  if (r.ok) throw new Error(`expected failure, got success:\n${r.processedYaml}`);
  return r.errors;
}

function yaml(lines: string): string {
  return lines.replace(/^\n/, '');
}

const DOCKER = 'docker: [{image: cimg/base:stable}]';

describe('YAML parsing', () => {
  it('reports invalid YAML with file, line and column', async () => {
    const errors = await fail('version: 2.1\njobs:\n  build: [unclosed\n');
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_YAML');
    expect(errors[0]!.line).toBeGreaterThan(0);
    expect(errors[0]!.column).toBeGreaterThan(0);
    expect(errors[0]!.message).toMatch(/^\.circleci\/config\.yml:\d+:\d+: /);
  });

  it('rejects duplicate keys and names the line', async () => {
    const errors = await fail(
      `version: 2.1\njobs:\n  a:\n    ${DOCKER}\n    steps: [checkout]\n  a:\n    ${DOCKER}\n    steps: [checkout]\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_YAML');
    expect(errors[0]!.line).toBe(6);
    expect(errors[0]!.message).toMatch(/unique/i);
  });

  it('rejects tab indentation', async () => {
    const errors = await fail('version: 2.1\njobs:\n\tbuild:\n');
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_YAML');
    expect(errors[0]!.message).toMatch(/config\.yml:3:1: .*[Tt]ab/);
  });

  it('uses the filename option in messages', async () => {
    const errors = await fail('version: [', { filename: 'ci/other.yml' });
    expect(errors[0]!.file).toBe('ci/other.yml');
    expect(errors[0]!.message.startsWith('ci/other.yml:')).toBe(true);
  });

  it('expands anchors, aliases and merge keys', async () => {
    const c = await ok(
      yaml(`
version: 2
defaults: &defaults
  docker: [{image: node:18}]
  working_directory: ~/app
  environment: {A: "1"}
jobs:
  build:
    <<: *defaults
    environment: {B: "2"}
    steps: [checkout]
  test:
    <<: *defaults
    steps: [checkout, {run: npm test}]
`),
    );
    expect(c.jobs.build!.workingDirectory).toBe('~/app');
    expect(c.jobs.build!.environment).toEqual({ B: '2' });
    expect(c.jobs.test!.environment).toEqual({ A: '1' });
    expect(c.jobs.test!.executor).toEqual({
      type: 'docker',
      images: [{ image: 'node:18', environment: {} }],
    });
  });

  it('lets a redefined anchor win for the aliases after it', async () => {
    const c = await ok(
      `version: 2\njobs:\n  build:\n    ${DOCKER}\n    environment: {A: &v one, B: *v, C: &v two, D: *v}\n    steps: [checkout]\n`,
    );
    expect(c.jobs.build!.environment).toEqual({ A: 'one', B: 'one', C: 'two', D: 'two' });
  });

  it('reads YAML 1.1 booleans like CircleCI (yes/on) but keeps y/n as text', async () => {
    const c = await ok(
      `version: 2\njobs:\n  build:\n    ${DOCKER}\n    environment: {A: yes, B: y, C: 3}\n    steps: [checkout]\n`,
    );
    expect(c.jobs.build!.environment).toEqual({ A: 'true', B: 'y', C: '3' });
  });
});

describe('version', () => {
  it('requires version', async () => {
    const errors = await fail(`jobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\n`);
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_VERSION');
    expect(errors[0]!.message).toMatch(/no version/);
  });
  it('rejects unknown versions', async () => {
    const errors = await fail(`version: 3\njobs: {}\n`);
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_VERSION');
    expect(errors[0]!.line).toBe(1);
  });
  it('rejects 2.1 features in a 2.0 config', async () => {
    const errors = await fail(
      `version: 2\ncommands:\n  x: {steps: [checkout]}\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_VERSION');
    expect(errors[0]!.message).toMatch(/commands.*2\.1/);
  });
});

describe('version 2 configs', () => {
  const v2 = yaml(`
version: 2.0
jobs:
  build:
    docker:
      - image: cimg/node:18.0
        environment: {NODE_ENV: test}
      - image: postgres:15
        name: db
        entrypoint: /bin/sh
    resource_class: large
    parallelism: 4
    steps:
      - checkout
      - run: npm ci
      - run:
          name: Test
          command: |
            npm test
            npm run lint
          no_output_timeout: 20m
          environment: {CI: true}
          shell: /bin/bash
          working_directory: ~/app/sub
          when: always
          background: true
      - save_cache: {key: 'v1-{{ checksum "package-lock.json" }}', paths: [node_modules]}
      - restore_cache: {keys: [v1-]}
      - persist_to_workspace: {root: ., paths: [dist]}
      - attach_workspace: {at: /tmp/ws}
      - store_artifacts: {path: dist}
      - store_test_results: {path: reports}
      - setup_remote_docker
      - checkout: {path: ~/src}
  deploy:
    machine: true
    steps: [checkout]
  mac:
    macos: {xcode: 14.2.0}
    steps: [checkout]
  vm:
    machine: {image: ubuntu-2204:current, docker_layer_caching: true}
    steps: [checkout]
workflows:
  version: 2
  ci:
    jobs:
      - build:
          context: org-global
          filters: {branches: {only: main, ignore: [/wip-.*/]}}
      - hold: {type: approval, requires: [build]}
      - deploy:
          requires: [hold]
          context: [a, b]
          filters: {tags: {only: /^v.*/}}
  nightly:
    triggers:
      - schedule: {cron: "0 0 * * *", filters: {branches: {only: [main]}}}
    jobs: [build]
`);

  it('normalizes executors, defaults and job settings', async () => {
    const c = await ok(v2);
    expect(c.sourceVersion).toBe('2');
    const build = c.jobs.build!;
    expect(build.executor).toEqual({
      type: 'docker',
      images: [
        { image: 'cimg/node:18.0', environment: { NODE_ENV: 'test' } },
        { image: 'postgres:15', name: 'db', entrypoint: ['/bin/sh'], environment: {} },
      ],
    });
    expect(build.resourceClass).toBe('large');
    expect(build.parallelism).toBe(4);
    expect(build.workingDirectory).toBe('~/project');
    expect(c.jobs.deploy!.executor).toEqual({ type: 'machine' });
    expect(c.jobs.deploy!.resourceClass).toBe('medium');
    expect(c.jobs.mac!.executor).toEqual({ type: 'macos', xcode: '14.2.0' });
    expect(c.jobs.vm!.executor).toEqual({
      type: 'machine',
      image: 'ubuntu-2204:current',
      dockerLayerCaching: true,
    });
  });

  it('normalizes steps with CircleCI defaults', async () => {
    const steps = (await ok(v2)).jobs.build!.steps;
    expect(steps.map((s) => s.type)).toEqual([
      'checkout',
      'run',
      'run',
      'save_cache',
      'restore_cache',
      'persist_to_workspace',
      'attach_workspace',
      'store_artifacts',
      'store_test_results',
      'setup_remote_docker',
      'checkout',
    ]);
    expect(steps[0]).toEqual({ type: 'checkout', name: 'Checkout code', when: 'on_success' });
    expect(steps[1]).toEqual({
      type: 'run',
      name: 'npm ci',
      command: 'npm ci',
      environment: {},
      noOutputTimeoutMs: DEFAULT_NO_OUTPUT_TIMEOUT_MS,
      when: 'on_success',
      background: false,
    });
    expect(steps[2]).toEqual({
      type: 'run',
      name: 'Test',
      command: 'npm test\nnpm run lint\n',
      environment: { CI: 'true' },
      noOutputTimeoutMs: 20 * 60_000,
      when: 'always',
      background: true,
      shell: '/bin/bash',
      workingDirectory: '~/app/sub',
    });
    expect(steps.slice(3, 10).map((s) => [s.name, s.when])).toEqual([
      ['Saving cache', 'on_success'],
      ['Restoring cache', 'on_success'],
      ['Persisting to Workspace', 'on_success'],
      ['Attaching Workspace', 'on_success'],
      ['Uploading artifacts', 'always'],
      ['Uploading test results', 'always'],
      ['Setup a remote Docker engine', 'on_success'],
    ]);
    expect((steps[3] as Extract<Step, { args: unknown }>).args).toEqual({
      key: 'v1-{{ checksum "package-lock.json" }}',
      paths: ['node_modules'],
    });
    expect(steps[10]).toEqual({ type: 'checkout', name: 'Checkout code', when: 'on_success', path: '~/src' });
  });

  it('normalizes workflows: approval, requires, filters, contexts, triggers', async () => {
    const c = await ok(v2);
    expect(c.workflows.map((w) => w.name)).toEqual(['ci', 'nightly']);
    const [build, hold, deploy] = c.workflows[0]!.jobs;
    expect(build).toEqual({
      name: 'build',
      job: 'build',
      type: 'build',
      requires: [],
      filters: { branches: { only: ['main'], ignore: ['/wip-.*/'] } },
      context: ['org-global'],
    });
    expect(hold).toEqual({
      name: 'hold',
      type: 'approval',
      requires: [{ name: 'build', statuses: ['success'] }],
      filters: {},
      context: [],
    });
    expect(deploy!.requires).toEqual([{ name: 'hold', statuses: ['success'] }]);
    expect(deploy!.context).toEqual(['a', 'b']);
    expect(deploy!.filters).toEqual({ tags: { only: ['/^v.*/'] } });
    expect(c.workflows[1]!.triggers).toEqual([
      { cron: '0 0 * * *', filters: { branches: { only: ['main'] } } },
    ]);
  });

  it('rejects steps that are not built-in in a 2.0 config', async () => {
    const errors = await fail(`version: 2\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout, greet]\n`);
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_COMMAND');
    expect(errors[0]!.message).toMatch(/config\.yml:5:\d+: step "greet" is not a built-in step/);
  });

  it('runs the build job when there are no workflows', async () => {
    const c = await ok(`version: 2\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\n`);
    expect(c.workflows).toHaveLength(1);
    expect(c.workflows[0]!.jobs.map((j) => j.job)).toEqual(['build']);
  });

  it('parses no_output_timeout forms', async () => {
    const c = await ok(
      `version: 2\njobs:\n  build:\n    ${DOCKER}\n    steps:\n      - run: {command: a, no_output_timeout: 1.5h}\n      - run: {command: b, no_output_timeout: 30s}\n      - run: {command: c, no_output_timeout: 1h30m}\n`,
    );
    expect(
      c.jobs.build!.steps.map((s) =>
        s.type === 'run' ? (s as { noOutputTimeoutMs: number }).noOutputTimeoutMs : 0,
      ),
    ).toEqual([5_400_000, 30_000, 5_400_000]);
    const errors = await fail(
      `version: 2\njobs:\n  build:\n    ${DOCKER}\n    steps:\n      - run: {command: a, no_output_timeout: soon}\n`,
    );
    expect(errors[0]!.message).toMatch(/config\.yml:6:\d+: no_output_timeout "soon"/);
  });
});

describe('2.1 reusable config', () => {
  it('expands commands with parameters, typed whole-scalar substitution and interpolation', async () => {
    const c = await ok(
      yaml(`
version: 2.1
commands:
  greet:
    parameters:
      who: {type: string, default: world}
      loud: {type: boolean, default: false}
    steps:
      - run: echo hello << parameters.who >>
      - when:
          condition: << parameters.loud >>
          steps: [run: echo LOUD]
jobs:
  build:
    parameters:
      n: {type: integer, default: 3}
    ${DOCKER}
    parallelism: << parameters.n >>
    steps:
      - greet
      - greet: {who: you, loud: true}
workflows:
  w:
    jobs: [build]
`),
    );
    const job = c.jobs.build!;
    expect(job.parallelism).toBe(3);
    expect(job.steps.map((s) => s.name)).toEqual(['echo hello world', 'echo hello you', 'echo LOUD']);
  });

  it('substitutes references in map keys', async () => {
    const c = await ok(
      `version: 2.1\njobs:\n  build:\n    parameters:\n      var: {type: env_var_name, default: TOKEN}\n    ${DOCKER}\n    environment:\n      << parameters.var >>: secret\n    steps: [checkout]\n`,
    );
    expect(c.jobs.build!.environment).toEqual({ TOKEN: 'secret' });
  });

  it('splices steps parameters and pre-steps/post-steps', async () => {
    const c = await ok(
      yaml(`
version: 2.1
jobs:
  build:
    parameters:
      extra: {type: steps, default: []}
    ${DOCKER}
    steps:
      - checkout
      - steps: << parameters.extra >>
      - run: done
workflows:
  w:
    jobs:
      - build:
          extra: [run: one, run: two]
          pre-steps: [run: pre]
          post-steps: [run: post]
`),
    );
    const wj = c.workflows[0]!.jobs[0]!;
    expect(c.jobs[wj.job!]!.steps.map((s) => s.name)).toEqual([
      'pre',
      'Checkout code',
      'one',
      'two',
      'done',
      'post',
    ]);
  });

  it('applies reusable executors with parameters; job keys override, environment merges', async () => {
    const c = await ok(
      yaml(`
version: 2.1
executors:
  node:
    parameters:
      tag: {type: string, default: "18.0"}
    docker: [{image: "cimg/node:<< parameters.tag >>"}]
    resource_class: large
    working_directory: ~/exec
    environment: {A: from-executor, B: from-executor}
jobs:
  a:
    executor: node
    environment: {B: from-job}
    steps: [checkout]
  b:
    executor: {name: node, tag: "20.1"}
    resource_class: small
    steps: [checkout]
  c:
    executor: node
    machine: true
    steps: [checkout]
workflows:
  w:
    jobs: [a, b, c]
`),
    );
    expect(c.jobs.a!.executor).toEqual({
      type: 'docker',
      images: [{ image: 'cimg/node:18.0', environment: {} }],
    });
    expect(c.jobs.a!.environment).toEqual({ A: 'from-executor', B: 'from-job' });
    expect(c.jobs.a!.resourceClass).toBe('large');
    expect(c.jobs.a!.workingDirectory).toBe('~/exec');
    expect(c.jobs.b!.executor).toEqual({
      type: 'docker',
      images: [{ image: 'cimg/node:20.1', environment: {} }],
    });
    expect(c.jobs.b!.resourceClass).toBe('small');
    expect(c.jobs.c!.executor).toEqual({ type: 'machine' });
  });

  it('accepts executor-typed job parameters', async () => {
    const c = await ok(
      yaml(`
version: 2.1
executors:
  small: {docker: [{image: alpine}]}
  big: {machine: {image: ubuntu-2204:current}}
jobs:
  build:
    parameters:
      e: {type: executor, default: small}
    executor: << parameters.e >>
    steps: [checkout]
workflows:
  w:
    jobs:
      - build
      - build: {name: on-vm, e: big}
`),
    );
    const [a, b] = c.workflows[0]!.jobs;
    expect(c.jobs[a!.job!]!.executor.type).toBe('docker');
    expect(c.jobs[b!.job!]!.executor).toEqual({ type: 'machine', image: 'ubuntu-2204:current' });
    expect(b!.name).toBe('on-vm');
  });

  it('substitutes pipeline parameters and pipeline values', async () => {
    const src = yaml(`
version: 2.1
parameters:
  target: {type: string, default: staging}
  run-it: {type: boolean, default: false}
  count: {type: integer, default: 2}
  flavour: {type: enum, enum: [a, b], default: a}
jobs:
  build:
    ${DOCKER}
    parallelism: << pipeline.parameters.count >>
    environment:
      BRANCH: << pipeline.git.branch >>
      TARGET: << pipeline.parameters.target >>
    steps:
      - run: echo deploy to << pipeline.parameters.target >> from << pipeline.git.branch >> (<< pipeline.number >>)
workflows:
  w:
    when: << pipeline.parameters.run-it >>
    jobs: [build]
  always:
    jobs: [build]
`);
    const values = { 'pipeline.git.branch': 'main', 'pipeline.number': 42 };
    const c1 = await ok(src, { pipelineValues: values });
    expect(c1.workflows.map((w) => w.name)).toEqual(['always']);
    expect(c1.jobs.build!.steps[0]!.name).toBe('echo deploy to staging from main (42)');
    expect(c1.jobs.build!.environment).toEqual({ BRANCH: 'main', TARGET: 'staging' });
    expect(c1.jobs.build!.parallelism).toBe(2);
    const c2 = await ok(src, {
      pipelineValues: values,
      pipelineParameters: { target: 'prod', 'run-it': true, count: 5 },
    });
    expect(c2.workflows.map((w) => w.name)).toEqual(['w', 'always']);
    expect(c2.jobs.build!.steps[0]!.name).toBe('echo deploy to prod from main (42)');
    expect(c2.jobs.build!.parallelism).toBe(5);
  });

  it('rejects undeclared or mistyped API pipeline parameters', async () => {
    const src = `version: 2.1\nparameters:\n  n: {type: integer, default: 1}\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\n`;
    const e1 = await fail(src, { pipelineParameters: { nope: 'x' } });
    expect(e1[0]!.code).toBe('TORUS_E_CONFIG_UNEXPECTED_ARGUMENT');
    expect(e1[0]!.message).toMatch(/nope/);
    const e2 = await fail(src, { pipelineParameters: { n: 'many' } });
    expect(e2[0]!.code).toBe('TORUS_E_CONFIG_PARAMETER_TYPE');
  });

  it('evaluates logic statements: and/or/not/equal/matches, when and unless', async () => {
    const c = await ok(
      yaml(`
version: 2.1
parameters:
  env: {type: string, default: prod}
jobs:
  build:
    ${DOCKER}
    steps:
      - when:
          condition: {and: [true, {equal: [prod, << pipeline.parameters.env >>]}]}
          steps: [run: a]
      - when:
          condition: {or: [false, {not: true}]}
          steps: [run: b]
      - unless:
          condition: {matches: {pattern: "^re.*$", value: << pipeline.git.branch >>}}
          steps: [run: c]
      - when:
          condition: {matches: {pattern: "release/.+", value: << pipeline.git.branch >>}}
          steps: [run: d]
      - when:
          condition: ""
          steps: [run: e]
workflows:
  w:
    jobs: [build]
`),
      { pipelineValues: { 'pipeline.git.branch': 'release/1.0' } },
    );
    expect(c.jobs.build!.steps.map((s) => s.name)).toEqual(['a', 'd']);
  });

  it('omits workflows whose unless is true', async () => {
    const c = await ok(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\nworkflows:\n  a:\n    unless: true\n    jobs: [build]\n  b:\n    jobs: [build]\n`,
    );
    expect(c.workflows.map((w) => w.name)).toEqual(['b']);
  });

  it('evaluates a bare expression string in workflow when', async () => {
    const src = `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\nworkflows:\n  release:\n    when: pipeline.git.branch == "main" and not (pipeline.git.tag starts-with "v")\n    jobs: [build]\n  all:\n    jobs: [build]\n`;
    const main = await ok(src, { pipelineValues: { 'pipeline.git.branch': 'main', 'pipeline.git.tag': '' } });
    expect(main.workflows.map((w) => w.name)).toEqual(['release', 'all']);
    const dev = await ok(src, { pipelineValues: { 'pipeline.git.branch': 'dev', 'pipeline.git.tag': '' } });
    expect(dev.workflows.map((w) => w.name)).toEqual(['all']);
  });

  it('decides filters written as an expression at compile time', async () => {
    const src = `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n      - build:\n          filters: pipeline.git.branch == "main"\n`;
    const main = await ok(src, { pipelineValues: { 'pipeline.git.branch': 'main' } });
    expect(main.workflows[0]!.jobs[0]!.filters).toEqual({});
    const dev = await ok(src, { pipelineValues: { 'pipeline.git.branch': 'dev' } });
    expect(dev.workflows[0]!.jobs[0]!.filters).toEqual({ branches: { only: [] } });
  });

  it('leaves escaped \\<< literal and non-parameter << text alone', async () => {
    const c = await ok(
      yaml(`
version: 2.1
jobs:
  build:
    ${DOCKER}
    steps:
      - run: |
          cat <<EOF >> out
          \\<< parameters.x >>
          EOF
workflows:
  w:
    jobs: [build]
`),
    );
    expect((c.jobs.build!.steps[0] as { command: string }).command).toBe(
      'cat <<EOF >> out\n<< parameters.x >>\nEOF\n',
    );
  });

  it('evaluates << >> expressions', async () => {
    const c = await ok(
      yaml(`
version: 2.1
parameters:
  env: {type: string, default: prod}
  n: {type: integer, default: 3}
jobs:
  build:
    ${DOCKER}
    steps:
      - run: echo << pipeline.parameters.env == "prod" and "live" or "test" >>
      - when:
          condition: << pipeline.parameters.n >= 2 >>
          steps: [run: big]
      - when:
          condition: << pipeline.parameters.env starts-with "de" >>
          steps: [run: dev]
workflows:
  w:
    jobs: [build]
`),
    );
    expect(c.jobs.build!.steps.map((s) => s.name)).toEqual(['echo live', 'big']);
  });

  it('evaluates expressions that mix parameters and pipeline values', async () => {
    const c = await ok(
      `version: 2.1\njobs:\n  build:\n    parameters:\n      branch: {type: string, default: main}\n    ${DOCKER}\n    steps:\n      - run: echo << parameters.branch == pipeline.git.branch and "deploy" or "skip" >>\n`,
      { pipelineValues: { 'pipeline.git.branch': 'main' } },
    );
    expect(c.jobs.build!.steps[0]!.name).toBe('echo deploy');
  });
});

describe('workflow invocations', () => {
  it('expands a matrix with CircleCI names, exclude and alias requires', async () => {
    const c = await ok(
      yaml(`
version: 2.1
jobs:
  build:
    parameters:
      version: {type: string}
      platform: {type: string}
    ${DOCKER}
    steps: [run: "build << parameters.platform >> << parameters.version >>"]
  deploy:
    ${DOCKER}
    steps: [checkout]
workflows:
  w:
    jobs:
      - build:
          matrix:
            parameters:
              version: ["0.1", "0.2", "0.3"]
              platform: [macos, linux, windows]
            exclude:
              - {version: "0.3", platform: windows}
      - deploy:
          requires: [build]
`),
    );
    const names = c.workflows[0]!.jobs.map((j) => j.name);
    expect(names).toHaveLength(9);
    expect(names).toContain('build-macos-0.1');
    expect(names).toContain('build-linux-0.3');
    expect(names).not.toContain('build-windows-0.3');
    const deploy = c.workflows[0]!.jobs.find((j) => j.name === 'deploy')!;
    expect(deploy.requires.map((r) => r.name).sort()).toEqual(names.filter((n) => n !== 'deploy').sort());
    const inst = c.workflows[0]!.jobs.find((j) => j.name === 'build-windows-0.2')!;
    expect(c.jobs[inst.job!]!.steps[0]!.name).toBe('build windows 0.2');
  });

  it('substitutes << matrix.x >> in names and requires, and honours alias', async () => {
    const c = await ok(
      yaml(`
version: 2.1
jobs:
  build:
    parameters: {v: {type: integer}}
    ${DOCKER}
    steps: [checkout]
  deploy:
    parameters: {v: {type: integer}}
    ${DOCKER}
    steps: [checkout]
  report:
    ${DOCKER}
    steps: [checkout]
workflows:
  w:
    jobs:
      - build:
          name: build-v<< matrix.v >>
          matrix: {alias: all-builds, parameters: {v: [1, 2]}}
      - deploy:
          name: deploy-v<< matrix.v >>
          requires: [build-v<< matrix.v >>]
          matrix: {parameters: {v: [1, 2]}}
      - report:
          requires: [all-builds]
`),
    );
    const jobs = Object.fromEntries(c.workflows[0]!.jobs.map((j) => [j.name, j.requires.map((r) => r.name)]));
    expect(jobs).toEqual({
      'build-v1': [],
      'build-v2': [],
      'deploy-v1': ['build-v1'],
      'deploy-v2': ['build-v2'],
      report: ['build-v1', 'build-v2'],
    });
  });

  it('suffixes repeated jobs and supports requires statuses', async () => {
    const c = await ok(
      yaml(`
version: 2.1
jobs:
  test:
    ${DOCKER}
    steps: [checkout]
  notify:
    ${DOCKER}
    steps: [checkout]
workflows:
  w:
    jobs:
      - test
      - test
      - notify:
          requires:
            - test-1: failed
            - test-2: [success, canceled]
      - test:
          name: cleanup
          requires: [{notify: terminal}]
`),
    );
    const jobs = c.workflows[0]!.jobs;
    expect(jobs.map((j) => j.name)).toEqual(['test-1', 'test-2', 'notify', 'cleanup']);
    expect(jobs[2]!.requires).toEqual([
      { name: 'test-1', statuses: ['failed'] },
      { name: 'test-2', statuses: ['success', 'canceled'] },
    ]);
    expect(jobs[3]!.requires).toEqual([
      { name: 'notify', statuses: ['success', 'failed', 'canceled', 'unauthorized', 'not_run'] },
    ]);
    expect(jobs[3]!.job).toBe('test');
  });
});

describe('semantic errors', () => {
  it('reports an unknown job in a workflow with its location', async () => {
    const errors = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n      - biuld\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_JOB');
    expect(errors[0]!.message).toMatch(/config\.yml:9:9: job "biuld" is not defined/);
    expect(errors[0]!.hint).toMatch(/build/);
  });

  it('reports unknown commands and executors', async () => {
    const errors = await fail(
      `version: 2.1\njobs:\n  build:\n    executor: nope\n    steps: [checkout, frobnicate]\nworkflows:\n  w:\n    jobs: [build]\n`,
    );
    const codes = errors.map((e) => e.code);
    expect(codes).toContain('TORUS_E_CONFIG_UNKNOWN_EXECUTOR');
    expect(codes).toContain('TORUS_E_CONFIG_UNKNOWN_COMMAND');
    expect(errors.find((e) => e.code === 'TORUS_E_CONFIG_UNKNOWN_COMMAND')!.message).toMatch(/"frobnicate"/);
  });

  it('reports requires of a job not in the workflow, and requires cycles', async () => {
    const base = `version: 2.1\njobs:\n  a:\n    ${DOCKER}\n    steps: [checkout]\n  b:\n    ${DOCKER}\n    steps: [checkout]\n`;
    const e1 = await fail(`${base}workflows:\n  w:\n    jobs:\n      - a: {requires: [c]}\n`);
    expect(e1[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_REQUIREMENT');
    expect(e1[0]!.message).toMatch(/requires "c"/);
    const e2 = await fail(
      `${base}workflows:\n  w:\n    jobs:\n      - a: {requires: [b]}\n      - b: {requires: [a]}\n`,
    );
    expect(e2[0]!.code).toBe('TORUS_E_CONFIG_REQUIRES_CYCLE');
    expect(e2[0]!.message).toMatch(/a → b → a|b → a → b/);
  });

  it('reports missing, unexpected and mistyped arguments', async () => {
    const src = (args: string): string =>
      `version: 2.1\njobs:\n  build:\n    parameters:\n      n: {type: integer}\n      e: {type: enum, enum: [x, y], default: x}\n    ${DOCKER}\n    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n      - build: ${args}\n`;
    const missing = await fail(src('{e: y}'));
    expect(missing[0]!.code).toBe('TORUS_E_CONFIG_MISSING_PARAMETER');
    expect(missing[0]!.message).toMatch(/"n"/);
    const unexpected = await fail(src('{n: 1, colour: red}'));
    expect(unexpected[0]!.code).toBe('TORUS_E_CONFIG_UNEXPECTED_ARGUMENT');
    expect(unexpected[0]!.message).toMatch(/Unexpected argument\(s\).*colour/);
    const typed = await fail(src('{n: lots}'));
    expect(typed[0]!.code).toBe('TORUS_E_CONFIG_PARAMETER_TYPE');
    const badEnum = await fail(src('{n: 1, e: z}'));
    expect(badEnum[0]!.code).toBe('TORUS_E_CONFIG_PARAMETER_TYPE');
    expect(badEnum[0]!.message).toMatch(/"z" is not one of/);
  });

  it('rejects a boolean passed to a string parameter', async () => {
    const errors = await fail(
      `version: 2.1\ncommands:\n  c:\n    parameters: {s: {type: string}}\n    steps: [run: echo << parameters.s >>]\njobs:\n  build:\n    ${DOCKER}\n    steps: [{c: {s: yes}}]\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_PARAMETER_TYPE');
  });

  it('reports references to undeclared parameters', async () => {
    const errors = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps:\n      - run: echo << parameters.message >>\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_UNDECLARED_PARAMETER');
    expect(errors[0]!.message).toMatch(
      /config\.yml:6:\d+: Arguments referenced without declared parameters: parameters\.message/,
    );
    const e2 = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps:\n      - run: echo << pipeline.parameters.nope >>\n`,
    );
    expect(e2[0]!.code).toBe('TORUS_E_CONFIG_UNDECLARED_PARAMETER');
    const e3 = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps:\n      - run: echo << pipeline.gti.branch >>\n`,
    );
    expect(e3[0]!.message).toMatch(/unknown pipeline value pipeline\.gti\.branch/);
    // a known value this pipeline does not have is empty, not an error
    const c = await ok(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps:\n      - run: echo "<< pipeline.git.tag >>"\n`,
    );
    expect(c.jobs.build!.steps[0]!.name).toBe('echo ""');
  });

  it('reports invalid element names and a job without steps', async () => {
    const e1 = await fail(
      `version: 2.1\ncommands:\n  9bad: {steps: [checkout]}\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\n`,
    );
    expect(e1[0]!.code).toBe('TORUS_E_CONFIG_INVALID_NAME');
    expect(e1[0]!.line).toBe(3);
    const e2 = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\nworkflows:\n  w:\n    jobs: [build]\n`,
    );
    expect(e2[0]!.code).toBe('TORUS_E_CONFIG_NO_STEPS');
  });

  it('rejects unknown job keys such as a misspelt steps', async () => {
    const errors = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps: [checkout]\n    paralelism: 2\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_SHAPE');
    expect(errors[0]!.message).toMatch(
      /config\.yml:6:5: job build: extraneous key \[paralelism\] is not permitted/,
    );
  });

  it('collects several errors in one compile', async () => {
    const errors = await fail(
      `version: 2.1\njobs:\n  build:\n    ${DOCKER}\n    steps: [nope1]\n  test:\n    ${DOCKER}\n    steps: [nope2]\nworkflows:\n  w:\n    jobs: [build, test, ghost]\n`,
    );
    expect(errors.map((e) => e.code).sort()).toEqual([
      'TORUS_E_CONFIG_UNKNOWN_COMMAND',
      'TORUS_E_CONFIG_UNKNOWN_COMMAND',
      'TORUS_E_CONFIG_UNKNOWN_JOB',
    ]);
  });

  it('reports orbs without a resolver as unknown, with the import command', async () => {
    const errors = await fail(
      `version: 2.1\norbs:\n  node: circleci/node@5.0.2\njobs:\n  build:\n    ${DOCKER}\n    steps: [node/install-packages]\n`,
    );
    expect(errors[0]!.code).toBe('TORUS_E_CONFIG_UNKNOWN_ORB');
    expect(errors[0]!.message).toMatch(/circleci\/node@5\.0\.2/);
    expect(errors[0]!.hint).toBe('import it with: torus admin import-orb circleci/node@5.0.2');
  });
});

describe('processed YAML', () => {
  const src = yaml(`
version: 2.1
commands:
  hi:
    parameters: {who: {type: string, default: you}}
    steps: [run: "echo hi << parameters.who >>"]
executors:
  ex: {docker: [{image: alpine}]}
jobs:
  build:
    parameters: {v: {type: string}}
    executor: ex
    steps: [checkout, hi, {hi: {who: "<< parameters.v >>"}}]
  lint:
    executor: ex
    steps: [run: "yes | lint"]
workflows:
  w:
    jobs:
      - lint
      - build:
          matrix: {parameters: {v: [a, "on"]}}
          requires: [lint]
      - hold: {type: approval, requires: [build]}
`);

  it('is a 2.0 config without 2.1 constructs', async () => {
    const c = await ok(src);
    expect(c.processedYaml).toMatch(/^version: 2\n/);
    expect(c.processedYaml).not.toMatch(/commands:|executors:|parameters|matrix|<</);
    expect(c.processedYaml).toContain('build-a');
    expect(c.processedYaml).toContain('echo hi a');
  });

  it('gives the same output when processed again', async () => {
    const c = await ok(src);
    const again = await ok(c.processedYaml);
    expect(again.processedYaml).toBe(c.processedYaml);
    expect(again.workflows).toEqual(c.workflows);
    expect(again.jobs).toEqual(c.jobs);
  });
});
