// The config-compile endpoints as the classic `circleci` CLI calls them: the CLI's exact request
// texts (circleci-cli-queries fixtures), sent with its headers and JSON encoding.
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { parse, print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileRoutes } from '../compile-routes.js';
import { declareUsedVariables, torusSchema } from './index.js';

const FIXTURES = fileURLToPath(new URL('../../../../shared/reference/circleci-cli-queries', import.meta.url));
const TOKEN = 'torus-test-token';

interface Fixture {
  name: string;
  query: string;
  variables: Record<string, unknown>;
}

function fixture(name: string): Fixture {
  return {
    name,
    // byte for byte, as the CLI sends it (tabs, no trailing newline)
    query: readFileSync(join(FIXTURES, `${name}.graphql`), 'utf8'),
    variables: JSON.parse(readFileSync(join(FIXTURES, `${name}.variables.json`), 'utf8')) as Record<
      string,
      unknown
    >,
  };
}

/** Go's json.Encoder: HTML-safe escapes and a trailing newline (circleci-cli api/graphql/client.go). */
function goJson(value: unknown): string {
  return (
    JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026') + '\n'
  );
}

const CLI_GRAPHQL_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  accept: 'application/json; charset=utf-8',
  'user-agent': 'circleci-cli/0.1.47860+a631c5b (release)',
  'circleci-cli-command': 'circleci config validate',
};

/** A stand-in registry holding the one orb the fixtures import (`circleci/node@5.2.0`). */
const NODE_ORB = `version: 2.1
description: Node.js (test copy)
commands:
  install-packages:
    steps:
      - run: npm ci
`;
const orbResolver = {
  resolve: (ref: string) =>
    Promise.resolve(ref === 'circleci/node@5.2.0' ? { version: '5.2.0', source: NODE_ORB } : null),
};

let app: FastifyInstance;

beforeAll(async () => {
  app = Fastify();
  // the parent app's JSON parser (src/api/index.ts) must not decide what this plugin answers
  app.removeContentTypeParser(['application/json']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, _body, done) =>
    done(new Error('parent parser used')),
  );
  await app.register(
    compileRoutes({
      authenticate: (t) => Promise.resolve(t === TOKEN ? { id: 'user-1' } : null),
      orbResolver,
    }),
  );
  await app.ready();
});

afterAll(async () => {
  await app.close();
});

interface BuildResult {
  valid: boolean;
  errors: { message: string }[];
  sourceYaml: string;
  outputYaml: string;
}

interface GraphQLBody {
  data: Record<string, BuildResult> | null;
  errors?: {
    message: string;
    locations?: { line: number; column: number }[];
    extensions: Record<string, unknown>;
  }[];
}

async function graphql(
  query: string,
  variables: Record<string, unknown>,
  headers: Record<string, string> = { authorization: TOKEN },
) {
  const res = await app.inject({
    method: 'POST',
    url: '/graphql-unstable',
    headers: { ...CLI_GRAPHQL_HEADERS, ...headers },
    payload: goJson({ query, variables }),
  });
  return { status: res.statusCode, body: res.json<GraphQLBody>() };
}

const BUILD_CONFIG_FIXTURES = [
  'buildConfig',
  'buildConfig-orgId',
  'buildConfig-pipelineParametersJson',
  'buildConfig-orgId-pipelineParametersJson',
];

