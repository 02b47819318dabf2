// Dynamic configuration through real processes: a `setup: true` config's job posts the
// continuation config to /api/v2/pipeline/continue with its CIRCLE_CONTINUATION_KEY (no API
// token), and the pipeline goes on with the generated workflow.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';

const CONTINUATION = `version: 2.1
jobs:
  generated:
    machine: true
    steps:
      - run: echo "generated job ran"
workflows:
  generated:
    jobs: [generated]
`;

const SETUP = `version: 2.1
setup: true
jobs:
  generate:
    machine: true
    steps:
      - checkout
      - run:
          name: Continue the pipeline
          command: |
            server="\${CIRCLE_BUILD_URL%%/pipelines/*}"
            body=$(printf '{"continuation-key": "%s", "configuration": %s}' "$CIRCLE_CONTINUATION_KEY" "$(cat continuation.json)")
            curl -sS -f -X POST -H 'content-type: application/json' --data "$body" "$server/api/v2/pipeline/continue"
workflows:
  setup:
    jobs: [generate]
`;

describe('dynamic configuration', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    server = await startTorusServer({ localAgents: 1 });
  });
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('runs the setup workflow, then the workflows its job sent to /pipeline/continue', async () => {
    const repo = makeGitRepo({
      '.circleci/config.yml': SETUP,
      'continuation.json': JSON.stringify(CONTINUATION),
    });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/dyn/project', {
      name: 'dyn',
      vcs_url: repo,
    });
    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${p.body.slug}/pipeline`, {});
    const wfs = await waitFor(async () => {
      const r = await api<{ items: Array<{ id: string; name: string; status: string }> }>(
        server.url,
        'GET',
        `/api/v2/pipeline/${trig.body.id}/workflow`,
      );
      const gen = r.body.items.find((w) => w.name === 'generated');
      return gen?.status === 'success' ? r.body.items : false;
    }, 90_000);
    expect(wfs.map((w) => w.name).sort()).toEqual(['generated', 'setup']);
    const pipeline = await api<{ state: string }>(server.url, 'GET', `/api/v2/pipeline/${trig.body.id}`);
    expect(pipeline.body.state).toBe('pending');
    const config = await api<Record<string, string>>(
      server.url,
      'GET',
      `/api/v2/pipeline/${trig.body.id}/config`,
    );
    expect(config.body.source).toContain('generated job ran');
    expect(config.body['setup-config']).toContain('setup: true');
  });
});
