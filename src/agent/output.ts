// Output helpers for running steps: masking secret values, decoding a child's bytes into text and
// formatting durations the way CircleCI's Go agent prints them.
import { StringDecoder } from 'node:string_decoder';

export const MASK = '********';
/** values shorter than this are not masked (CircleCI masks secrets of 4 characters or more) */
export const MIN_SECRET_LENGTH = 4;
/** how long a partial line waits for its newline before it is masked and sent anyway */
const PARTIAL_LINE_MS = 30;
/** a partial line longer than this is sent at once */
const PARTIAL_LINE_MAX_CHARS = 8192;

export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(MASK);
  return out;
}

/**
 * Secrets worth masking, longest first so a secret containing another is masked whole. Output is
 * masked a line at a time, so each line (of 4 characters or more) of a multi-line value — a
 * private key, a JSON credential — is masked on its own as well.
 */
export function maskableSecrets(secrets: readonly string[]): string[] {
  const all: string[] = [];
  for (const s of secrets) {
    all.push(s);
    if (s.includes('\n')) for (const line of s.split(/\r?\n/)) all.push(line.trimEnd());
  }
  return [...new Set(all.filter((s) => s.length >= MIN_SECRET_LENGTH))].sort((a, b) => b.length - a.length);
}

/** length of the longest end of `text` that is the beginning of a secret (it may be completed by what comes next) */
function secretPrefixAtEnd(text: string, secrets: readonly string[]): number {
  let keep = 0;
  for (const s of secrets) {
    for (let k = Math.min(s.length - 1, text.length); k > keep; k--) {
      if (text.endsWith(s.slice(0, k))) {
        keep = k;
        break;
      }
    }
  }
  return keep;
}

/**
 * Turns one stream's bytes into masked text. Text is passed on a line at a time so a secret
 * split across two reads is still masked; a partial line is passed on after PARTIAL_LINE_MS (or
 * once it is long), except for an end that could be the start of a secret: that waits for the
 * next write or the end of the stream.
 */
export class MaskingStream {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly secrets: readonly string[],
    private readonly emit: (text: string) => void,
  ) {}

  write(chunk: Buffer | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    // nothing to mask: nothing to hold back either
    if (this.secrets.length === 0) {
      if (text) this.emit(text);
      return;
    }
    this.pending += text;
    const cut = this.pending.lastIndexOf('\n');
    if (cut >= 0) {
      const lines = this.pending.slice(0, cut + 1);
      this.pending = this.pending.slice(cut + 1);
      this.emit(maskSecrets(lines, this.secrets));
    }
    if (this.pending.length > PARTIAL_LINE_MAX_CHARS) this.flushPartial();
    else if (this.pending && !this.timer) this.timer = setTimeout(() => this.flushPartial(), PARTIAL_LINE_MS);
  }

  /** passes on everything pending, masked (at the end of the stream) */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const rest = this.pending;
    this.pending = '';
    if (rest) this.emit(maskSecrets(rest, this.secrets));
  }

  end(): void {
    this.pending += this.decoder.end();
    this.flush();
  }

  /** passes on a partial line, keeping back an end that may be the first part of a secret */
  private flushPartial(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const masked = maskSecrets(this.pending, this.secrets);
    const keep = secretPrefixAtEnd(masked, this.secrets);
    this.pending = masked.slice(masked.length - keep);
    const out = masked.slice(0, masked.length - keep);
    if (out) this.emit(out);
  }
}

/** Go's time.Duration.String(), e.g. 600000 → '10m0s', 300 → '300ms', 4500000 → '1h15m0s'. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${trimFraction(ms)}ms`;
  const totalSeconds = ms / 1000;
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds - hours * 3600) / 60);
  const seconds = totalSeconds - hours * 3600 - minutes * 60;
  let out = `${trimFraction(seconds)}s`;
  if (hours > 0 || minutes > 0) out = `${minutes}m${out}`;
  if (hours > 0) out = `${hours}h${out}`;
  return out;
}

function trimFraction(n: number): string {
  return String(Math.round(n * 1e6) / 1e6);
}
