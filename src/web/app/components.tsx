// Small pieces every page uses: status icons and badges, breadcrumbs, action buttons that show
// their progress and error, a form's submission state, a ticking clock for live durations, a
// query's loading/error/empty/data states, and tabs.
import { useEffect, useState, type KeyboardEvent, type ReactNode } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Link } from 'wouter';
import { ApiError } from './api';
import { sessionLost } from './session';
import { statusLabel, toneOf, type Tone } from './status';

const ICON_PATHS: Record<Tone, ReactNode> = {
  success: (
    <path
      d="M4.5 8.2l2.3 2.3 4.7-4.9"
      fill="none"
      strokeWidth="1.8"
      strokeLinecap="round"
      strokeLinejoin="round"
    />
  ),
  failed: <path d="M5.2 5.2l5.6 5.6M10.8 5.2l-5.6 5.6" fill="none" strokeWidth="1.8" strokeLinecap="round" />,
  running: <path d="M8 3.2a4.8 4.8 0 1 1-4.8 4.8" fill="none" strokeWidth="1.8" strokeLinecap="round" />,
  hold: <path d="M6.2 5v6M9.8 5v6" fill="none" strokeWidth="1.8" strokeLinecap="round" />,
  waiting: (
    <path d="M8 4.6V8l2.2 1.6" fill="none" strokeWidth="1.6" strokeLinecap="round" strokeLinejoin="round" />
  ),
  canceled: <path d="M4.8 11.2l6.4-6.4" fill="none" strokeWidth="1.8" strokeLinecap="round" />,
  neutral: <circle cx="8" cy="8" r="1.6" />,
};