describe('POST /graphql-unstable buildConfig (circleci config validate|process)', () => {
  it.each(BUILD_CONFIG_FIXTURES)('%s: the CLI query as sent compiles the config', async (name) => {
    const f = fixture(name);
    const { status, body } = await graphql(f.query, f.variables);
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const result = body.data!.buildConfig!;
    expect(result.errors).toEqual([]);
    expect(result.valid).toBe(true);
    expect(result.sourceYaml).toBe(f.variables.config);
    expect(result.outputYaml).toMatch(/^version: 2\n/);
    if (name.includes('pipelineParametersJson')) {
      // deploy=true keeps the `when:` workflow; env=staging is substituted
      expect(result.outputYaml).toContain('echo "deploying to staging"');
      expect(result.outputYaml).toMatch(/workflows:\n {2}version: 2\n {2}main:\n/);
    } else {
      expect(result.outputYaml).toContain('echo "building"');
    }
  });

  it('without pipelineParametersJson the declared defaults apply (deploy=false drops the workflow)', async () => {
    const f = fixture('buildConfig');
    const config = fixture('buildConfig-pipelineParametersJson').variables.config as string;
    const { body } = await graphql(f.query, { ...f.variables, config });
    const result = body.data!.buildConfig!;
    expect(result.valid).toBe(true);
    expect(result.outputYaml).toContain('echo "deploying to dev"');
    expect(result.outputYaml).not.toContain('main:');
  });

  it('reports an invalid config with file:line:column in each message', async () => {
    const f = fixture('buildConfig');
    const config =
      'version: 2.1\njobs:\n  build:\n    docker:\n      - image: cimg/base:2024.01\n    steps:\n      - nope\nworkflows:\n  main:\n    jobs: [build, deploy]\n';
    const { status, body } = await graphql(f.query, { ...f.variables, config });
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const result = body.data!.buildConfig!;
    expect(result.valid).toBe(false);
    expect(result.outputYaml).toBe('');
    expect(result.sourceYaml).toBe(config);
    const messages = result.errors.map((e) => e.message);
    expect(messages).toContainEqual(
      expect.stringMatching(/^\.circleci\/config\.yml:7:9: command "nope" is not defined/),
    );
    expect(messages).toContainEqual(
      expect.stringMatching(/^\.circleci\/config\.yml:10:19: job "deploy" is not defined/),
    );
  });

  it('reports a pipeline parameter of the wrong type, and malformed pipelineParametersJson', async () => {
    const f = fixture('buildConfig-pipelineParametersJson');
    const wrongType = await graphql(f.query, {
      ...f.variables,
      pipelineParametersJson: '{"deploy":3,"region":"eu"}',
    });
    const r1 = wrongType.body.data!.buildConfig!;
    expect(r1.valid).toBe(false);
    const messages = r1.errors.map((e) => e.message).join('\n');
    expect(messages).toMatch(/deploy/);
    expect(messages).toMatch(/region/);
    const badJson = await graphql(f.query, { ...f.variables, pipelineParametersJson: '{deploy' });
    const r2 = badJson.body.data!.buildConfig!;
    expect(r2.valid).toBe(false);
    expect(r2.errors[0]!.message).toMatch(/^pipelineParametersJson is not valid JSON/);
  });

  it('passes the fabricated pipeline values through to the compiler', async () => {
    const f = fixture('buildConfig');
    const config =
      'version: 2.1\njobs:\n  build:\n    docker:\n      - image: cimg/base:2024.01\n    steps:\n      - run: echo "<< pipeline.git.branch >> n=<< pipeline.number >> << pipeline.trigger_source >>"\n';
    const values = [
      { key: 'pipeline.git.branch', val: 'feature/x' },
      { key: 'pipeline.number', val: 1 },
      { key: 'pipeline.trigger_source', val: 'webhook' },
      { key: 'pipeline.event.github.pull_request.draft', val: false },
      { key: 'pipeline.event.github.pull_request.number', val: 111 },
    ];
    const { body } = await graphql(f.query, { ...f.variables, config, pipelineValues: values });
    const result = body.data!.buildConfig!;
    expect(result.errors).toEqual([]);
    expect(result.outputYaml).toContain('echo "feature/x n=1 webhook"');
  });

  it('accepts an org slug where the CLI sends orgId (local execute --org-slug)', async () => {
    const f = fixture('buildConfig-orgId');
    const { body } = await graphql(f.query, { ...f.variables, orgId: 'gh/example-org' });
    expect(body.errors).toBeUndefined();
    expect(body.data!.buildConfig!.valid).toBe(true);
  });

  it('works without a token, with an empty Authorization header and with Bearer; refuses an unknown token', async () => {
    const f = fixture('buildConfig');
    const variants: Record<string, string>[] = [
      {},
      { authorization: '' },
      { authorization: `Bearer ${TOKEN}` },
    ];
    for (const headers of variants) {
      const { status, body } = await graphql(f.query, f.variables, headers);
      expect(status).toBe(200);
      expect(body.data!.buildConfig!.valid).toBe(true);
    }
    const { status, body } = await graphql(f.query, f.variables, { authorization: 'not-a-token' });
    expect(status).toBe(200);
    expect(body.data).toBeNull();
    expect(body.errors![0]!.message).toBe('Invalid token provided.');
  });
});

