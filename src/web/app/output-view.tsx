// A step's output, followed live through the server's event stream
// (`/api/v2/project/{slug}/job/{n}/output?step=&index=&follow=true`) and drawn virtualized: only
// the lines on screen exist in the page, so 200,000 lines scroll as smoothly as 20. Lines keep
// their ANSI colours; the view sticks to the bottom while the reader is there. A search box finds
// text in all the lines (not only those drawn, which is all a browser's find in page could see),
// marks the matches and steps through them: Enter and Shift+Enter, or the buttons; `/` or
// Ctrl+F in the output jumps to it, Escape clears it.
import {
  memo,
  useDeferredValue,
  useEffect,
  useId,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  type KeyboardEvent,
} from 'react';
import { flushSync } from 'react-dom';
import { useVirtualizer } from '@tanstack/react-virtual';
import { parseAnsiLine, styleCss, type AnsiStyle } from './ansi';
import { markSpans, MAX_MATCHES, OutputLines, OutputSearch, type OutputMatch } from './output';

/** px; the stylesheet's `.output-line` height matches */
export const LINE_HEIGHT = 20;
/** px above the first line and below the last */
const PADDING = 8;
/** the view grows with its lines up to this, then scrolls */
const MAX_HEIGHT_CSS = 'min(65vh, 720px)';

interface StreamEnd {
  status: string | null;
  exit_code: number | null;
}

interface OutputChunk {
  seq: number;
  message: string;
}

/** a line's matches: their ranges, and which of them (if any) is the current one */
interface LineMarks {
  ranges: OutputMatch[];
  current: number;
}

const NO_MARKS: LineMarks = { ranges: [], current: -1 };

const Line = memo(function Line({
  text,
  start,
  marks,
}: {
  text: string;
  start: AnsiStyle;
  marks: LineMarks;
}) {
  const { spans } = parseAnsiLine(text, start);
  return (
    <>
      {markSpans(spans, marks.ranges).map((s, i) =>
        s.match === undefined ? (
          <span key={i} style={styleCss(s.style)}>
            {s.text}
          </span>
        ) : (
          <mark
            key={i}
            className={`output-mark${s.match === marks.current ? ' current' : ''}`}
            style={styleCss(s.style)}
          >
            {s.text}
          </mark>
        ),
      )}
    </>
  );
});

