// Conformance suite for ObjectStore implementations: the filesystem one, and the S3 one against
// s3rver (path-style with a key prefix, and virtual-hosted).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createObjectStore,
  FsObjectStore,
  readObjectText,
  S3ObjectStore,
  type ObjectStore,
} from './index.js';
import { startTestS3Server, type TestS3Server } from './s3-test-server.js';

const dirs: string[] = [];
let s3: TestS3Server | undefined;
let s3Runs = 0;
beforeAll(async () => {
  s3 = await startTestS3Server();
});
afterAll(async () => {
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
  await s3?.close();
});

const implementations: Array<[string, () => ObjectStore]> = [
  [
    'filesystem',
    () => {
      const d = mkdtempSync(join(tmpdir(), 'torus-os-'));
      dirs.push(d);
      return new FsObjectStore(d);
    },
  ],
  // each test gets its own prefix, so the tests do not see each other's objects
  ['S3 path-style (s3rver)', () => s3!.pathStyleStore(`run-${++s3Runs}/objects`)],
  ['S3 virtual-hosted (s3rver)', () => s3!.virtualHostedStore(`vhost-${++s3Runs}`)],
];

for (const [name, make] of implementations) {
  describe(`ObjectStore conformance: ${name}`, () => {
    it('stores strings, buffers and streams and reads them back', async () => {
      const s = make();
      expect(await s.put('a/b/one.txt', 'hello')).toEqual({ size: 5 });
      await s.put('a/b/two.bin', Buffer.from([1, 2, 3]));
      await s.put('a/c/three.txt', Readable.from(['x'.repeat(100_000), 'y']));
      expect(await readObjectText(s, 'a/b/one.txt')).toBe('hello');
      expect((await s.head('a/b/two.bin'))?.size).toBe(3);
      expect((await readObjectText(s, 'a/c/three.txt'))?.length).toBe(100_001);
    });

    it('returns null for missing objects and lists by prefix in key order', async () => {
      const s = make();
      expect(await s.get('nope')).toBeNull();
      expect(await s.head('nope')).toBeNull();
      await s.put('p/2', '2');
      await s.put('p/1', '1');
      await s.put('q/1', 'q');
      const keys: string[] = [];
      for await (const o of s.list('p/')) keys.push(o.key);
      expect(keys).toEqual(['p/1', 'p/2']);
    });

    it('replaces on put, deletes, and refuses keys that escape the store', async () => {
      const s = make();
      await s.put('k', 'old');
      await s.put('k', 'new');
      expect(await readObjectText(s, 'k')).toBe('new');
      await s.delete('k');
      expect(await s.get('k')).toBeNull();
      await expect(s.put('../escape', 'x')).rejects.toThrow(/invalid object key/);
      await expect(s.put('a//b', 'x')).rejects.toThrow(/invalid object key/);
    });

    it('keeps the old object when a streamed write fails midway', async () => {
      const s = make();
      await s.put('k2', 'intact');
      const failing = new Readable({
        read() {
          this.destroy(new Error('source broke'));
        },
      });
      await expect(s.put('k2', failing)).rejects.toThrow('source broke');
      expect(await readObjectText(s, 'k2')).toBe('intact');
    });

    it('streams a body larger than one multipart part and reads back the same bytes', async () => {
      const s = make();
      const part = randomBytes(1024 * 1024);
      const parts = 12; // 12 MiB: more than one 8 MiB S3 part
      const want = createHash('sha256');
      for (let i = 0; i < parts; i++) want.update(part);
      const { size } = await s.put(
        'big/blob',
        Readable.from(
          (function* () {
            for (let i = 0; i < parts; i++) yield part;
          })(),
        ),
      );
      expect(size).toBe(parts * part.length);
      expect((await s.head('big/blob'))?.size).toBe(parts * part.length);
      const got = createHash('sha256');
      for await (const c of (await s.get('big/blob'))!) got.update(c as Buffer);
      expect(got.digest('hex')).toBe(want.digest('hex'));
    });
  });
}

describe('the filesystem store as files (LocalObjectFiles)', () => {
  it('stages a file, adopts it as an object, and refuses anything it did not stage', async () => {
    const d = mkdtempSync(join(tmpdir(), 'torus-os-local-'));
    dirs.push(d);
    const store = new FsObjectStore(d);
    const local = store.local;
    const staged = await local.stage();
    writeFileSync(staged, 'archive bytes');
    expect(await local.adopt('caches/p/one', staged)).toEqual({ size: 13 });
    expect(await readObjectText(store, 'caches/p/one')).toBe('archive bytes');
    expect(local.file('caches/p/one')).toBe(join(d, 'caches', 'p', 'one'));
    expect(existsSync(staged)).toBe(false);
    // staged files never show as objects
    const pending = await local.stage();
    writeFileSync(pending, 'x');
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    expect(keys).toEqual(['caches/p/one']);

    // a path the agent names must be a file stage() made: not elsewhere, not a link, not a folder
    const outside = join(d, 'outside.partial');
    writeFileSync(outside, 'x');
    await expect(local.adopt('caches/p/two', outside)).rejects.toThrow(/is not a file staged in/);
    await expect(local.adopt('caches/p/two', join(pending, '..', '..', 'outside.partial'))).rejects.toThrow(
      /is not a file staged in/,
    );
    const link = await local.stage();
    symlinkSync('/etc/passwd', link);
    await expect(local.adopt('caches/p/two', link)).rejects.toThrow(/not a regular file/);
    await expect(local.discard(outside)).rejects.toThrow(/is not a file staged in/);
    expect(existsSync(outside)).toBe(true);
    await local.discard(pending);
    await local.discard(pending); // gone already: fine
    expect(existsSync(pending)).toBe(false);
  });
});

describe('createObjectStore', () => {
  it('builds the filesystem store by default and the S3 store from the S3 settings', async () => {
    const d = mkdtempSync(join(tmpdir(), 'torus-os-'));
    dirs.push(d);
    expect(createObjectStore({ dataDir: d })).toBeInstanceOf(FsObjectStore);
    const store = createObjectStore({
      dataDir: d,
      objectStore: 's3',
      s3Bucket: s3!.bucket,
      s3Endpoint: s3!.endpoint,
      s3ForcePathStyle: true,
      s3Prefix: 'from-settings',
      s3Region: 'us-east-1',
      s3AccessKeyId: 'S3RVER',
      s3SecretAccessKey: 'S3RVER',
    });
    expect(store).toBeInstanceOf(S3ObjectStore);
    await store.put('x/y', 'through settings');
    expect(await readObjectText(s3!.pathStyleStore('from-settings'), 'x/y')).toBe('through settings');
    expect(() => createObjectStore({ dataDir: d, objectStore: 's3' })).toThrow(/TORUS_S3_BUCKET/);
  });
});