/** a round icon in the status' colour; decorative (the label next to it says the status) */
export function StatusIcon({ status, size = 16 }: { status: string; size?: number }) {
  const tone = toneOf(status);
  return (
    <svg
      className={`status-icon tone-${tone}`}
      width={size}
      height={size}
      viewBox="0 0 16 16"
      aria-hidden="true"
      focusable="false"
    >
      {tone !== 'running' && <circle className="status-icon-ring" cx="8" cy="8" r="7.2" />}
      <g className="status-icon-mark">{ICON_PATHS[tone]}</g>
    </svg>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge tone-${toneOf(status)}`} data-status={status}>
      <StatusIcon status={status} size={14} />
      {statusLabel(status)}
    </span>
  );
}

export interface Crumb {
  label: ReactNode;
  href?: string;
}

export function Breadcrumbs({ items }: { items: Crumb[] }) {
  return (
    <nav className="breadcrumbs" aria-label="Breadcrumb">
      <ol>
        {items.map((c, i) => (
          <li key={i}>
            {c.href && i < items.length - 1 ? (
              <Link href={c.href}>{c.label}</Link>
            ) : (
              <span aria-current={i === items.length - 1 ? 'page' : undefined}>{c.label}</span>
            )}
          </li>
        ))}
      </ol>
    </nav>
  );
}

/** the current time, renewed every `ms` while `live` (for durations of running things) */
export function useNow(live: boolean, ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!live) return;
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [live, ms]);
  return now;
}

/** A button for an action on the server: disabled while it runs, its error shown beside it. */
export function ActionButton({
  label,
  busyLabel,
  run,
  variant = 'secondary',
  ariaLabel,
}: {
  label: string;
  busyLabel?: string;
  run: () => Promise<unknown>;
  variant?: 'primary' | 'secondary' | 'danger';
  ariaLabel?: string;
}) {
  const client = useQueryClient();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const onClick = () => {
    setBusy(true);
    setError(undefined);
    run()
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401) sessionLost(client);
        setError(messageOf(err));
      })
      .finally(() => setBusy(false));
  };
  return (
    <span className="action">
      <button
        type="button"
        className={`btn btn-${variant}`}
        onClick={onClick}
        disabled={busy}
        aria-label={ariaLabel}
      >
        {busy ? (busyLabel ?? label) : label}
      </button>
      {error && (
        <span className="action-error" role="alert">
          {error}
        </span>
      )}
    </span>
  );
}

/** what an error says to the reader */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A form's submission: `submit(send)` marks it busy and clears the last error; a failure (thrown
 * or rejected) keeps its message and ends the busy state. After a success the form is idle again,
 * unless `leavesPage` (sign-in, trigger): then it stays busy while the app moves on.
 */
export function useSubmit({ leavesPage = false }: { leavesPage?: boolean } = {}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const fail = (err: unknown) => {
    setError(messageOf(err));
    setBusy(false);
  };
  const submit = (send: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    let sent: Promise<unknown>;
    try {
      sent = send();
    } catch (err) {
      // a check before sending (the trigger's parameters): shown at once, nothing was sent
      fail(err);
      return;
    }
    sent.then(() => {
      if (!leavesPage) setBusy(false);
    }, fail);
  };
  return { busy, error, submit };
}

/** a form's error, announced when it appears */
export function FormError({ error }: { error: string | undefined }) {
  if (!error) return null;
  return (
    <p className="error-note" role="alert">
      {error}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" role="status">
      <span className="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function ErrorNote({ error }: { error: unknown }) {
  return (
    <p className="error-note" role="alert">
      {messageOf(error)}
    </p>
  );
}

/** what a page needs of a query (TanStack Query's result has it) */
export interface QueryState<T> {
  isPending: boolean;
  isError: boolean;
  error: unknown;
  data: T | undefined;
}

/**
 * A query's states: loading (`Loading {what}…`), its error, `empty` when `isEmpty` (by default:
 * an empty list), else `children` with the data.
 */
export function QueryView<T>({
  query,
  what,
  empty,
  isEmpty = (data) => Array.isArray(data) && data.length === 0,
  children,
}: {
  query: QueryState<T>;
  what: string;
  empty?: ReactNode;
  isEmpty?: (data: T) => boolean;
  children: (data: T) => ReactNode;
}) {
  if (query.isError) return <ErrorNote error={query.error} />;
  if (query.isPending || query.data === undefined) return <Loading what={what} />;
  if (empty !== undefined && isEmpty(query.data)) return empty;
  return children(query.data);
}

/** A page whose own query has no answer yet: loading, or its error under the page's breadcrumbs. */
export function PageUnready({
  query,
  what,
  crumbs,
}: {
  query: QueryState<unknown>;
  what: string;
  crumbs: Crumb[];
}) {
  if (!query.isError) return <Loading what={what} />;
  return (
    <>
      <Breadcrumbs items={crumbs} />
      <ErrorNote error={query.error} />
    </>
  );
}

/** a card saying there is nothing yet, and how to make some */
export function EmptyCard({ title, children }: { title: ReactNode; children: ReactNode }) {
  return (
    <div className="card empty">
      <h2>{title}</h2>
      <p>{children}</p>
    </div>
  );
}

/** the brand mark (a torus seen from above) */
export function Logo() {
  return (
    <svg className="logo" width="22" height="22" viewBox="0 0 32 32" aria-hidden="true" focusable="false">
      <circle cx="16" cy="16" r="12" fill="none" stroke="currentColor" strokeWidth="5" />
      <circle cx="16" cy="16" r="4.5" fill="currentColor" opacity="0.35" />
    </svg>
  );
}

export interface TabItem<K extends string> {
  key: K;
  label: ReactNode;
}

/**
 * A row of tabs (WAI-ARIA tabs: arrow keys, Home and End move between them, the panel follows
 * the selection) and the chosen tab's panel, `children`, with the id `tabpanel-{key}`.
 */
export function Tabs<K extends string>({
  label,
  tabs,
  selected,
  onSelect,
  children,
}: {
  label: string;
  tabs: Array<TabItem<K>>;
  selected: K;
  onSelect: (key: K) => void;
  children: ReactNode;
}) {
  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    // from the tab that has the focus (a click can focus one before the selection follows)
    const focused = tabs.findIndex((t) => `tab-${t.key}` === (e.target as HTMLElement).id);
    const i = focused >= 0 ? focused : tabs.findIndex((t) => t.key === selected);
    const to =
      e.key === 'ArrowRight'
        ? (i + 1) % tabs.length
        : e.key === 'ArrowLeft'
          ? (i - 1 + tabs.length) % tabs.length
          : e.key === 'Home'
            ? 0
            : e.key === 'End'
              ? tabs.length - 1
              : -1;
    if (to < 0) return;
    e.preventDefault();
    onSelect(tabs[to]!.key);
    document.getElementById(`tab-${tabs[to]!.key}`)?.focus();
  };
  return (
    <>
      <div className="tabs" role="tablist" aria-label={label} onKeyDown={onKeyDown}>
        {tabs.map((t) => (
          <button
            key={t.key}
            id={`tab-${t.key}`}
            type="button"
            role="tab"
            className="tab"
            aria-selected={t.key === selected}
            aria-controls={`tabpanel-${t.key}`}
            tabIndex={t.key === selected ? 0 : -1}
            onClick={() => onSelect(t.key)}
          >
            {t.label}
          </button>
        ))}
      </div>
      <div
        id={`tabpanel-${selected}`}
        role="tabpanel"
        aria-labelledby={`tab-${selected}`}
        className="tabpanel"
      >
        {children}
      </div>
    </>
  );
}
