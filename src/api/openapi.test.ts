import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp, decodeSlugSlashes } from './index.js';
import { extractSubset, IMPLEMENTED_OPERATIONS, servedSpec } from './openapi.js';
import { createAccounts } from '../accounts/index.js';
import { REFERENCE_SPEC_PATH } from '../../test/harness/openapi.js';
import { fakeEngine, fakeScheduler } from '../../test/api/fakes.js';
import { openTestResources, type TestResources } from '../../test/api/resources.js';

describe('the served OpenAPI document', () => {
  it.skipIf(!existsSync(REFERENCE_SPEC_PATH))(
    'is the reference spec cut to the implemented operations (regenerate openapi-subset.json if not)',
    () => {
      const reference = JSON.parse(readFileSync(REFERENCE_SPEC_PATH, 'utf8'));
      const committed = JSON.parse(readFileSync(new URL('./openapi-subset.json', import.meta.url), 'utf8'));
      expect(committed).toEqual(extractSubset(reference));
    },
  );

  it('lists every implemented operation and no other CircleCI path', () => {
    const paths = Object.keys(servedSpec().paths as object).filter(
      (p) => !p.startsWith('/torus/') && !p.endsWith('/output'),
    );
    expect(paths.sort()).toEqual(Object.keys(IMPLEMENTED_OPERATIONS).sort());
  });
});

describe('routes', () => {
  let res: TestResources;
  let app: FastifyInstance;
  beforeAll(async () => {
    res = await openTestResources('pglite');
    app = await buildApp(res, {
      engine: fakeEngine(res),
      scheduler: fakeScheduler(),
      accounts: createAccounts(res),
    });
  });
  afterAll(async () => {
    await app?.close();
    await res?.close();
  });

  it('exist for every operation the document lists (they ask for a token or a body instead of answering 404)', async () => {
    const sample: Record<string, string> = {
      'project-slug': 'circleci/acme/widget',
      'org-slug-or-id': 'acme',
      'pipeline-number': '1',
      'job-number': '1',
    };
    for (const [path, methods] of Object.entries(IMPLEMENTED_OPERATIONS)) {
      const url =
        '/api/v2' +
        path.replace(
          /\{([^}]+)\}/g,
          (_, name: string) => sample[name] ?? '5034460f-c7c4-4c43-9457-de07e2029e7b',
        );
      for (const method of methods) {
        const r = await app.inject({ method: method.toUpperCase() as 'GET', url });
        // 401 (token needed); /pipeline/continue needs no token and answers 400 to an empty body
        expect(r.statusCode, `${method.toUpperCase()} ${url}`).toBe(
          path === '/pipeline/continue' ? 400 : 401,
        );
      }
    }
  });

  it('decode URL-encoded slashes of project slugs before routing, and nothing else', () => {
    expect(decodeSlugSlashes('/api/v2/project/circleci%2Facme%2Fwidget/pipeline?branch=a%2Fb')).toBe(
      '/api/v2/project/circleci/acme/widget/pipeline?branch=a%2Fb',
    );
    expect(decodeSlugSlashes('/api/v1.1/project/circleci%2facme%2fwidget/3')).toBe(
      '/api/v1.1/project/circleci/acme/widget/3',
    );
    expect(decodeSlugSlashes('/healthz')).toBe('/healthz');
  });
});
