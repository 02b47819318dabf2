// The server's periodic sweep of expired dev orb versions (`dev:<label>`, 90 days after their last
// publish). Expired versions stop resolving at once whether swept or not (resolution checks the
// expiry); the sweep only deletes their rows. One at start, then one every interval after the last.
import type { Resources } from '../ops/index.js';
import { Periodic } from '../ops/periodic.js';
import type { OrbRegistry } from './registry.js';

export class DevVersionSweepLoop {
  private readonly loop: Periodic;

  constructor(
    private readonly res: Pick<Resources, 'logger'>,
    private readonly registry: Pick<OrbRegistry, 'sweepExpiredDevVersions'>,
    intervalMs: number,
  ) {
    this.loop = new Periodic(
      () => this.sweep(),
      () => intervalMs,
    );
  }

  start(): void {
    this.loop.start();
  }

  /** Stops the loop; a sweep under way finishes first (before the database closes). */
  stop(): Promise<void> {
    return this.loop.stop();
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
