// The OpenAPI document Torus serves at /api/v2/openapi.json: CircleCI's own path items and
// components for exactly the operations Torus implements (copied from the reference spec into
// openapi-subset.json, see extractSubset), plus Torus' extensions. The `circleci` CLI probes it
// to learn which features a server has.
import { readFileSync } from 'node:fs';

/** The reference spec's operations Torus implements: path → methods. */
export const IMPLEMENTED_OPERATIONS: Record<string, string[]> = {
  '/me': ['get'],
  '/me/collaborations': ['get'],
  '/user/{id}': ['get'],
  '/organization/{org-slug-or-id}/project': ['post'],
  '/project/{project-slug}': ['get'],
  '/project/{project-slug}/pipeline': ['get', 'post'],
  '/project/{project-slug}/pipeline/mine': ['get'],
  '/project/{project-slug}/pipeline/{pipeline-number}': ['get'],
  '/pipeline': ['get'],
  '/pipeline/continue': ['post'],
  '/pipeline/{pipeline-id}': ['get'],
  '/pipeline/{pipeline-id}/config': ['get'],
  '/pipeline/{pipeline-id}/workflow': ['get'],
  '/workflow/{id}': ['get'],
  '/workflow/{id}/job': ['get'],
  '/workflow/{id}/approve/{approval_request_id}': ['post'],
  '/workflow/{id}/cancel': ['post'],
  '/workflow/{id}/rerun': ['post'],
  '/project/{project-slug}/job/{job-number}': ['get'],
  '/project/{project-slug}/job/{job-number}/cancel': ['post'],
  '/jobs/{job-id}/cancel': ['post'],
  '/project/{project-slug}/{job-number}/artifacts': ['get'],
  '/project/{project-slug}/{job-number}/tests': ['get'],
  '/project/{project-slug}/envvar': ['get', 'post'],
  '/project/{project-slug}/envvar/{name}': ['get', 'delete'],
  '/context': ['get', 'post'],
  '/context/{context_id}': ['get', 'delete'],
  '/context/{context_id}/environment-variable': ['get'],
  '/context/{context_id}/environment-variable/{env_var_name}': ['put', 'delete'],
  '/project/{project-slug}/schedule': ['get', 'post'],
  '/schedule/{schedule-id}': ['get', 'patch', 'delete'],
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

function collectRefs(node: Json, into: Set<string>): void {
  if (Array.isArray(node)) {
    for (const n of node) collectRefs(n, into);
  } else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') into.add(v);
      else collectRefs(v, into);
    }
  }
}

