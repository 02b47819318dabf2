// The server's periodic sweep of expired dev orb versions (`dev:<label>`, 90 days after their last
// publish). Expired versions stop resolving at once whether swept or not (resolution checks the
// expiry); the sweep only deletes their rows. One at start, then one every interval after the last.
import type { Resources } from '../ops/index.js';
import type { OrbRegistry } from './registry.js';

export class DevVersionSweepLoop {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private sweeping: Promise<void> | undefined;

  constructor(
    private readonly res: Pick<Resources, 'logger'>,
    private readonly registry: Pick<OrbRegistry, 'sweepExpiredDevVersions'>,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.arm(0);
  }

  /** Stops the loop; a sweep under way finishes first (before the database closes). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  private arm(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweeping = this.sweep().finally(() => {
        this.sweeping = undefined;
        this.arm(this.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async sweep(): Promise<void> {
    try {
      const removed = await this.registry.sweepExpiredDevVersions();
      if (removed > 0) this.res.logger.info({ removed }, 'deleted expired dev orb versions');
    } catch (err) {
      this.res.logger.error({ err }, 'sweeping expired dev orb versions failed; retrying at the next sweep');
    }
  }
}
