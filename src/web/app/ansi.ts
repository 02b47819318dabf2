// ANSI escape sequences in job output, one line at a time: SGR (colours, bold, italic, underline,
// inverse, strike; 16, 256 and 24-bit colours) become styled spans, every other sequence (cursor
// moves, erase, OSC titles and links) is dropped. The style at the end of a line is carried into
// the next, as a terminal does, so a virtualized view can parse any line on its own from the style
// it starts with. A carriage return starts the line over (progress bars show their last state).
//
// Hand-written (small) because the view needs that per-line entry style; the usual converters
// produce HTML strings or keep their state private.

/** a palette index (0–255) or a `#rrggbb` colour */
export type AnsiColor = number | string;

export interface AnsiStyle {
  readonly fg?: AnsiColor;
  readonly bg?: AnsiColor;
  readonly bold?: boolean;
  readonly dim?: boolean;
  readonly italic?: boolean;
  readonly underline?: boolean;
  readonly inverse?: boolean;
  readonly strike?: boolean;
}

export const PLAIN: AnsiStyle = Object.freeze({});

export interface AnsiSpan {
  text: string;
  style: AnsiStyle;
}

// CSI (ESC [ params final), OSC (ESC ] … BEL or ESC \), and two-character escapes
// eslint-disable-next-line no-control-regex
const ESCAPE_RE = /\x1b(?:\[([0-9;:?<=>]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\|$)|[@-Z\\^_]|$)/g;

function withColor(style: AnsiStyle, key: 'fg' | 'bg', color: AnsiColor | undefined): AnsiStyle {
  const next = { ...style };
  if (color === undefined) delete next[key];
  else next[key] = color;
  return next;
}

function hex(n: number): string {
  return Math.max(0, Math.min(255, n)).toString(16).padStart(2, '0');
}

/** Applies one SGR sequence's parameters (`1;31`, `38;5;208`, `38;2;255;0;0`, empty = reset). */
export function applySgr(style: AnsiStyle, params: string): AnsiStyle {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  let s = style;
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    if (c === 0) s = PLAIN;
    else if (c === 1) s = { ...s, bold: true };
    else if (c === 2) s = { ...s, dim: true };
    else if (c === 3) s = { ...s, italic: true };
    else if (c === 4) s = { ...s, underline: true };
    else if (c === 7) s = { ...s, inverse: true };
    else if (c === 9) s = { ...s, strike: true };
    else if (c === 22) s = { ...s, bold: false, dim: false };
    else if (c === 23) s = { ...s, italic: false };
    else if (c === 24) s = { ...s, underline: false };
    else if (c === 27) s = { ...s, inverse: false };
    else if (c === 29) s = { ...s, strike: false };
    else if (c >= 30 && c <= 37) s = withColor(s, 'fg', c - 30);
    else if (c >= 40 && c <= 47) s = withColor(s, 'bg', c - 40);
    else if (c >= 90 && c <= 97) s = withColor(s, 'fg', c - 90 + 8);
    else if (c >= 100 && c <= 107) s = withColor(s, 'bg', c - 100 + 8);
    else if (c === 39) s = withColor(s, 'fg', undefined);
    else if (c === 49) s = withColor(s, 'bg', undefined);
    else if (c === 38 || c === 48) {
      const key = c === 38 ? 'fg' : 'bg';
      if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
        s = withColor(s, key, Math.max(0, Math.min(255, codes[i + 2]!)));
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
        s = withColor(s, key, `#${hex(codes[i + 2]!)}${hex(codes[i + 3]!)}${hex(codes[i + 4]!)}`);
        i += 4;
      } else break; // malformed: the rest cannot be read reliably
    }
  }
  return s;
}

/** A line's spans, read from the style in force where it starts; and the style at its end. */
export function parseAnsiLine(line: string, start: AnsiStyle): { spans: AnsiSpan[]; end: AnsiStyle } {
  let style = start;
  if (!line.includes('\x1b') && !line.includes('\r')) {
    return { spans: line ? [{ text: line, style }] : [], end: style };
  }
  let spans: AnsiSpan[] = [];
  // a carriage return starts the line over once more text follows (a CRLF ending changes nothing)
  let returned = false;
  const push = (text: string) => {
    const parts = text.split('\r');
    for (let k = 0; k < parts.length; k++) {
      if (k > 0) returned = true;
      if (!parts[k]) continue;
      if (returned) {
        spans = [];
        returned = false;
      }
      spans.push({ text: parts[k]!, style });
    }
  };
  let last = 0;
  ESCAPE_RE.lastIndex = 0;
  for (let m = ESCAPE_RE.exec(line); m; m = ESCAPE_RE.exec(line)) {
    if (m.index > last) push(line.slice(last, m.index));
    if (m[2] === 'm') style = applySgr(style, m[1] ?? '');
    last = m.index + m[0].length;
  }
  if (last < line.length) push(line.slice(last));
  return { spans, end: style };
}

/** The style in force after a line, without building its spans (for lines not on screen). */
export function endStyle(line: string, start: AnsiStyle): AnsiStyle {
  if (!line.includes('\x1b[')) return start;
  let style = start;
  ESCAPE_RE.lastIndex = 0;
  for (let m = ESCAPE_RE.exec(line); m; m = ESCAPE_RE.exec(line)) {
    if (m[2] === 'm') style = applySgr(style, m[1] ?? '');
  }
  return style;
}

/** The text of a line as it reads, without escape sequences (for search and copying). */
export function plainText(line: string): string {
  return parseAnsiLine(line, PLAIN)
    .spans.map((s) => s.text)
    .join('');
}

const CUBE = [0, 95, 135, 175, 215, 255];

/** CSS for a colour: the 16 base colours are theme variables, the rest fixed xterm values. */
export function colorCss(c: AnsiColor): string {
  if (typeof c === 'string') return c;
  if (c < 16) return `var(--ansi-${c})`;
  if (c < 232) {
    const n = c - 16;
    return `rgb(${CUBE[Math.floor(n / 36)]},${CUBE[Math.floor(n / 6) % 6]},${CUBE[n % 6]})`;
  }
  const g = 8 + (c - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

/** Inline CSS for a span, or undefined for plain text. */
export function styleCss(s: AnsiStyle): Record<string, string> | undefined {
  if (s === PLAIN) return undefined;
  let fg = s.fg;
  let bg = s.bg;
  const css: Record<string, string> = {};
  if (s.inverse) {
    css.color = bg === undefined ? 'var(--out-bg)' : colorCss(bg);
    css.backgroundColor = fg === undefined ? 'var(--out-fg)' : colorCss(fg);
    fg = bg = undefined;
  }
  if (fg !== undefined) css.color = colorCss(fg);
  if (bg !== undefined) css.backgroundColor = colorCss(bg);
  if (s.bold) css.fontWeight = '700';
  if (s.dim) css.opacity = '0.7';
  if (s.italic) css.fontStyle = 'italic';
  const lines = [s.underline ? 'underline' : '', s.strike ? 'line-through' : ''].filter(Boolean);
  if (lines.length) css.textDecoration = lines.join(' ');
  return Object.keys(css).length ? css : undefined;
}
