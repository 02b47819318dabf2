// Conformance suite for ObjectStore implementations (the S3 one joins this list in a later issue).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { FsObjectStore, readObjectText, type ObjectStore } from './index.js';

const dirs: string[] = [];
const implementations: Array<[string, () => ObjectStore]> = [
  [
    'filesystem',
    () => {
      const d = mkdtempSync(join(tmpdir(), 'torus-os-'));
      dirs.push(d);
      return new FsObjectStore(d);
    },
  ],
];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

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
  });
}
