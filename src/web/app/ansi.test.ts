import { describe, expect, it } from 'vitest';
import { applySgr, colorCss, endStyle, parseAnsiLine, PLAIN, plainText, styleCss } from './ansi';

describe('ANSI output', () => {
  it('splits a line into spans by SGR colour and resets', () => {
    const { spans, end } = parseAnsiLine('ok \x1b[1;32mPASS\x1b[0m done', PLAIN);
    expect(spans.map((s) => s.text)).toEqual(['ok ', 'PASS', ' done']);
    expect(spans[1]!.style).toEqual({ bold: true, fg: 2 });
    expect(spans[2]!.style).toBe(PLAIN);
    expect(end).toBe(PLAIN);
  });

  it('carries a style that is not reset into the next line', () => {
    const first = parseAnsiLine('\x1b[31mred starts here', PLAIN);
    expect(first.end).toEqual({ fg: 1 });
    expect(endStyle('\x1b[31mred starts here', PLAIN)).toEqual({ fg: 1 });
    const second = parseAnsiLine('still red\x1b[39m plain', first.end);
    expect(second.spans[0]).toEqual({ text: 'still red', style: { fg: 1 } });
    expect(second.spans[1]!.style).toEqual({});
  });

  it('reads 256-colour, 24-bit and bright colours', () => {
    expect(applySgr(PLAIN, '38;5;208')).toEqual({ fg: 208 });
    expect(applySgr(PLAIN, '48;2;255;128;0')).toEqual({ bg: '#ff8000' });
    expect(applySgr(PLAIN, '93;104')).toEqual({ fg: 11, bg: 12 });
    expect(applySgr({ fg: 3, bold: true }, '')).toBe(PLAIN);
    expect(colorCss(208)).toBe('rgb(255,135,0)');
    expect(colorCss(244)).toBe('rgb(128,128,128)');
    expect(colorCss(4)).toBe('var(--ansi-4)');
  });

  it('drops sequences that are not colours: cursor moves, erase, OSC titles and links', () => {
    const line =
      '\x1b]0;title\x07\x1b[2K\x1b[1Gdownloading \x1b]8;;https://x.invalid\x1b\\link\x1b]8;;\x1b\\ \x1b[?25l';
    expect(plainText(line)).toBe('downloading link ');
  });

  it('keeps what follows the last carriage return (progress bars), but not for a CRLF ending', () => {
    expect(plainText('10%\r50%\r\x1b[32m100%\x1b[0m')).toBe('100%');
    expect(plainText('windows line\r')).toBe('windows line');
  });

  it('styles spans with inline CSS, inverse swapping the colours', () => {
    expect(styleCss(PLAIN)).toBeUndefined();
    expect(styleCss({ fg: 1, bold: true, underline: true })).toEqual({
      color: 'var(--ansi-1)',
      fontWeight: '700',
      textDecoration: 'underline',
    });
    expect(styleCss({ inverse: true })).toEqual({ color: 'var(--out-bg)', backgroundColor: 'var(--out-fg)' });
  });
});
