// Work a server repeats for as long as it runs (sweeps, schedule ticks): once at start, then again
// an interval after each run ends; never two runs at once; stopping waits for the run under way.

export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private current: Promise<void> | undefined;
  private abort = new AbortController();

  /**
   * `run` handles its own errors (a rejection is ignored: the next run comes anyway); its signal
   * aborts when the loop stops. `intervalMs` is read after each run.
   */
  constructor(
    private readonly run: (signal: AbortSignal) => Promise<void>,
    private readonly intervalMs: () => number,
  ) {}

  get started(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.arm(0);
  }

  /** Stops the loop: no more runs; the one under way is told (its signal) and awaited. */
  async stop(): Promise<void> {
    this.running = false;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.current;
  }

  private arm(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.current = this.run(this.abort.signal)
        .catch(() => undefined)
        .finally(() => {
          this.current = undefined;
          this.arm(this.intervalMs());
        });
    }, delayMs);
    this.timer.unref();
  }
}