describe('POST /graphql-unstable orbConfig (circleci orb validate|process)', () => {
  it.each(['orbConfig', 'orbConfig-owner'])('%s: the CLI query as sent validates the orb', async (name) => {
    const f = fixture(name);
    const { status, body } = await graphql(f.query, f.variables);
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const result = body.data!.orbConfig!;
    expect(result).toMatchObject({ valid: true, errors: [], sourceYaml: f.variables.config });
    expect(result.outputYaml).toContain('greet:');
    expect(result.outputYaml).toContain('echo "Hello, << parameters.to >>"');
  });

  it("reports what is wrong inside the orb at the orb's own line:column", async () => {
    const f = fixture('orbConfig');
    const orb =
      'version: 2.1\nfoo: 1\ncommands:\n  greet:\n    steps:\n      - nope\njobs:\n  hello:\n    parameters:\n      who: {type: string}\n' +
      '    docker: [{image: cimg/base:current}]\n    steps: [greet, {run: "echo << parameters.whom >>"}]\n';
    const { body } = await graphql(f.query, { ...f.variables, config: orb });
    const result = body.data!.orbConfig!;
    expect(result.valid).toBe(false);
    expect(result.outputYaml).toBe('');
    const messages = result.errors.map((e) => e.message);
    expect(messages).toContainEqual(expect.stringMatching(/^orb\.yml:2:1: "foo" is not allowed in an orb/));
    expect(messages).toContainEqual(expect.stringMatching(/^orb\.yml:6:9: command "nope" is not defined/));
    expect(messages).toContainEqual(expect.stringMatching(/^orb\.yml:12:\d+: .*parameters\.whom/));
  });

  it('reports a YAML syntax error once, in the orb', async () => {
    const f = fixture('orbConfig');
    const { body } = await graphql(f.query, { ...f.variables, config: 'version: 2.1\ncommands: [\n' });
    const result = body.data!.orbConfig!;
    expect(result.valid).toBe(false);
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]!.message).toMatch(/^orb\.yml:\d+:\d+: /);
  });

  it('refuses an orb whose aliases expand without bound, quickly', async () => {
    const f = fixture('orbConfig');
    const rows = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (const [prev, name] of [
      ['a', 'b'],
      ['b', 'c'],
      ['c', 'd'],
      ['d', 'e'],
      ['e', 'f'],
      ['f', 'g'],
    ] as const) {
      rows.push(`${name}: &${name} [${Array(10).fill(`*${prev}`).join(',')}]`);
    }
    const started = Date.now();
    const { status, body } = await graphql(f.query, {
      ...f.variables,
      config: `version: 2.1\n${rows.join('\n')}\n`,
    });
    expect(status).toBe(200);
    const result = body.data!.orbConfig!;
    expect(result.valid).toBe(false);
    expect(result.errors.map((e) => e.message)).toContainEqual(
      expect.stringMatching(/aliases expand too far/),
    );
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('validates a real orb from the corpus (jobs and commands with required parameters)', async () => {
    const f = fixture('orbConfig');
    const orb = readFileSync(`${FIXTURES}/../../corpus/orbs/codecov/codecov/1.1.1/orb.yml`, 'utf8');
    const { body } = await graphql(f.query, { ...f.variables, config: orb });
    expect(body.data!.orbConfig!.errors).toEqual([]);
    expect(body.data!.orbConfig!.valid).toBe(true);
  });
});

describe('POST /graphql-unstable errors', () => {
  it('answers a GraphQL syntax error with 200 and errors[] with a location', async () => {
    const { status, body } = await graphql(
      'query ValidateConfig ($config: String!) { buildConfig(configYaml: $config { valid } }',
      { config: 'x' },
    );
    expect(status).toBe(200);
    expect(body.data).toBeNull();
    expect(body.errors![0]!.message).toMatch(/^Syntax Error/);
    expect(body.errors![0]!.locations![0]).toEqual({ line: 1, column: expect.any(Number) as number });
    expect(body.errors![0]!.extensions).toEqual({ code: 'GRAPHQL_PARSE_FAILED' });
  });

  it('answers an unknown field with 200 and a validation error', async () => {
    const { status, body } = await graphql('{ buildConfig(configYaml: "x") { valid, nonsense } }', {});
    expect(status).toBe(200);
    expect(body.errors![0]!.message).toMatch(/Cannot query field "nonsense"/);
  });

  it('answers a body that is not JSON with 400 {message}', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/graphql-unstable',
      headers: CLI_GRAPHQL_HEADERS,
      payload: '{"query": ',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ message: string }>().message).toMatch(/^The request body is not valid JSON/);
  });

  it('answers a JSON body without a query with 200 and errors[]', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/graphql-unstable',
      headers: CLI_GRAPHQL_HEADERS,
      payload: '{"variables":{}}',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json<GraphQLBody>().errors![0]!.message).toMatch(/no "query"/);
  });
});