export function OutputView({ url, label, rawUrl }: { url: string; label: string; rawUrl?: string }) {
  const [lines, setLines] = useState<OutputLines | undefined>();
  const [count, setCount] = useState(0);
  const [end, setEnd] = useState<StreamEnd | undefined>();
  const [error, setError] = useState<string | undefined>();
  const scrollRef = useRef<HTMLDivElement>(null);
  const searchRef = useRef<HTMLInputElement>(null);
  const following = useRef(true);
  const searchId = useId();
  const [query, setQuery] = useState('');
  const [current, setCurrent] = useState(0);
  // typing stays responsive on long output: the search runs on the deferred query
  const deferredQuery = useDeferredValue(query);

  useEffect(() => {
    const buffer = new OutputLines();
    setLines(buffer);
    setCount(0);
    setEnd(undefined);
    setError(undefined);
    const events = new EventSource(url);
    // a reconnect replays the stream from its start: skip what was already shown
    let lastSeq = -1;
    let frame = 0;
    // events wait here for the next frame: a finished step's output arrives as a flood of events,
    // and reading them as they come would hold the first lines' paint back until all were read
    const queued: string[] = [];
    const take = (data: string) => {
      const chunk = JSON.parse(data) as OutputChunk;
      if (chunk.seq <= lastSeq) return;
      lastSeq = chunk.seq;
      buffer.append(chunk.message);
    };
    const flush = () => {
      frame = 0;
      for (const data of queued.splice(0)) take(data);
      setCount(buffer.count);
    };
    events.addEventListener('output', (e: MessageEvent<string>) => {
      if (buffer.count === 0 && queued.length === 0) {
        // the first lines are drawn at once
        take(e.data);
        flushSync(flush);
        return;
      }
      queued.push(e.data);
      // many chunks can arrive between two frames: they are read and drawn once per frame
      frame ||= requestAnimationFrame(flush);
    });
    events.addEventListener('end', (e: MessageEvent<string>) => {
      events.close();
      cancelAnimationFrame(frame);
      flush();
      setEnd(JSON.parse(e.data) as StreamEnd);
    });
    events.addEventListener('error', (e: Event) => {
      // the server's own `error` event has data; a dropped connection has none and reconnects by itself
      if (e instanceof MessageEvent && typeof e.data === 'string') {
        events.close();
        setError((JSON.parse(e.data) as { message: string }).message);
      }
    });
    return () => {
      events.close();
      cancelAnimationFrame(frame);
    };
  }, [url]);

  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => LINE_HEIGHT,
    overscan: 12,
    paddingStart: PADDING,
    paddingEnd: PADDING,
  });

  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (el && following.current) el.scrollTop = el.scrollHeight;
  }, [count]);

  // `count` is a dependency on purpose: live output adds lines to the same buffer, and the search
  // goes on from where it stopped
  const search = useRef(new OutputSearch());
  const matches = useMemo(
    () => (lines && deferredQuery ? search.current.matches(lines, deferredQuery) : []),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [lines, deferredQuery, count],
  );
  const byLine = useMemo(() => {
    const m = new Map<number, { first: number; ranges: OutputMatch[] }>();
    matches.forEach((x, i) => {
      const entry = m.get(x.line);
      if (entry) entry.ranges.push(x);
      else m.set(x.line, { first: i, ranges: [x] });
    });
    return m;
  }, [matches]);
  const at = matches.length ? Math.min(current, matches.length - 1) : -1;

  const goTo = (i: number) => {
    if (!matches.length) return;
    const next = (i + matches.length) % matches.length;
    setCurrent(next);
    following.current = false;
    virtualizer.scrollToIndex(matches[next]!.line, { align: 'center' });
  };
  // a new query shows its first match
  useEffect(() => {
    setCurrent(0);
    if (matches.length && deferredQuery) {
      following.current = false;
      virtualizer.scrollToIndex(matches[0]!.line, { align: 'center' });
    }
    // only when the query changes, not when live lines add matches
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [deferredQuery]);

  const onSearchKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      goTo(at + (e.shiftKey ? -1 : 1));
    } else if (e.key === 'Escape' && query) {
      e.preventDefault();
      setQuery('');
    }
  };
  const onOutputKey = (e: KeyboardEvent<HTMLDivElement>) => {
    if (e.key === '/' || ((e.ctrlKey || e.metaKey) && e.key === 'f')) {
      e.preventDefault();
      searchRef.current?.focus();
      searchRef.current?.select();
    }
  };

  const onScroll = () => {
    const el = scrollRef.current;
    if (el) following.current = el.scrollHeight - el.scrollTop - el.clientHeight < LINE_HEIGHT * 2;
  };

  return (
    <div className="output-wrap">
      <div className="output-tools">
        <form role="search" aria-label={`Search ${label}`} onSubmit={(e) => e.preventDefault()}>
          <label htmlFor={searchId} className="sr-only">
            Search {label}
          </label>
          <input
            id={searchId}
            ref={searchRef}
            type="search"
            className="output-search"
            placeholder="Search output"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            onKeyDown={onSearchKey}
            spellCheck={false}
            autoComplete="off"
          />
          <span className="output-count muted small" role="status" aria-live="polite">
            {deferredQuery
              ? matches.length === 0
                ? 'No matches'
                : `${(at + 1).toLocaleString()} of ${matches.length >= MAX_MATCHES ? `${MAX_MATCHES.toLocaleString()}+` : matches.length.toLocaleString()}`
              : ''}
          </span>
          <button
            type="button"
            className="btn btn-secondary btn-small"
            onClick={() => goTo(at - 1)}
            disabled={!matches.length}
            aria-label="Previous match"
            title="Previous match (Shift+Enter)"
          >
            ↑
          </button>
          <button
            type="button"
            className="btn btn-secondary btn-small"
            onClick={() => goTo(at + 1)}
            disabled={!matches.length}
            aria-label="Next match"
            title="Next match (Enter)"
          >
            ↓
          </button>
        </form>
        {rawUrl && (
          <a href={rawUrl} target="_blank" rel="noopener" className="output-raw">
            Raw output
          </a>
        )}
      </div>
      <div
        ref={scrollRef}
        className="output"
        style={{ height: `min(${MAX_HEIGHT_CSS}, ${Math.max(count, 1) * LINE_HEIGHT + 2 * PADDING}px)` }}
        onScroll={onScroll}
        onKeyDown={onOutputKey}
        tabIndex={0}
        role="log"
        aria-live="off"
        aria-label={label}
        data-lines={count}
        data-done={end ? 'true' : 'false'}
        data-matches={matches.length}
      >
        {count === 0 ? (
          <div className="output-empty">{end ? 'No output.' : 'Waiting for output…'}</div>
        ) : (
          <div className="output-inner" style={{ height: virtualizer.getTotalSize() }}>
            {virtualizer.getVirtualItems().map((v) => {
              const line = lines!.line(v.index);
              const found = byLine.get(v.index);
              const marks = found ? { ranges: found.ranges, current: at - found.first } : NO_MARKS;
              return (
                <div key={v.key} className="output-line" style={{ transform: `translateY(${v.start}px)` }}>
                  <span className="output-ln" aria-hidden="true">
                    {v.index + 1}
                  </span>
                  <span className="output-text">
                    <Line text={line.text} start={line.start} marks={marks} />
                  </span>
                </div>
              );
            })}
          </div>
        )}
      </div>
      {lines?.truncated && (
        <p className="hint">
          The browser keeps the first {count.toLocaleString()} lines; the raw output has them all.
        </p>
      )}
      {error && (
        <p className="error-note" role="alert">
          {error}
        </p>
      )}
      {end?.exit_code !== undefined && end.exit_code !== null && end.exit_code !== 0 && (
        <p className="exit-code">Exited with code {end.exit_code}</p>
      )}
    </div>
  );
}
