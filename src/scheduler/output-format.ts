// Step output as agents send it and the object store keeps it: a sequence of records, each starting
// with a JSON header line. Two kinds, freely mixed:
//   {"seq":0,"stream":"out","time":"…","data":"text"}\n          a chunk in one JSON line
//   {"seq":1,"stream":"out","time":"…","bytes":6}\nline 1\n\n     a frame: the header, then that many
//                                                               bytes of UTF-8 text as printed, then \n
// Frames carry text without JSON escaping, so a step printing fast costs the agent one UTF-8 encode
// and the server one scan of the headers; JSON lines are what small reports and older data use.
import { TorusError } from '../ops/index.js';
import type { OutputChunk } from './protocol.js';

export const OUTPUT_FRAMES_CONTENT_TYPE = 'application/vnd.torus.output-frames';

const NEWLINE = 0x0a;
/** a header line longer than this is not a header */
const MAX_HEADER_BYTES = 4096;
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/;

export interface RecordSpan {
  seq: number;
  /** where the record starts and ends (after its final newline) in the buffer */
  start: number;
  end: number;
}

function bad(at: number, why: string): TorusError {
  return new TorusError('TORUS_E_BAD_REQUEST', `output record at byte ${at}: ${why}`);
}

const FRAME_END = Buffer.from('\n');

/** A chunk whose text is UTF-8 bytes already (ending on a whole character). */
export interface ChunkBytes {
  seq: number;
  stream: 'out' | 'err';
  time: string;
  text: Buffer;
}

/**
 * The frames of chunks as a list of buffers to write one after another: each chunk's header, its
 * text (the buffer given, not a copy) and a newline. What an agent sends for a fast step.
 */
export function frameParts(chunks: readonly ChunkBytes[]): Buffer[] {
  const parts: Buffer[] = [];
  for (const c of chunks) {
    const header = JSON.stringify({ seq: c.seq, stream: c.stream, time: c.time, bytes: c.text.length });
    parts.push(Buffer.from(header + '\n'), c.text, FRAME_END);
  }
  return parts;
}

/** The frames of chunks in one buffer. */
export function encodeFrames(chunks: readonly OutputChunk[]): Buffer {
  return Buffer.concat(
    frameParts(chunks.map((c) => ({ seq: c.seq, stream: c.stream, time: c.time, text: Buffer.from(c.data) }))),
  );
}

interface Header {
  seq: number;
  stream: 'out' | 'err';
  time: string;
  /** a frame's text length; absent for a JSON-line chunk */
  bytes?: number;
  data?: string;
}

function readHeader(buf: Buffer, at: number): { header: Header; next: number } {
  let nl = buf.indexOf(NEWLINE, at);
  if (nl < 0) nl = buf.length;
  const isFrame = nl - at <= MAX_HEADER_BYTES;
  let h: Partial<Record<keyof Header, unknown>>;
  try {
    h = JSON.parse(buf.toString('utf8', at, nl)) as typeof h;
  } catch {
    throw bad(at, 'not a JSON header line');
  }
  if (typeof h !== 'object' || h === null) throw bad(at, 'not an object');
  if (!Number.isInteger(h.seq) || (h.seq as number) < 0 || (h.seq as number) > 2_147_483_647)
    throw bad(at, 'seq must be an integer from 0');
  if (h.stream !== 'out' && h.stream !== 'err') throw bad(at, 'stream must be "out" or "err"');
  if (typeof h.time !== 'string' || !ISO_TIME.test(h.time)) throw bad(at, 'time must be an ISO UTC time');
  if (typeof h.data === 'string') return { header: h as Header, next: nl + 1 };
  if (!isFrame || !Number.isInteger(h.bytes) || (h.bytes as number) < 0)
    throw bad(at, 'a record has either "data" (a string) or "bytes" (its text length)');
  return { header: h as Header, next: nl + 1 };
}

/** Each record of a buffer: its header, where its text starts, and where it ends (after its newline). */
function* records(buf: Buffer): Generator<{ header: Header; start: number; text: number; end: number }> {
  let at = 0;
  while (at < buf.length) {
    if (buf[at] === NEWLINE) {
      at++;
      continue;
    }
    const { header, next } = readHeader(buf, at);
    let end = next;
    if (header.bytes !== undefined) {
      end = next + header.bytes;
      if (end >= buf.length || buf[end] !== NEWLINE)
        throw bad(at, `a frame of ${header.bytes} bytes must be followed by a newline`);
      end++;
    }
    yield { header, start: at, text: next, end };
    at = end;
  }
}

/**
 * Checks every record of a buffer and says where each is. Throws a TorusError (400) naming the
 * first thing wrong: agents' requests are checked with it before anything is stored.
 */
export function scanRecords(buf: Buffer): RecordSpan[] {
  const spans: RecordSpan[] = [];
  for (const r of records(buf)) spans.push({ seq: r.header.seq, start: r.start, end: r.end });
  return spans;
}

/** The chunks of a buffer of records. */
export function decodeRecords(buf: Buffer): OutputChunk[] {
  const out: OutputChunk[] = [];
  for (const { header: h, text, end } of records(buf)) {
    const data = h.bytes === undefined ? (h.data ?? '') : buf.toString('utf8', text, end - 1);
    out.push({ seq: h.seq, stream: h.stream, time: h.time, data });
  }
  return out;
}