describe('declareUsedVariables', () => {
  it('declares a variable used (also in a fragment) but not declared, typed as its position', () => {
    const doc = parse(
      'query Q($config: String!) { ...F } fragment F on Query { buildConfig(configYaml: $config, orgId: $orgId, next: $next) { valid } }',
    );
    const printed = print(declareUsedVariables(torusSchema(), doc));
    expect(printed).toContain('query Q($config: String!, $orgId: UUID, $next: Boolean)');
  });
});

describe('POST /api/v2/compile-config-with-defaults (REST, circleci config validate|process)', () => {
  const restBody = readFileSync(join(FIXTURES, 'rest-compile-config-with-defaults.body.json'), 'utf8');
  const REST_HEADERS = {
    'content-type': 'application/json',
    accept: 'application/json',
    'circle-token': TOKEN,
  };

  it('answers the CLI probe (no body, no Content-Type) with 400 so the CLI picks REST', async () => {
    for (const headers of [{}, { 'circle-token': TOKEN, accept: 'application/json' }]) {
      const res = await app.inject({ method: 'POST', url: '/api/v2/compile-config-with-defaults', headers });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ message: string }>().message).toMatch(/config_yaml/);
    }
  });

  it('compiles the fixture body with its parameters and pipeline values (hyphenated keys)', async () => {
    const sent = JSON.parse(restBody) as { config_yaml: string };
    const res = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: REST_HEADERS,
      payload: goJson(sent),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const body = res.json<Record<string, unknown>>();
    expect(Object.keys(body).sort()).toEqual(['errors', 'output-yaml', 'source-yaml', 'valid']);
    expect(body).toMatchObject({ valid: true, errors: [], 'source-yaml': sent.config_yaml });
    expect(body['output-yaml']).toContain('echo "deploying to staging"');
  });

  it('reports an invalid config with 200, valid=false and located messages', async () => {
    const config =
      'version: 2.1\njobs:\n  build:\n    docker:\n      - image: cimg/base:2024.01\n    steps:\n      - nope\n';
    const res = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: REST_HEADERS,
      payload: goJson({ config_yaml: config, options: {} }),
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ valid: boolean; errors: { message: string }[]; 'output-yaml': string }>();
    expect(body.valid).toBe(false);
    expect(body['output-yaml']).toBe('');
    expect(body.errors[0]!.message).toMatch(/^\.circleci\/config\.yml:7:9: command "nope" is not defined/);
  });

  it('answers bad JSON, a missing config_yaml and an unknown token with {message}', async () => {
    const bad = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: REST_HEADERS,
      payload: '{"config_yaml":',
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ message: string }>().message).toMatch(/^The request body is not valid JSON/);
    const missing = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: REST_HEADERS,
      payload: '{"options":{}}',
    });
    expect(missing.statusCode).toBe(400);
    expect(missing.json<{ message: string }>().message).toMatch(/config_yaml is required/);
    const wrongValues = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: REST_HEADERS,
      payload: {
        config_yaml: 'version: 2.1',
        options: { pipeline_values: { 'pipeline.git': { nested: true } } },
      },
    });
    expect(wrongValues.statusCode).toBe(400);
    const stranger = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: { ...REST_HEADERS, 'circle-token': 'nope' },
      payload: restBody,
    });
    expect(stranger.statusCode).toBe(401);
    expect(stranger.json<{ message: string }>().message).toBe('Invalid token provided.');
  });

  it('uses options.pipeline_values, and reads the body as JSON whatever the Content-Type', async () => {
    const config =
      'version: 2.1\njobs:\n  build:\n    docker:\n      - image: cimg/base:2024.01\n    steps:\n      - run: echo "on << pipeline.git.branch >>"\n';
    const payload = JSON.stringify({
      config_yaml: config,
      options: { pipeline_values: { 'pipeline.git.branch': 'release', 'pipeline.number': 7 } },
    });
    for (const headers of [{}, { 'content-type': 'application/x-www-form-urlencoded' }]) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v2/compile-config-with-defaults',
        headers,
        payload,
      });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ 'output-yaml': string }>()['output-yaml']).toContain('echo "on release"');
    }
  });

  it('compiles without a token', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v2/compile-config-with-defaults',
      headers: { 'content-type': 'application/json' },
      payload: restBody,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ valid: boolean }>().valid).toBe(true);
  });
});
