// persist_to_workspace / attach_workspace run as real tasks (runTask) on the host and Docker
// executors against the real API server's blob routes, through the real HTTP BlobClient.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStep } from '../testing.js';
import { builtIn, executorKinds, runJob, startBlobServer, type BlobServer } from './testing.js';

const { kinds, cleanup } = executorKinds('workspace steps');
let server: BlobServer;

beforeAll(async () => {
  server = await startBlobServer();
});
afterAll(async () => {
  await server?.close();
  cleanup();
});

const step = (i: number) => 2 + i;

describe.each(kinds)('workspaces on the $name executor', (kind) => {
  it.skipIf(!kind.available)(
    'attaches the layers of upstream jobs in graph order, later layers winning, conflicts reported',
    async () => {
      const wf = await server.workflow();
      const build = await server.job(wf, 'build', [], 0);
      const built = await runJob(server, kind, build, 'build', [
        runStep(
          'mkdir -p dist logs && echo app > dist/app.txt && echo from-build > dist/shared.txt && ' +
            'echo l1 > logs/a.log && echo l2 > logs/b.log && echo no > logs/c.txt',
        ),
        builtIn('persist_to_workspace', { root: '.', paths: ['dist', 'logs/*.log'] }),
      ]);
      expect(built.result.status).toBe('success');
      expect(built.sink.step(step(1)).out).toContain('Persisted to the workspace');

      const lint = await server.job(wf, 'lint', ['build'], 1);
      const linted = await runJob(server, kind, lint, 'lint', [
        runStep('mkdir -p /tmp/ws/dist && echo from-lint > /tmp/ws/dist/shared.txt'),
        builtIn('persist_to_workspace', { root: '/tmp/ws', paths: ['dist/shared.txt'] }),
      ]);
      expect(linted.result.status).toBe('success');

      const test = await server.job(wf, 'test', ['lint'], 2);
      const tested = await runJob(server, kind, test, 'test', [
        builtIn('attach_workspace', { at: '~/ws' }),
        runStep('cd ~/ws && cat dist/app.txt dist/shared.txt logs/a.log logs/b.log && ls logs'),
      ]);
      expect(tested.result.status).toBe('success');
      const attach = tested.sink.step(step(0)).out;
      expect(attach).toMatch(/Warning: dist\/shared\.txt was persisted to the workspace by jobs build, lint/);
      expect(tested.sink.step(step(1)).out).toBe('app\nfrom-lint\nl1\nl2\na.log\nb.log\n');
    },
    60_000,
  );

  it.skipIf(!kind.available)(
    'fails clearly on paths matching nothing and on a missing layer',
    async () => {
      const wf = await server.workflow();
      const a = await server.job(wf, 'a', [], 0);
      const ran = await runJob(server, kind, a, 'a', [
        builtIn('persist_to_workspace', { root: '.', paths: ['nothing-here'] }, 'nothing'),
      ]);
      expect(ran.result.status).toBe('failed');
      expect(ran.sink.step(step(0)).out).toMatch(/The specified paths did not match any files in \//);

      const b = await server.job(wf, 'b', [], 1);
      await runJob(server, kind, b, 'b', [
        runStep('echo x > x.txt'),
        builtIn('persist_to_workspace', { root: '.', paths: ['x.txt'] }),
      ]);
      // the layer's object goes missing from the object store
      const layer = await server.res.db.query<{ object_key: string }>(
        'SELECT object_key FROM workspace_layers WHERE job_id = $1',
        [b.jobId],
      );
      await server.res.store.delete(layer.rows[0]!.object_key);
      const c = await server.job(wf, 'c', ['b'], 2);
      const attached = await runJob(server, kind, c, 'c', [builtIn('attach_workspace', { at: '.' })]);
      expect(attached.result.status).toBe('failed');
      expect(attached.sink.step(step(0)).out).toMatch(
        /Error: the workspace layer [0-9a-f-]+ persisted by job b is missing or could not be unpacked/,
      );
    },
    30_000,
  );
});