function resolvePointer(doc: JsonObject, ref: string): Json {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported, got ${ref}`);
  let cur: Json = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!cur || typeof cur !== 'object' || Array.isArray(cur) || !(key in cur))
      throw new Error(`unresolvable $ref ${ref}`);
    cur = cur[key]!;
  }
  return cur;
}

/** The implemented operations' path items, with every component they reference (transitively). */
export function extractSubset(reference: JsonObject): JsonObject {
  const refPaths = reference.paths as JsonObject;
  const paths: JsonObject = {};
  for (const [path, methods] of Object.entries(IMPLEMENTED_OPERATIONS)) {
    const item = refPaths[path] as JsonObject | undefined;
    if (!item) throw new Error(`the reference spec has no path ${path}`);
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(item)) {
      if (!METHODS.has(k) || methods.includes(k)) out[k] = v;
    }
    for (const m of methods)
      if (!out[m]) throw new Error(`the reference spec has no ${m.toUpperCase()} ${path}`);
    paths[path] = out;
  }
  const components: { [k: string]: JsonObject } = {};
  const seen = new Set<string>();
  const pending = new Set<string>();
  collectRefs(paths, pending);
  while (pending.size > 0) {
    const ref = pending.values().next().value as string;
    pending.delete(ref);
    if (seen.has(ref)) continue;
    seen.add(ref);
    const target = resolvePointer(reference, ref);
    const parts = ref.split('/');
    if (parts.length !== 4 || parts[1] !== 'components')
      throw new Error(`unexpected $ref outside components: ${ref}`);
    (components[parts[2]!] ??= {})[parts[3]!.replace(/~1/g, '/').replace(/~0/g, '~')] = target;
    const more = new Set<string>();
    collectRefs(target, more);
    for (const r of more) if (!seen.has(r)) pending.add(r);
  }
  const refComponents = (reference.components ?? {}) as JsonObject;
  if (refComponents.securitySchemes) components.securitySchemes = refComponents.securitySchemes as JsonObject;
  return {
    openapi: reference.openapi ?? '3.0.3',
    info: reference.info ?? {},
    servers: reference.servers ?? [],
    security: reference.security ?? [],
    paths,
    components,
  };
}

const message = { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] };
const ok = (description: string, schema: JsonObject = { type: 'object' }): JsonObject => ({
  '200': { description, content: { 'application/json': { schema } } },
  default: { description: 'Error response.', content: { 'application/json': { schema: message } } },
});
const ext = (summary: string, responses: JsonObject, extra: JsonObject = {}): JsonObject => ({
  summary,
  tags: ['Torus'],
  'x-torus-extension': true,
  ...extra,
  responses,
});

/** Torus' own operations, listed so clients can discover them (shapes: src/api/README.md). */
export const TORUS_EXTENSIONS: JsonObject = {
  '/torus/projects': { get: ext('List the projects you can see.', ok('A page of projects.')) },
  '/torus/users': {
    get: ext('List users (admins).', ok('Users.')),
    post: ext('Create a user and a first API token (admins).', ok('The user with its token.')),
  },
  '/torus/users/{login}/suspend': { post: ext('Suspend a user (admins).', ok('The user.')) },
  '/torus/users/{login}/unsuspend': { post: ext('Lift a suspension (admins).', ok('The user.')) },
  '/torus/users/{login}/tokens': {
    get: ext("List a user's API tokens ('me' for yourself).", ok('Tokens.')),
    post: ext("Create an API token ('me' for yourself).", ok('The token, shown once.')),
  },
  '/torus/users/{login}/tokens/{id}': {
    delete: ext('Revoke an API token.', ok('A confirmation message.', message)),
  },
  '/torus/orgs': {
    get: ext('List organizations.', ok('Organizations.')),
    post: ext('Create an organization (admins).', ok('The organization.')),
  },
  '/torus/orgs/{org}/members': {
    get: ext('List the members of an organization.', ok('Members.')),
    post: ext('Add a member (organization admins).', ok('The member.')),
  },
  '/torus/orgs/{org}/members/{login}': {
    delete: ext('Remove a member (organization admins).', ok('A confirmation message.', message)),
  },
  '/torus/agent-tokens': {
    post: ext('Create an agent token for a resource class (admins).', ok('The token, shown once.')),
  },
  '/torus/pipeline/{pipeline-id}/events': {
    get: ext('Server-Sent Events: a `pipeline` event with the pipeline and its workflows at every change.', {
      '200': {
        description: 'An event stream.',
        content: { 'text/event-stream': { schema: { type: 'string' } } },
      },
    }),
  },
  '/project/{project-slug}/job/{job-number}/output': {
    get: ext(
      "A step's output (`step`, `index` query parameters); with `follow=true`, Server-Sent Events: `output` per chunk, then `end`.",
      {
        '200': {
          description: 'The output so far, or an event stream.',
          content: {
            'application/json': { schema: { type: 'object' } },
            'text/event-stream': { schema: { type: 'string' } },
          },
        },
      },
    ),
  },
};

let served: JsonObject | undefined;

/** The document served at /api/v2/openapi.json. */
export function servedSpec(): JsonObject {
  if (!served) {
    const subset = JSON.parse(
      readFileSync(new URL('./openapi-subset.json', import.meta.url), 'utf8'),
    ) as JsonObject;
    served = {
      ...subset,
      info: {
        ...(subset.info as JsonObject),
        title: 'Torus API (CircleCI API v2 compatible)',
        'x-upstream-title': (subset.info as JsonObject).title ?? null,
      },
      servers: [{ url: '/api/v2' }],
      paths: { ...(subset.paths as JsonObject), ...TORUS_EXTENSIONS },
    };
  }
  return served;
}
