// Renaming the entries of a tar stream without unpacking it: headers are read and rewritten one by
// one (with the pax `path`/`linkpath` records and GNU long names that carry long names), and file
// contents are passed on as slices of the chunks they arrived in. A stream per entry, as tar-stream's
// extract → pack makes, costs more than compressing the archive when a cache holds tens of thousands
// of small files (bench/cache.ts). Reads ustar, pax and GNU archives (GNU tar's and tar-stream's
// output); writes names that do not fit a header as GNU long names, as GNU tar does.

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
/** the two zero blocks that end an archive */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

const NAME = 0;
const NAME_LEN = 100;
const SIZE = 124;
const SIZE_LEN = 12;
const CHECKSUM = 148;
const TYPEFLAG = 156;
const LINKNAME = 157;
const MAGIC = 257;
const PREFIX = 345;
const PREFIX_LEN = 155;
const USTAR_MAGIC = Buffer.from('ustar\0', 'latin1');
const GNU_MAGIC = Buffer.from('ustar  \0', 'latin1');

/** POSIX ustar (and pax): magic "ustar\0"; its prefix field holds the start of long names */
function isUstar(block: Buffer): boolean {
  return block.compare(USTAR_MAGIC, 0, 6, MAGIC, MAGIC + 6) === 0;
}

/** GNU tar's own format: magic "ustar  \0" */
function isGnu(block: Buffer): boolean {
  return block.compare(GNU_MAGIC, 0, 8, MAGIC, MAGIC + 8) === 0;
}

/** typeflags whose entries have no contents, whatever their size field says (as Go's archive/tar reads them) */
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

/** whether an entry has no contents: a header-only type, or a directory marked by its name */
function contentless(header: Buffer, type: string): boolean {
  return HEADER_ONLY.has(String.fromCharCode(header[TYPEFLAG]!)) || type === 'directory';
}

/** tar-stream's names for the typeflags (what UnpackEntry.type reports) */
const TYPE_NAMES: Record<string, string> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
};

export class TarFormatError extends Error {}

/** One entry's header as read, with the extended headers that came before it. */
export interface TarEntry {
  /** a pax `path`, else a GNU long name, else the header's prefix and name fields */
  name: string;
  /** a pax `linkpath`, else a GNU long link name, else the header's linkname field */
  linkname: string;
  /** tar-stream's name for the type: file, directory, symlink, link, … */
  type: string;
  /** the header block (512 bytes): a slice of the input, valid during the `entry` call only */
  header: Buffer;
  /** the records of a pax header ('x') before it, in order, with that header's block */
  pax: { block: Buffer; records: Array<[string, string]> } | null;
}

function octal(buf: Buffer, start: number, length: number): number {
  // GNU base-256 for values octal cannot hold (files of 8 GiB and more)
  if (buf[start]! & 0x80) {
    let v = buf[start]! & 0x7f;
    for (let i = start + 1; i < start + length; i++) v = v * 256 + buf[i]!;
    return v;
  }
  let i = start;
  const end = start + length;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  return v;
}

function text(buf: Buffer, start: number, length: number): string {
  const nul = buf.subarray(start, start + length).indexOf(0);
  return buf.toString('utf8', start, nul < 0 ? start + length : start + nul);
}

function checksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < CHECKSUM; i++) sum += block[i]!;
  for (let i = CHECKSUM + 8; i < BLOCK; i++) sum += block[i]!;
  return sum;
}

/** the checksum as GNU tar writes it: six octal digits, NUL, space */
function writeChecksum(block: Buffer): void {
  let sum = checksum(block);
  for (let i = CHECKSUM + 5; i >= CHECKSUM; i--) {
    block[i] = 0x30 + (sum & 7);
    sum >>= 3;
  }
  block[CHECKSUM + 6] = 0;
  block[CHECKSUM + 7] = 0x20;
}

function writeOctal(block: Buffer, start: number, length: number, value: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', start, length, 'latin1');
}

function writeText(block: Buffer, start: number, length: number, value: string): void {
  block.fill(0, start, start + length);
  block.write(value, start, length, 'utf8');
}

function parsePax(data: Buffer): Array<[string, string]> {
  const records: Array<[string, string]> = [];
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const len = space < 0 ? NaN : Number(data.toString('latin1', at, space));
    if (!(len > 0) || at + len > data.length) break; // padding or garbage after the records
    const record = data.toString('utf8', space + 1, at + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) records.push([record.slice(0, eq), record.slice(eq + 1)]);
    at += len;
  }
  return records;
}

