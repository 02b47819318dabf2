// Durations, times and commits the way the pages print them.

/** `850ms`, `4.2s`, `1m 03s`, `2h 05m` */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.floor(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** the time from start to stop, or to now while it runs; empty before it starts */
export function elapsed(
  start: string | null | undefined,
  stop: string | null | undefined,
  now: number,
): string {
  if (!start) return '';
  return formatDuration((stop ? Date.parse(stop) : now) - Date.parse(start));
}

/** `just now`, `5 min ago`, `3 h ago`, `2 days ago`, then the date */
export function timeAgo(iso: string, now: number): string {
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  if (s < 7 * 86_400) return `${Math.round(s / 86_400)} days ago`;
  return new Date(iso).toLocaleDateString();
}

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 7) : '';
}

/** from the first workflow's start to the last one's end (or now, while any runs) */
export function pipelineDuration(
  workflows: Array<{ created_at: string; stopped_at: string | null }> | undefined,
  now: number,
): string {
  if (!workflows?.length) return '';
  const start = Math.min(...workflows.map((w) => Date.parse(w.created_at)));
  const stop = workflows.every((w) => w.stopped_at)
    ? Math.max(...workflows.map((w) => Date.parse(w.stopped_at!)))
    : now;
  return formatDuration(stop - start);
}
