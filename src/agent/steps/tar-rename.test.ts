// Renaming tar streams header by header (tar-rename.ts, through archive.ts's concatTars and
// unpackTar): archives GNU tar writes in its gnu, pax and ustar formats and tar-stream's (the format
// of caches saved before) keep every file, link, mode and content, whatever their names' length, and
// however the stream is cut into chunks; broken archives are refused.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { linkSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import type { Environment } from '../executor.js';
import { concatTars, unpackTar } from './archive.js';
import { TarFormatError } from './tar-rename.js';

const base = mkdtempSync(path.join(tmpdir(), 'torus-tar-rename-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** over 100 bytes with its parents: ustar splits it into prefix and name */
const LONG_DIR = 'd'.repeat(90);
const LONGER = `${'e'.repeat(90)}/${'f'.repeat(90)}/${'g'.repeat(90)}/deep.txt`;

/** a tree with what archives find hard: long names and link targets, links, modes, UTF-8 names */
function makeTree(dir: string, longest: boolean): void {
  mkdirSync(path.join(dir, 'sub', LONG_DIR), { recursive: true });
  mkdirSync(path.join(dir, 'ünï'), { recursive: true });
  writeFileSync(path.join(dir, 'a.txt'), 'hello\n');
  writeFileSync(path.join(dir, 'empty'), '');
  writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  writeFileSync(path.join(dir, 'ünï', 'файл.txt'), 'utf-8 name\n');
  writeFileSync(path.join(dir, 'sub', LONG_DIR, 'in-long-dir.txt'), 'x'.repeat(1000));
  writeFileSync(path.join(dir, 'random.bin'), randomBytes(200_003));
  symlinkSync('a.txt', path.join(dir, 'link'));
  linkSync(path.join(dir, 'a.txt'), path.join(dir, 'hard'));
  if (longest) {
    mkdirSync(path.join(dir, path.dirname(LONGER)), { recursive: true });
    writeFileSync(path.join(dir, LONGER), 'deep\n');
    symlinkSync(LONGER, path.join(dir, 'long-target'));
    linkSync(path.join(dir, LONGER), path.join(dir, 'sub', LONG_DIR, 'hard-to-deep'));
  }
}

/** GNU tar's archive of `names` in `dir`, cut into chunks of `chunk` bytes */
function gnuTar(dir: string, names: string[], format: string, chunk: number): NodeJS.ReadableStream {
  const child = spawn('tar', ['-C', dir, `--format=${format}`, '-cf', '-', '--', ...names], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('close', resolve));
  async function* checked() {
    yield* rechunk(child.stdout, chunk);
    const code = await exited;
    if (code !== 0) throw new Error(`tar -c exited ${String(code)}`);
  }
  return Readable.from(checked());
}

async function* rechunk(input: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let rest = Buffer.alloc(0);
  for await (const c of input) {
    rest = Buffer.concat([rest, c]);
    while (rest.length >= size) {
      yield rest.subarray(0, size);
      rest = rest.subarray(size);
    }
  }
  if (rest.length) yield rest;
}

/** an environment whose writeTar is GNU tar on this machine */
const hostTar = {
  writeTar(dir: string, input: NodeJS.ReadableStream): Promise<void> {
    mkdirSync(dir, { recursive: true });
    const child = spawn('tar', ['-C', dir, '-xf', '-'], { stdio: ['pipe', 'inherit', 'inherit'] });
    input.pipe(child.stdin);
    return new Promise((resolve, reject) =>
      child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar -x exited ${code}`)))),
    );
  },
} as unknown as Environment;

function same(a: string, b: string): void {
  const diff = spawnSync('diff', ['-r', '--no-dereference', a, b], { encoding: 'utf8' });
  expect(diff.stdout + diff.stderr).toBe('');
  expect(diff.status).toBe(0);
}

function names(archive: Buffer): string[] {
  const r = spawnSync('tar', ['-tf', '-'], { input: archive, encoding: 'utf8' });
  expect(r.status).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

describe.each([
  { format: 'gnu', chunk: 65_536 },
  { format: 'posix', chunk: 7 },
  { format: 'ustar', chunk: 1_000 },
])('a $format archive in chunks of $chunk bytes', ({ format, chunk }) => {
  it('is renamed on save and routed back on restore, files, links and modes intact', async () => {
    const root = mkdtempSync(path.join(base, `${format}-`));
    const home = path.join(root, 'home');
    const other = path.join(root, 'other');
    // ustar cannot hold names over 255 bytes: GNU tar refuses them
    makeTree(path.join(home, 'tree'), format !== 'ustar');
    makeTree(other, false);
    const archive = await buffer(
      concatTars([
        { open: async () => gnuTar(home, ['tree'], format, chunk), rename: (n) => `~/${n}` },
        { open: async () => gnuTar(root, ['other'], format, chunk), rename: (n) => `/elsewhere/${n}` },
      ]),
    );
    const listed = names(archive);
    expect(listed.length).toBeGreaterThan(15);
    for (const n of listed) expect(n.startsWith('~/tree') || n.startsWith('/elsewhere/other')).toBe(true);
    if (format !== 'ustar') expect(listed).toContain(`~/tree/${LONGER}`);

    const into = path.join(root, 'restored');
    const count = await unpackTar(hostTar, Readable.from(rechunk(Readable.from([archive]), chunk)), (n) =>
      n.startsWith('~/')
        ? { dir: path.join(into, 'home'), name: n.slice(2) }
        : { dir: into, name: n.slice(1) },
    );
    expect(count).toBe(listed.length);
    same(path.join(home, 'tree'), path.join(into, 'home', 'tree'));
    same(other, path.join(into, 'elsewhere', 'other'));
    const a = lstatSync(path.join(into, 'home', 'tree', 'a.txt'));
    expect(lstatSync(path.join(into, 'home', 'tree', 'hard')).ino).toBe(a.ino);
    expect(lstatSync(path.join(into, 'home', 'tree', 'run.sh')).mode & 0o777).toBe(0o755);
    if (format !== 'ustar') {
      const deep = lstatSync(path.join(into, 'home', 'tree', LONGER));
      expect(lstatSync(path.join(into, 'home', 'tree', 'sub', LONG_DIR, 'hard-to-deep')).ino).toBe(deep.ino);
    }
  });
});

describe('reading tar streams', () => {
  it("restores tar-stream's archives (caches saved before), long names in pax headers", async () => {
    const pack = tar.pack();
    const long = `~/${'p'.repeat(150)}/${'q'.repeat(150)}.txt`;
    pack.entry({ name: '~/dir', type: 'directory', mode: 0o755 });
    pack.entry({ name: '~/dir/f.txt', mode: 0o600 }, 'contents\n');
    pack.entry({ name: long }, 'long\n');
    pack.entry({ name: '~/dir/l', type: 'symlink', linkname: 'f.txt' });
    pack.finalize();
    const archive = await buffer(pack as unknown as Readable);
    const into = mkdtempSync(path.join(base, 'tar-stream-'));
    const seen: string[] = [];
    const count = await unpackTar(
      hostTar,
      Readable.from([archive]),
      (n) => ({ dir: into, name: n.slice(2) }),
      (e) => seen.push(`${e.type} ${e.name}`),
    );
    expect(count).toBe(4);
    expect(seen).toEqual(['directory ~/dir', 'file ~/dir/f.txt', `file ${long}`, 'symlink ~/dir/l']);
    expect(
      spawnSync('cat', [path.join(into, 'dir/f.txt'), path.join(into, long.slice(2))]).stdout.toString(),
    ).toBe('contents\nlong\n');
    expect(lstatSync(path.join(into, 'dir/f.txt')).mode & 0o777).toBe(0o600);
    expect(lstatSync(path.join(into, 'dir/l')).isSymbolicLink()).toBe(true);
  });

  it('skips the entries route refuses, contents and all', async () => {
    const pack = tar.pack();
    pack.entry({ name: 'keep.txt' }, 'keep\n');
    pack.entry({ name: '../escape.txt' }, 'x'.repeat(5000));
    pack.entry({ name: 'also.txt' }, 'also\n');
    pack.finalize();
    const into = mkdtempSync(path.join(base, 'skip-'));
    const count = await unpackTar(hostTar, pack as unknown as Readable, (n) =>
      n.startsWith('..') ? null : { dir: into, name: n },
    );
    expect(count).toBe(2);
    expect(spawnSync('ls', ['-A', into]).stdout.toString()).toBe('also.txt\nkeep.txt\n');
  });

  it('refuses garbage and an archive cut short', async () => {
    const into = mkdtempSync(path.join(base, 'bad-'));
    const route = (n: string) => ({ dir: into, name: n });
    await expect(
      unpackTar(hostTar, Readable.from([Buffer.alloc(2048, 'not a tar ')]), route),
    ).rejects.toThrow(TarFormatError);
    const pack = tar.pack();
    pack.entry({ name: 'big.bin' }, randomBytes(10_000));
    pack.finalize();
    const whole = await buffer(pack as unknown as Readable);
    await expect(unpackTar(hostTar, Readable.from([whole.subarray(0, 4096)]), route)).rejects.toThrow(
      /ends in the middle of an entry/,
    );
  });

  it("errors the saved stream when a source's tar fails", async () => {
    const failing = new PassThrough();
    setImmediate(() => failing.destroy(new Error('tar: cannot read')));
    await expect(buffer(concatTars([{ open: async () => failing, rename: (n) => n }]))).rejects.toThrow(
      'tar: cannot read',
    );
  });
});
