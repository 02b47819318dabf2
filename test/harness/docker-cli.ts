// A job image with a `docker` command, for the setup_remote_docker tests: the busybox test image plus
// a statically linked Docker CLI found on this host's PATH (Debian's docker.io CLI is dynamically
// linked and would not run in busybox). Nothing is pulled.
import { closeSync, createReadStream, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import tar from 'tar-stream';
import { BUSYBOX_IMAGE } from './docker.js';
import { REQUIRE_ALL } from './parts.js';

/** a `docker` on PATH that runs in any image: a static ELF (no program interpreter) */
function findStaticDockerCli(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const file = path.join(dir, 'docker');
    let fd: number | undefined;
    try {
      fd = openSync(file, 'r');
      const head = Buffer.alloc(64);
      readSync(fd, head, 0, 64, 0);
      if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) continue; // a 64-bit ELF
      const phoff = Number(head.readBigUInt64LE(0x20));
      const size = head.readUInt16LE(0x36);
      const count = head.readUInt16LE(0x38);
      const table = Buffer.alloc(size * count);
      readSync(fd, table, 0, table.length, phoff);
      const PT_INTERP = 3;
      if (![...Array(count).keys()].some((i) => table.readUInt32LE(i * size) === PT_INTERP)) return file;
    } catch {
      // not there or not readable: the next PATH entry
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return undefined;
}

/** the CLI to copy into the job's image, or undefined (with a SKIP line, or a throw in CI) */
export function staticDockerCli(what: string): string | undefined {
  const found = findStaticDockerCli();
  if (found) return found;
  const line = `SKIP ${what}: needs a statically linked docker CLI on PATH (copied into the job's busybox image), which is not here`;
  if (REQUIRE_ALL) throw new Error(`${line} (TORUS_TEST_REQUIRE_ALL=1)`);
  console.warn(line);
  return undefined;
}

async function follow(docker: Docker, stream: NodeJS.ReadableStream): Promise<void> {
  const events = await new Promise<{ error?: string }[]>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, ev: { error?: string }[]) =>
      err ? reject(err) : resolve(ev),
    ),
  );
  const error = events.find((e) => e.error)?.error;
  if (error) throw new Error(error);
}

/** builds `tag`: the busybox test image plus the static Docker CLI at /bin/docker */
export async function buildDockerCliImage(docker: Docker, cliPath: string, tag: string): Promise<void> {
  const pack = tar.pack();
  const body = new PassThrough();
  pack.pipe(body);
  // the engine reads the context while it is written: 40 MB do not fit in the stream's buffers
  const building = docker.buildImage(body as unknown as Readable, { t: tag });
  pack.entry({ name: 'Dockerfile' }, `FROM ${BUSYBOX_IMAGE}\nCOPY docker /bin/docker\n`);
  const entry = pack.entry({ name: 'docker', mode: 0o755, size: statSync(cliPath).size });
  await pipeline(createReadStream(cliPath), entry);
  pack.finalize();
  await follow(docker, await building);
}
