import { describe, expect, it } from 'vitest';
import { decodeRecords, encodeFrames, scanRecords } from './output-format.js';
import type { OutputChunk } from './protocol.js';

const time = '2026-01-01T00:00:00.000Z';

describe('output records', () => {
  it('round-trips frames with any text, newlines, quotes, NUL and multi-byte characters included', () => {
    const chunks: OutputChunk[] = [
      { seq: 0, stream: 'out', time, data: 'line 1\nline "2"\n' },
      { seq: 1, stream: 'err', time, data: 'nul \0 and ünïcødé ✓ 🚀\n\n' },
      { seq: 2, stream: 'out', time, data: '' },
    ];
    const buf = encodeFrames(chunks);
    expect(decodeRecords(buf)).toEqual(chunks);
    expect(scanRecords(buf).map((r) => r.seq)).toEqual([0, 1, 2]);
    const spans = scanRecords(buf);
    expect(decodeRecords(buf.subarray(spans[1]!.start, spans[1]!.end))).toEqual([chunks[1]]);
  });

  it('reads JSON-line records and frames mixed, as older stored output has them', () => {
    const line = JSON.stringify({ seq: 0, stream: 'out', time, data: 'json\n' }) + '\n';
    const buf = Buffer.concat([
      Buffer.from(line),
      encodeFrames([{ seq: 1, stream: 'out', time, data: 'frame\n' }]),
    ]);
    expect(decodeRecords(buf).map((c) => c.data)).toEqual(['json\n', 'frame\n']);
    expect(scanRecords(buf).map((r) => [r.seq, r.end - r.start])).toEqual([
      [0, line.length],
      [1, buf.length - line.length],
    ]);
  });

  it('refuses records that are not what an agent sends, saying where', () => {
    const frame = (h: object, text: string) => Buffer.from(JSON.stringify(h) + '\n' + text + '\n');
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.from('not json\n'), /byte 0: not a JSON header line/],
      [frame({ seq: -1, stream: 'out', time, bytes: 1 }, 'x'), /seq must be an integer/],
      [frame({ seq: 0, stream: 'log', time, bytes: 1 }, 'x'), /stream must be "out" or "err"/],
      [frame({ seq: 0, stream: 'out', time: 'yesterday', bytes: 1 }, 'x'), /ISO UTC time/],
      [frame({ seq: 0, stream: 'out', time }, 'x'), /either "data"/],
      [frame({ seq: 0, stream: 'out', time, bytes: 5 }, 'x'), /5 bytes must be followed by a newline/],
      [frame({ seq: 0, stream: 'out', time, bytes: 1 }, 'xy'), /must be followed by a newline/],
    ];
    for (const [buf, message] of cases) expect(() => scanRecords(buf), message.source).toThrow(message);
    const good = encodeFrames([{ seq: 0, stream: 'out', time, data: 'ok\n' }]);
    expect(() => scanRecords(Buffer.concat([good, Buffer.from('{"seq":1}\n')]))).toThrow(
      new RegExp(`byte ${good.length}: `),
    );
  });
});
