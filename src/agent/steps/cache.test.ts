// save_cache / restore_cache run as real tasks (runTask) on the host and Docker executors against the
// real API server's blob routes, through the real HTTP BlobClient.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStep } from '../testing.js';
import { BlobLeaseLost, createBlobClient } from '../blob-client.js';
import { builtIn, executorKinds, runJob, startBlobServer, type BlobServer } from './testing.js';
import { cacheArch } from './cache.js';
import { buffer } from 'node:stream/consumers';
import { compress, decompress } from './archive.js';

const { kinds, cleanup } = executorKinds('cache steps', { direct: true });
let server: BlobServer;

beforeAll(async () => {
  server = await startBlobServer();
});
afterAll(async () => {
  await server?.close();
  cleanup();
});

/** the first config step is index 2 (0: spin up, 1: environment variables) */
const step = (i: number) => 2 + i;

describe.each(kinds)('caches on the $label executor', (kind) => {
  it.skipIf(!kind.available)(
    'saves in one job and restores in another by template key, prefix and key list; keys are immutable',
    async () => {
      const prefix = `v1-${kind.name}${kind.direct ? '-direct' : ''}-${Date.now()}`;
      const key = `${prefix}-{{ .Branch }}-{{ checksum "lock.txt" }}-{{ arch }}-{{ .Environment.FLAVOR }}`;
      const wf = await server.workflow();
      const a = await server.job(wf, 'save');
      const saved = await runJob(
        server,
        kind,
        a,
        'save',
        [
          runStep(
            'mkdir -p ~/project ~/deps/sub && cd ~/project && echo locked > lock.txt && echo hello > ~/deps/a.txt && ' +
              'echo deep > ~/deps/sub/b.txt && mkdir -p build && echo out > build/o.txt && ' +
              'dd if=/dev/urandom of=$HOME/deps/big.bin bs=1024 count=3000 2>/dev/null && md5sum ~/deps/big.bin | cut -c1-32',
          ),
          builtIn('save_cache', { key, paths: ['~/deps', 'build'] }),
          builtIn('save_cache', { key, paths: ['~/deps'] }),
        ],
        { FLAVOR: 'plain' },
      );
      expect(saved.result.status).toBe('success');
      const md5 = saved.sink.step(step(0)).out.trim();
      const store = saved.sink.step(step(1));
      expect(store.status).toBe('success');
      expect(store.out).toMatch(/Stored Cache to v1-.*-main-[A-Za-z0-9+/]{43}=-arch1-linux-.*-plain/);
      // an agent on the server's machine writes the store's file itself; others send the archive
      expect(store.out).toContain(kind.direct ? 'Storing cache archive...' : 'Uploading cache archive...');
      expect(saved.sink.step(step(2)).out).toMatch(
        /^Skipping cache generation, cache already exists for key: v1-/,
      );

      // another workflow, another task directory (another home): restored by exact key
      const wf2 = await server.workflow();
      const b = await server.job(wf2, 'restore');
      const restored = await runJob(
        server,
        kind,
        b,
        'restore',
        [
          runStep('mkdir -p ~/project && echo locked > ~/project/lock.txt'),
          builtIn('restore_cache', { keys: [`nothing-${prefix}`, key] }),
          runStep(
            'cat ~/deps/a.txt ~/deps/sub/b.txt ~/project/build/o.txt && md5sum ~/deps/big.bin | cut -c1-32',
          ),
        ],
        { FLAVOR: 'plain' },
      );
      expect(restored.result.status).toBe('success');
      const r = restored.sink.step(step(1));
      expect(r.out).toContain(`No cache is found for key: nothing-${prefix}`);
      expect(r.out).toMatch(/Found a cache at v1-/);
      expect(restored.sink.step(step(2)).out).toBe(`hello\ndeep\nout\n${md5}\n`);

      // a prefix finds the newest cache it starts
      const c = await server.job(wf2, 'prefix');
      const byPrefix = await runJob(server, kind, c, 'prefix', [
        builtIn('restore_cache', { key: `${prefix}-main-` }),
        runStep('cat ~/deps/a.txt'),
      ]);
      expect(byPrefix.result.status).toBe('success');
      expect(byPrefix.sink.step(step(1)).out).toBe('hello\n');
    },
    60_000,
  );

  it.skipIf(!kind.available)(
    'no match succeeds with a message; an unknown template or a missing checksum file fails the step',
    async () => {
      const wf = await server.workflow();
      const j = await server.job(wf, 'misc');
      const { result, sink } = await runJob(server, kind, j, 'misc', [
        builtIn('restore_cache', { keys: ['never-saved-{{ .Revision }}', 'never-'] }),
        builtIn('save_cache', { key: 'x-{{ .Nope }}', paths: ['~'] }, 'unknown template'),
        builtIn('restore_cache', { key: 'x-{{ checksum "missing.lock" }}' }, 'missing file'),
      ]);
      expect(sink.step(step(0)).status).toBe('success');
      expect(sink.step(step(0)).out).toBe(
        'No cache is found for key: never-saved-abc123abc123abc123abc123abc123abc123abcd\nNo cache is found for key: never-\n',
      );
      expect(sink.step(step(1)).status).toBe('failed');
      expect(sink.step(step(1)).out).toContain('unknown cache key template {{ .Nope }}');
      expect(result.status).toBe('failed');
    },
    30_000,
  );

  it.skipIf(!kind.available)(
    'keeps long names, symbolic links and hard links',
    async () => {
      const key = `links-${kind.name}-${Date.now()}`;
      const long = `${'a'.repeat(80)}/${'b'.repeat(80)}/${'c'.repeat(80)}`;
      const wf = await server.workflow();
      const a = await server.job(wf, 'links-save');
      const saved = await runJob(server, kind, a, 'links-save', [
        runStep(
          `mkdir -p ~/deps/${long} && echo deep > ~/deps/${long}/f.txt && ln -s ${long}/f.txt ~/deps/sym && ` +
            `ln ~/deps/${long}/f.txt ~/deps/hard`,
        ),
        builtIn('save_cache', { key, paths: ['~/deps'] }),
      ]);
      expect(saved.result.status).toBe('success');
      const b = await server.job(wf, 'links-restore');
      const restored = await runJob(server, kind, b, 'links-restore', [
        builtIn('restore_cache', { key }),
        runStep(
          `cd ~/deps && cat ${long}/f.txt sym hard && [ -L sym ] && [ hard -ef ${long}/f.txt ] && echo linked`,
        ),
      ]);
      expect(restored.sink.step(step(0)).out).toContain('Restored');
      expect(restored.sink.step(step(1)).out).toBe('deep\ndeep\ndeep\nlinked\n');
      expect(restored.result.status).toBe('success');
    },
    30_000,
  );

  // on the host a task's /tmp is its own; in containers an absolute path outside home is the same in every job
  it.skipIf(!kind.available || kind.name !== 'docker')(
    'restores paths outside the home at their absolute location',
    async () => {
      const key = `abs-${Date.now()}`;
      const wf = await server.workflow();
      const a = await server.job(wf, 'abs-save');
      const saved = await runJob(server, kind, a, 'abs-save', [
        runStep('mkdir -p /tmp/abs-cache/d && echo absolute > /tmp/abs-cache/d/f.txt'),
        builtIn('save_cache', { key, paths: ['/tmp/abs-cache', '/tmp/not-there'] }),
      ]);
      expect(saved.result.status).toBe('success');
      expect(saved.sink.step(step(1)).out).toContain('Warning: could not find /tmp/not-there');
      const b = await server.job(wf, 'abs-restore');
      const restored = await runJob(server, kind, b, 'abs-restore', [
        builtIn('restore_cache', { key }),
        runStep('cat /tmp/abs-cache/d/f.txt'),
      ]);
      expect(restored.result.status).toBe('success');
      expect(restored.sink.step(step(1)).out).toBe('absolute\n');
    },
    30_000,
  );

  it.skipIf(!kind.available)(
    'a corrupt archive fails restore_cache with a clear message',
    async () => {
      const wf = await server.workflow();
      const j = await server.job(wf, 'corrupt');
      const client = createBlobClient({
        serverUrl: server.url,
        token: server.agentToken,
        taskId: j.taskId,
        leaseId: j.leaseId,
      });
      for (const encoding of ['gzip', 'zstd'] as const) {
        const key = `corrupt-${kind.label}-${encoding}-${Date.now()}`;
        expect(
          await client.putCache(
            key,
            Readable.from([Buffer.from(`this is not a ${encoding} archive`)]),
            encoding,
          ),
        ).toBe(true);
        const { result, sink } = await runJob(server, kind, j, 'corrupt', [
          builtIn('restore_cache', { key }),
        ]);
        expect(result.status).toBe('failed');
        expect(sink.step(step(0)).out).toContain(`Error: the cache archive for key ${key} is corrupt`);
      }
    },
    30_000,
  );
});

