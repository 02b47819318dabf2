import { describe, expect, it } from 'vitest';
import { OutputLines } from './output';

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

  it('takes 200,000 lines quickly', () => {
    const out = new OutputLines();
    const t = performance.now();
    for (let i = 0; i < 2000; i++) {
      out.append(
        Array.from({ length: 100 }, (_, k) => `\x1b[32mline ${i * 100 + k}\x1b[0m`).join('\n') + '\n',
      );
    }
    expect(out.count).toBe(200_000);
    expect(out.line(199_999).text).toContain('line 199999');
    expect(performance.now() - t).toBeLessThan(2000);
  });
});