function encodePax(records: Array<[string, string]>): Buffer {
  let out = '';
  for (const [key, value] of records) {
    const body = ` ${key}=${value}\n`;
    const bytes = Buffer.byteLength(body);
    let len = bytes + String(bytes).length;
    if (String(len).length !== String(bytes).length) len = bytes + String(len).length;
    out += `${len}${body}`;
  }
  return Buffer.from(out, 'utf8');
}

/** the blocks of an extended header entry: its header, then `data` padded to whole blocks */
function extended(header: Buffer, data: Buffer): Buffer[] {
  writeOctal(header, SIZE, SIZE_LEN, data.length);
  writeChecksum(header);
  const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return pad ? [header, data, Buffer.alloc(pad)] : [header, data];
}

/** a GNU long name ('L') or long link name ('K') entry */
function gnuLong(flag: 'L' | 'K', value: string): Buffer[] {
  const header = Buffer.alloc(BLOCK);
  header.write('././@LongLink', NAME, 'latin1');
  writeOctal(header, 100, 8, 0o644);
  writeOctal(header, 108, 8, 0);
  writeOctal(header, 116, 8, 0);
  writeOctal(header, 136, 12, 0);
  header.write(flag, TYPEFLAG, 'latin1');
  GNU_MAGIC.copy(header, MAGIC);
  return extended(header, Buffer.from(value + '\0', 'utf8'));
}

/**
 * The blocks that write `entry` under `name` (and, for a hard link, `linkname`): its pax header with
 * the path records replaced, a GNU long name where the name does not fit the header, and the header.
 * Its contents follow unchanged.
 */
export function renamedEntry(entry: TarEntry, name: string, linkname = entry.linkname): Buffer[] {
  const out: Buffer[] = [];
  const header = Buffer.from(entry.header);
  const records = entry.pax?.records ?? [];
  const paxPath = records.some(([k]) => k === 'path');
  const paxLink = records.some(([k]) => k === 'linkpath');
  if (entry.pax) {
    const renamed = records.map(([k, v]): [string, string] =>
      k === 'path' ? [k, name] : k === 'linkpath' ? [k, linkname] : [k, v],
    );
    out.push(...extended(Buffer.from(entry.pax.block), encodePax(renamed)));
  }
  if (!paxPath && Buffer.byteLength(name) > NAME_LEN) out.push(...gnuLong('L', name));
  if (!paxLink && Buffer.byteLength(linkname) > NAME_LEN) out.push(...gnuLong('K', linkname));
  writeText(header, NAME, NAME_LEN, name);
  if (isUstar(header)) header.fill(0, PREFIX, PREFIX + PREFIX_LEN);
  if (linkname !== entry.linkname) writeText(header, LINKNAME, NAME_LEN, linkname);
  // what the reader took for contentless has no contents in the output either
  if (contentless(header, entry.type)) writeOctal(header, SIZE, SIZE_LEN, 0);
  writeChecksum(header);
  out.push(header);
  return out;
}

export interface TarHandlers {
  /** an entry's header, extended headers folded in */
  entry(entry: TarEntry): void;
  /** the current entry's contents: a slice of the input, padded to whole blocks as in the archive */
  data(part: Buffer): void;
}

/**
 * Reads a tar stream pushed to it chunk by chunk, calling `entry` for each header and `data` for the
 * contents that follow. Zero blocks are skipped (an archive's end, or between concatenated archives).
 * Throws TarFormatError on a header with a wrong checksum or an unknown format, and from end() when
 * the archive was cut short.
 */
export class TarReader {
  /** bytes of an unfinished header block */
  private held: Buffer | null = null;
  /** bytes of the current entry's contents (with padding) still to come */
  private left = 0;
  /** an extended header being read: its type, block, and contents so far */
  private ext: { flag: string; block: Buffer; size: number; parts: Buffer[] } | null = null;
  private pax: TarEntry['pax'] = null;
  private longName: string | null = null;
  private longLink: string | null = null;

  constructor(private readonly on: TarHandlers) {}

