// A step's output as lines for the virtualized view: chunks arrive cut anywhere, so the text after
// the last newline waits as a partial line (still shown); each line keeps the ANSI style it starts
// with, so it can be drawn on its own when it scrolls into view.
import { endStyle, PLAIN, type AnsiStyle } from './ansi';

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