describe('the HTTP blob client', () => {
  it('reads 409 as "exists" for a cache, and as a lost lease otherwise', async () => {
    const wf = await server.workflow();
    const j = await server.job(wf, 'client');
    const client = createBlobClient({
      serverUrl: server.url,
      token: server.agentToken,
      taskId: j.taskId,
      leaseId: j.leaseId,
    });
    const key = `client-${Date.now()}`;
    expect(await client.putCache(key, Readable.from([Buffer.from('a')]), 'none')).toBe(true);
    expect(await client.putCache(key, Readable.from([Buffer.from('b')]), 'none')).toBe(false);
    expect(await client.lookupCache([key.slice(0, 7)])).toMatchObject({ key, size: 1, encoding: 'none' });
    let lost = 0;
    const stale = createBlobClient({
      serverUrl: server.url,
      token: server.agentToken,
      taskId: j.taskId,
      leaseId: '00000000-0000-4000-8000-000000000000',
      onLeaseLost: () => lost++,
    });
    await expect(stale.lookupCache([key])).rejects.toBeInstanceOf(BlobLeaseLost);
    await expect(
      stale.putCache(`${key}-2`, Readable.from([Buffer.from('c')]), 'none'),
    ).rejects.toBeInstanceOf(BlobLeaseLost);
    expect(lost).toBe(2);
  });
});

describe('archives', () => {
  it.each(['gzip', 'zstd', 'none'] as const)(
    'round-trips through %s, and rejects garbage',
    async (encoding) => {
      const data = Buffer.alloc(300_000, 'torus');
      const back = await buffer(decompress(compress(Readable.from([data]), encoding), encoding));
      expect(back.equals(data)).toBe(true);
      if (encoding !== 'none') {
        await expect(buffer(decompress(Readable.from([Buffer.from('garbage')]), encoding))).rejects.toThrow();
      }
    },
  );
});

describe('cache key templates', () => {
  it('renders {{ arch }} in CircleCI shape', () => {
    expect(cacheArch()).toMatch(/^arch1-linux-[a-z0-9]+(-\d+_\d+)?$/);
  });
});