  push(input: Buffer): void {
    let chunk = input;
    if (this.held) {
      const need = BLOCK - this.held.length;
      if (chunk.length < need) {
        this.held = Buffer.concat([this.held, chunk]);
        return;
      }
      const block = Buffer.concat([this.held, chunk.subarray(0, need)]);
      this.held = null;
      chunk = chunk.subarray(need);
      this.header(block);
    }
    let at = 0;
    while (at < chunk.length) {
      if (this.left > 0) {
        const n = Math.min(this.left, chunk.length - at);
        const part = chunk.subarray(at, at + n);
        at += n;
        this.left -= n;
        if (!this.ext) this.on.data(part);
        else {
          this.ext.parts.push(part);
          if (this.left === 0) this.endExtended();
        }
      } else if (chunk.length - at < BLOCK) {
        this.held = Buffer.from(chunk.subarray(at));
        return;
      } else {
        this.header(chunk.subarray(at, at + BLOCK));
        at += BLOCK;
      }
    }
  }

  end(): void {
    if (
      this.left > 0 ||
      this.held ||
      this.ext ||
      this.pax ||
      this.longName !== null ||
      this.longLink !== null
    ) {
      throw new TarFormatError('the tar archive ends in the middle of an entry');
    }
  }

  private header(block: Buffer): void {
    if (block.equals(ZERO_BLOCK)) return;
    if (checksum(block) !== octal(block, CHECKSUM, 8)) {
      throw new TarFormatError('invalid tar header (wrong checksum): the archive is corrupt or not a tar');
    }
    const ustar = isUstar(block);
    if (!ustar && !isGnu(block)) {
      throw new TarFormatError('invalid tar header (unknown format)');
    }
    const flag = String.fromCharCode(block[TYPEFLAG]!);
    const size = octal(block, SIZE, SIZE_LEN);
    if (flag === 'x' || flag === 'L' || flag === 'K' || flag === 'g') {
      this.ext = { flag, block: Buffer.from(block), size, parts: [] };
      this.left = Math.ceil(size / BLOCK) * BLOCK;
      if (this.left === 0) this.endExtended();
      return;
    }
    let name = this.longName ?? text(block, NAME, NAME_LEN);
    if (this.longName === null && ustar && block[PREFIX] !== 0)
      name = `${text(block, PREFIX, PREFIX_LEN)}/${name}`;
    let linkname = this.longLink ?? text(block, LINKNAME, NAME_LEN);
    for (const [k, v] of this.pax?.records ?? []) {
      if (k === 'path') name = v;
      else if (k === 'linkpath') linkname = v;
    }
    let type = TYPE_NAMES[flag] ?? 'unknown';
    if (type === 'file' && name.endsWith('/')) type = 'directory'; // old tars mark directories so
    const entry: TarEntry = { name, linkname, type, header: block, pax: this.pax };
    this.pax = null;
    this.longName = this.longLink = null;
    this.left = contentless(block, type) ? 0 : Math.ceil(size / BLOCK) * BLOCK;
    this.on.entry(entry);
  }

  private endExtended(): void {
    const e = this.ext!;
    this.ext = null;
    const data = Buffer.concat(e.parts).subarray(0, e.size);
    if (e.flag === 'x') this.pax = { block: e.block, records: parsePax(data) };
    else if (e.flag === 'L') this.longName = text(data, 0, data.length);
    else if (e.flag === 'K') this.longLink = text(data, 0, data.length);
    // 'g' (pax global header): dropped, as tar-stream's extract → pack did
  }
}

/** a piece this long is passed on as it is; shorter ones are gathered */
const DIRECT_BYTES = 16 * 1024;

/**
 * Gathers small buffers (headers, small files) into writes of about `bytes`, in order with the
 * large ones passed on as they are: a pipe write per header would be many small writes.
 */
export class Batcher {
  private parts: Buffer[] = [];
  private size = 0;
  private due: Buffer[] = [];

  constructor(private readonly bytes = 64 * 1024) {}

  add(b: Buffer): void {
    if (b.length >= DIRECT_BYTES) {
      this.flush();
      this.due.push(b);
      return;
    }
    this.parts.push(b);
    this.size += b.length;
    if (this.size >= this.bytes) this.flush();
  }

  /** makes everything gathered due */
  flush(): void {
    if (this.size === 0) return;
    this.due.push(this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size));
    this.parts = [];
    this.size = 0;
  }

  /** the buffers due to be written, in order (and forgets them) */
  take(): Buffer[] {
    const due = this.due;
    this.due = [];
    return due;
  }
}
