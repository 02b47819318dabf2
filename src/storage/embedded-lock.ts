// What keeps a second process off the embedded database (light: commands import it before storage).
import { TorusError } from '../ops/errors.js';
import type { Settings } from '../ops/settings.js';

/**
 * For a command that opens the configured embedded database itself: refuses (CONFLICT, with `hint`)
 * while a server answers at the configured URL, since PGlite's data directory is one process's and
 * a second opener would corrupt it.
 */
export async function refuseWhileEmbeddedServerRuns(settings: Settings, hint: string): Promise<void> {
  let answered = false;
  try {
    const r = await fetch(`${settings.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
    answered = r.ok;
  } catch {
    // nothing listens there (or it does not answer in time): no running server to collide with
  }
  if (answered) {
    throw new TorusError(
      'TORUS_E_CONFLICT',
      `a Torus server is running at ${settings.url} on the embedded database in ${settings.dataDir}, ` +
        'which only one process may open',
      hint,
    );
  }
}
