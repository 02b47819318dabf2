// A step's output as lines for the virtualized view: chunks arrive cut anywhere, so the text after
// the last newline waits as a partial line (still shown); each line keeps the ANSI style it starts
// with, so it can be drawn on its own when it scrolls into view. Search reads the lines as they
// read on screen (escape sequences dropped) and marks its matches inside the coloured spans.
import { endStyle, plainText, PLAIN, type AnsiSpan, type AnsiStyle } from './ansi';

/** past this the browser keeps no more (the raw output link has it all) */
export const MAX_LINES = 1_000_000;

export class OutputLines {
  private readonly lines: string[] = [];
  private readonly starts: AnsiStyle[] = [];
  private partial = '';
  private partialStart: AnsiStyle = PLAIN;
  /** true once MAX_LINES were kept and more came */
  truncated = false;

  append(text: string): void {
    if (this.truncated) return;
    const t = this.partial + text;
    let from = 0;
    for (let nl = t.indexOf('\n'); nl >= 0; nl = t.indexOf('\n', from)) {
      if (this.lines.length >= MAX_LINES) {
        this.truncated = true;
        this.partial = '';
        return;
      }
      const line = t.slice(from, nl);
      this.lines.push(line);
      this.starts.push(this.partialStart);
      this.partialStart = endStyle(line, this.partialStart);
      from = nl + 1;
    }
    this.partial = t.slice(from);
  }

  /** lines, counting a partial last line */
  get count(): number {
    return this.lines.length + (this.partial ? 1 : 0);
  }

  line(i: number): { text: string; start: AnsiStyle } {
    if (i < this.lines.length) return { text: this.lines[i]!, start: this.starts[i]! };
    return { text: this.partial, start: this.partialStart };
  }
}

/** past this many matches a search stops counting (the reader refines the query) */
export const MAX_MATCHES = 10_000;

/** a match of a search: line index, and the offsets in the line's plain text */
export interface OutputMatch {
  line: number;
  start: number;
  end: number;
}

/**
 * The matches of `query` in the lines from `fromLine` on, in order, ignoring case; at most
 * `limit`. Matches do not overlap, and no match crosses a line break (like a browser's find in
 * page).
 */
export function findMatches(
  lines: OutputLines,
  query: string,
  limit = MAX_MATCHES,
  fromLine = 0,
): OutputMatch[] {
  const out: OutputMatch[] = [];
  if (!query) return out;
  const q = query.toLowerCase();
  for (let i = fromLine; i < lines.count && out.length < limit; i++) {
    const raw = lines.line(i).text;
    // cheap test first: most lines have no escape sequences and no match
    const text = raw.includes('\x1b') || raw.includes('\r') ? plainText(raw) : raw;
    const lower = text.toLowerCase();
    for (let at = lower.indexOf(q); at >= 0 && out.length < limit; at = lower.indexOf(q, at + q.length)) {
      out.push({ line: i, start: at, end: at + q.length });
    }
  }
  return out;
}

/** a piece of a drawn line: a span's text and style, marked when inside a match */
export interface MarkedSpan extends AnsiSpan {
  /** the index among the line's ranges of the match it belongs to, if any */
  match?: number;
}

/** Cuts a line's spans at the edges of `ranges` (plain-text offsets, sorted, not overlapping). */
export function markSpans(spans: AnsiSpan[], ranges: Array<{ start: number; end: number }>): MarkedSpan[] {
  if (ranges.length === 0) return spans;
  const out: MarkedSpan[] = [];
  let offset = 0;
  let r = 0;
  for (const span of spans) {
    const spanEnd = offset + span.text.length;
    let at = offset;
    while (at < spanEnd) {
      while (r < ranges.length && ranges[r]!.end <= at) r++;
      const range = ranges[r];
      if (!range || range.start >= spanEnd) {
        out.push({ text: span.text.slice(at - offset), style: span.style });
        at = spanEnd;
      } else if (range.start > at) {
        out.push({ text: span.text.slice(at - offset, range.start - offset), style: span.style });
        at = range.start;
      } else {
        const to = Math.min(range.end, spanEnd);
        out.push({ text: span.text.slice(at - offset, to - offset), style: span.style, match: r });
        at = to;
      }
    }
    offset = spanEnd;
  }
  return out;
}

/**
 * A search kept up to date as live output arrives: the same query on more lines searches only
 * the new ones (and the last line again, which may have been partial), not all 200,000.
 */
export class OutputSearch {
  private lines: OutputLines | undefined;
  private query = '';
  private searched = 0;
  private found: OutputMatch[] = [];

  matches(lines: OutputLines, query: string): OutputMatch[] {
    if (!query) return [];
    if (lines !== this.lines || query !== this.query) {
      this.lines = lines;
      this.query = query;
      this.found = findMatches(lines, query);
    } else {
      const from = Math.max(0, this.searched - 1);
      const kept = this.found.filter((m) => m.line < from);
      this.found = kept.concat(findMatches(lines, query, MAX_MATCHES - kept.length, from));
    }
    this.searched = lines.count;
    return this.found;
  }
}
