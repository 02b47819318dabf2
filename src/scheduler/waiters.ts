// In-process fan-out of LISTEN/NOTIFY: one LISTEN per channel per process, and in-memory lists of
// who waits for what (claims waiting for a resource class, followers of a step's output).
import type { Database } from '../storage/index.js';
import type { Logger } from '../ops/index.js';
import { classMatches } from './resource-classes.js';

/** One LISTEN on a channel, subscribed lazily on first use and shared by every handler. */
export class SharedListener {
  private unlisten: Promise<() => Promise<void>> | undefined;
  private readonly handlers = new Set<(payload: string) => void>();

  constructor(
    private readonly db: Database,
    private readonly channel: string,
    private readonly logger: Logger,
  ) {}

  /** Resolves once LISTEN is active, so a NOTIFY sent afterwards is seen. */
  async ready(): Promise<void> {
    this.unlisten ??= this.db.listen(this.channel, (payload) => {
      for (const h of this.handlers) {
        try {
          h(payload);
        } catch (err) {
          this.logger.error({ err, channel: this.channel }, 'notification handler failed');
        }
      }
    });
    try {
      await this.unlisten;
    } catch (err) {
      this.unlisten = undefined; // let the next caller try again
      throw err;
    }
  }

  add(handler: (payload: string) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    const p = this.unlisten;
    this.unlisten = undefined;
    if (p) await (await p)();
  }
}

/**
 * A claim waiting for work. `notified` is set by a matching NOTIFY at any time, also while the
 * claim is busy querying, so a wake-up between "nothing found" and "start waiting" is never lost.
 */
export class ClaimWaiter {
  private notified = false;
  private wake: (() => void) | undefined;

  constructor(readonly patterns: readonly string[]) {}

  matches(cls: string): boolean {
    return this.patterns.some((p) => classMatches(p, cls));
  }

  notify(): void {
    this.notified = true;
    this.wake?.();
  }

  /** Clears the flag before a claim attempt. */
  reset(): void {
    this.notified = false;
  }

  /** true when notified, false when ms passed or the signal aborted. */
  wait(ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.notified) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.wake = undefined;
        resolve(v);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      signal.addEventListener('abort', onAbort, { once: true });
      this.wake = () => done(true);
    });
  }
}

/** The claims waiting in this process, woken by CHANNELS.taskQueued (payload: resource class). */
export class ClaimWaiters {
  private readonly waiters = new Set<ClaimWaiter>();

  constructor(private readonly listener: SharedListener) {
    listener.add((cls) => this.wakeClass(cls));
  }

  ready(): Promise<void> {
    return this.listener.ready();
  }

  add(patterns: readonly string[]): ClaimWaiter {
    const w = new ClaimWaiter(patterns);
    this.waiters.add(w);
    return w;
  }

  remove(w: ClaimWaiter): void {
    this.waiters.delete(w);
  }

  get size(): number {
    return this.waiters.size;
  }

  /** Every matching waiter retries: one wins the task, the others go back to waiting. */
  wakeClass(cls: string): void {
    for (const w of this.waiters) if (w.matches(cls)) w.notify();
  }

  /** Wakes everyone (shutdown): each retries once and returns. */
  wakeAll(): void {
    for (const w of this.waiters) w.notify();
  }
}

/** Followers of steps' output, keyed `${taskId}:${stepIndex}`, fed by CHANNELS.stepOutput. */
export class StepFollowers {
  private readonly byKey = new Map<string, Set<() => void>>();

  constructor(private readonly listener: SharedListener) {
    listener.add((key) => {
      const set = this.byKey.get(key);
      if (set) for (const f of set) f();
    });
  }

  async follow(key: string, onChange: () => void): Promise<() => Promise<void>> {
    await this.listener.ready();
    let set = this.byKey.get(key);
    if (!set) {
      set = new Set();
      this.byKey.set(key, set);
    }
    const handler = () => onChange();
    set.add(handler);
    return async () => {
      set.delete(handler);
      if (set.size === 0 && this.byKey.get(key) === set) this.byKey.delete(key);
    };
  }
}
