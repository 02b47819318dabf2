// A step's output, followed live through the server's event stream
// (`/api/v2/project/{slug}/job/{n}/output?step=&index=&follow=true`) and drawn virtualized: only
// the lines on screen exist in the page, so 200,000 lines scroll as smoothly as 20. Lines keep
// their ANSI colours; the view sticks to the bottom while the reader is there.
import { memo, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { parseAnsiLine, styleCss, type AnsiStyle } from './ansi';
import { OutputLines } from './output';

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

const Line = memo(function Line({ text, start }: { text: string; start: AnsiStyle }) {
  const { spans } = parseAnsiLine(text, start);
  return (
    <>
      {spans.map((s, i) => (
        <span key={i} style={styleCss(s.style)}>
          {s.text}
        </span>
      ))}
    </>
  );
});

export function OutputView({ url, label }: { url: string; label: string }) {
  const [lines, setLines] = useState<OutputLines | undefined>();
  const [count, setCount] = useState(0);
  const [end, setEnd] = useState<StreamEnd | undefined>();
  const [error, setError] = useState<string | undefined>();
  const scrollRef = useRef<HTMLDivElement>(null);
  const following = useRef(true);

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
    const flush = () => {
      frame = 0;
      setCount(buffer.count);
    };
    events.addEventListener('output', (e: MessageEvent<string>) => {
      const chunk = JSON.parse(e.data) as OutputChunk;
      if (chunk.seq <= lastSeq) return;
      lastSeq = chunk.seq;
      buffer.append(chunk.message);
      // many chunks can arrive between two frames: draw once per frame
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

  const onScroll = () => {
    const el = scrollRef.current;
    if (el) following.current = el.scrollHeight - el.scrollTop - el.clientHeight < LINE_HEIGHT * 2;
  };

  return (
    <div className="output-wrap">
      <div
        ref={scrollRef}
        className="output"
        style={{ height: `min(${MAX_HEIGHT_CSS}, ${Math.max(count, 1) * LINE_HEIGHT + 2 * PADDING}px)` }}
        onScroll={onScroll}
        tabIndex={0}
        role="log"
        aria-live="off"
        aria-label={label}
        data-lines={count}
        data-done={end ? 'true' : 'false'}
      >
        {count === 0 ? (
          <div className="output-empty">{end ? 'No output.' : 'Waiting for output…'}</div>
        ) : (
          <div className="output-inner" style={{ height: virtualizer.getTotalSize() }}>
            {virtualizer.getVirtualItems().map((v) => {
              const line = lines!.line(v.index);
              return (
                <div key={v.key} className="output-line" style={{ transform: `translateY(${v.start}px)` }}>
                  <span className="output-ln" aria-hidden="true">
                    {v.index + 1}
                  </span>
                  <span className="output-text">
                    <Line text={line.text} start={line.start} />
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
