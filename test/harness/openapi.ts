// Checks API responses against CircleCI's API v2 OpenAPI spec with Ajv. The spec marks nullable
// fields Swagger's way (`x-nullable: true`); they are turned into JSON Schema type unions here.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

export const REFERENCE_SPEC_PATH = fileURLToPath(
  new URL('../../../shared/reference/circleci-api-v2.openapi.json', import.meta.url),
);
const SUBSET_PATH = fileURLToPath(new URL('../../src/api/openapi-subset.json', import.meta.url));

type Schema = Record<string, unknown>;

/**
 * Fields the spec declares required and non-null that CircleCI itself returns as null: a job that
 * has not started has `started_at: null` (and a blocked one `queued_at: null`). Keyed by operationId.
 */
const SPEC_ERRATA: Record<string, string[][]> = {
  listWorkflowJobs: [['properties', 'items', 'items', 'properties', 'started_at']],
  getJobDetails: [
    ['properties', 'started_at'],
    ['properties', 'queued_at'],
  ],
};

function makeNullable(s: Schema): Schema {
  const out: Schema = { ...s };
  delete out['x-nullable'];
  if (typeof out.type === 'string') out.type = [out.type, 'null'];
  else if (Array.isArray(out.type)) out.type = [...(out.type as string[]), 'null'];
  else return { anyOf: [out, { type: 'null' }] };
  if (Array.isArray(out.enum)) out.enum = [...(out.enum as unknown[]), null];
  return out;
}

/** Resolves local $refs and turns `x-nullable` into type unions, recursively. */
function convert(node: unknown, root: Schema, depth = 0): unknown {
  if (depth > 64) throw new Error('schema nests too deep (a $ref cycle?)');
  if (Array.isArray(node)) return node.map((n) => convert(n, root, depth + 1));
  if (!node || typeof node !== 'object') return node;
  let obj = node as Schema;
  if (typeof obj.$ref === 'string') {
    let target: unknown = root;
    for (const part of obj.$ref.slice(2).split('/'))
      target = (target as Schema)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    obj = target as Schema;
  }
  const out: Schema = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'example' || k === 'examples' || (k.startsWith('x-') && k !== 'x-nullable')) continue;
    out[k] = convert(v, root, depth + 1);
  }
  if (out['x-nullable'] === true) return makeNullable(out);
  delete out['x-nullable'];
  return out;
}

function patchErrata(schema: Schema, path: string[]): void {
  let cur: Schema = schema;
  for (const p of path.slice(0, -1)) cur = cur[p] as Schema;
  const last = path[path.length - 1]!;
  cur[last] = makeNullable(cur[last] as Schema);
}

export interface OpenApiChecker {
  /** the operation for a method and a spec path ('/pipeline/{pipeline-id}') */
  operationId(method: string, specPath: string): string;
  /** Throws with Ajv's errors when body does not match the operation's schema for that status. */
  assertResponse(operationId: string, status: number, body: unknown): void;
  spec: Schema;
}

export function loadOpenApi(): OpenApiChecker {
  // The reference spec when present (it is outside the repository), else the copy Torus serves.
  const path = existsSync(REFERENCE_SPEC_PATH) ? REFERENCE_SPEC_PATH : SUBSET_PATH;
  const spec = JSON.parse(readFileSync(path, 'utf8')) as Schema;
  const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
  const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
  // the spec writes `format: integer` beside `type: integer` (the timetable's fields): nothing to add
  ajv.addFormat('integer', true);
  const ops = new Map<string, { method: string; path: string; op: Schema }>();
  for (const [p, item] of Object.entries(spec.paths as Record<string, Schema>)) {
    for (const [m, op] of Object.entries(item)) {
      if (op && typeof op === 'object' && typeof (op as Schema).operationId === 'string') {
        ops.set((op as Schema).operationId as string, { method: m, path: p, op: op as Schema });
      }
    }
  }
  const compiled = new Map<string, ValidateFunction>();
  return {
    spec,
    operationId(method, specPath) {
      const op = (spec.paths as Record<string, Record<string, Schema>>)[specPath]?.[method.toLowerCase()];
      if (!op) throw new Error(`no ${method} ${specPath} in the spec`);
      return op.operationId as string;
    },
    assertResponse(operationId, status, body) {
      const entry = ops.get(operationId);
      if (!entry) throw new Error(`unknown operation ${operationId}`);
      const responses = entry.op.responses as Record<string, Schema>;
      const key =
        String(status) in responses
          ? String(status)
          : status >= 400 && 'default' in responses
            ? 'default'
            : undefined;
      if (!key)
        throw new Error(
          `${operationId} answered ${status}; the spec lists ${Object.keys(responses).join(', ')}`,
        );
      const cacheKey = `${operationId} ${key}`;
      let validate = compiled.get(cacheKey);
      if (!validate) {
        const content = (responses[key]!.content ?? {}) as Record<string, { schema?: Schema }>;
        const raw = content['application/json']?.schema ?? {};
        const schema = convert(raw, spec) as Schema;
        if (key !== 'default') for (const p of SPEC_ERRATA[operationId] ?? []) patchErrata(schema, p);
        validate = ajv.compile(schema);
        compiled.set(cacheKey, validate);
      }
      if (!validate(body)) {
        throw new Error(
          `${operationId} ${status} response does not match the spec:\n` +
            (validate.errors ?? [])
              .map((e) => `  ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`)
              .join('\n') +
            `\nbody: ${JSON.stringify(body).slice(0, 2000)}`,
        );
      }
    },
  };
}
