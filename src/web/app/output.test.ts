import { describe, expect, it } from 'vitest';
import { findMatches, markSpans, OutputLines, OutputSearch } from './output';

describe('output lines', () => {
  it('joins chunks cut mid-line and shows the partial last line', () => {
    const out = new OutputLines();
    out.append('first li');
    expect(out.count).toBe(1);
    expect(out.line(0).text).toBe('first li');
    out.append('ne\nsecond\nthi');
    expect(out.count).toBe(3);
    expect([0, 1, 2].map((i) => out.line(i).text)).toEqual(['first line', 'second', 'thi']);
    out.append('rd\n');
    expect(out.count).toBe(3);
    expect(out.line(2).text).toBe('third');
  });

  it('remembers the colour each line starts with', () => {
    const out = new OutputLines();
    out.append('\x1b[33mwarn: one\nwarn: two\x1b[0m\nplain\n');
    expect(out.line(0).start).toEqual({});
    expect(out.line(1).start).toEqual({ fg: 3 });
    expect(out.line(2).start).toEqual({});
  });

  // how fast: bench/web-output.ts (a timed test only flakes on a busy machine)
  it('keeps 200,000 coloured lines, each with the style it starts in', () => {
    const out = new OutputLines();
    for (let i = 0; i < 2000; i++) {
      out.append(
        Array.from({ length: 100 }, (_, k) => `\x1b[32mline ${i * 100 + k}\x1b[0m`).join('\n') + '\n',
      );
    }
    expect(out.count).toBe(200_000);
    expect(out.line(199_999).text).toContain('line 199999');
    expect(out.line(123_456).text).toBe('\x1b[32mline 123456\x1b[0m');
    expect(out.line(123_456).start).toEqual({});
  });
});

describe('search in output', () => {
  it('finds matches in the text as it reads, ignoring case and escape sequences', () => {
    const out = new OutputLines();
    out.append('Error: one\n\x1b[31mERR\x1b[0mOR two error\nfine\nerr');
    expect(findMatches(out, 'error')).toEqual([
      { line: 0, start: 0, end: 5 },
      { line: 1, start: 0, end: 5 },
      { line: 1, start: 10, end: 15 },
    ]);
    // the partial last line is searched too, and the limit holds
    expect(findMatches(out, 'err')).toHaveLength(4);
    expect(findMatches(out, 'err', 2)).toHaveLength(2);
    expect(findMatches(out, '')).toEqual([]);
    // matches do not overlap
    const a = new OutputLines();
    a.append('aaaa\n');
    expect(findMatches(a, 'aa').map((m) => m.start)).toEqual([0, 2]);
  });

  it('cuts coloured spans at the edges of the matches', () => {
    const red = { fg: 1 };
    const spans = [
      { text: 'ERR', style: red },
      { text: 'OR two error', style: {} },
    ];
    expect(
      markSpans(spans, [
        { start: 0, end: 5 },
        { start: 10, end: 15 },
      ]),
    ).toEqual([
      { text: 'ERR', style: red, match: 0 },
      { text: 'OR', style: {}, match: 0 },
      { text: ' two ', style: {} },
      { text: 'error', style: {}, match: 1 },
    ]);
    expect(markSpans(spans, [])).toBe(spans);
  });
});

describe('live search', () => {
  it('gives the same matches as a full search while lines keep arriving', () => {
    const out = new OutputLines();
    const search = new OutputSearch();
    const chunks = ['err one\nok\ner', 'r two\n', 'no\nERR', ' three err\n', '\x1b[1merr\x1b[0m'];
    for (const c of chunks) {
      out.append(c);
      expect(search.matches(out, 'err')).toEqual(findMatches(out, 'err'));
    }
    expect(search.matches(out, 'err')).toHaveLength(5);
    // a new query starts over
    expect(search.matches(out, 'two')).toEqual([{ line: 2, start: 4, end: 7 }]);
    expect(search.matches(out, '')).toEqual([]);
  });
});
