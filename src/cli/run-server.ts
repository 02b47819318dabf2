// `torus server`: starts the server, prints where it is and the admin token (once), runs the demo
// when asked, and shuts down gracefully on SIGINT/SIGTERM.
import type { Settings } from '../ops/index.js';
import { startServer } from './server.js';
import { runDemoPipeline } from './demo.js';

export async function runServerCommand(settings: Settings, opts: { demo: boolean }): Promise<void> {
  const server = await startServer(settings);
  const out = (line: string) => process.stdout.write(line + '\n');
  out(
    `Torus is serving at ${settings.url} (data: ${settings.databaseUrl ? 'PostgreSQL' : settings.dataDir})`,
  );
  if (server.newAdminToken) {
    out(`Admin API token (shown once, keep it): ${server.newAdminToken}`);
  } else if (settings.adminToken) {
    out('Admin API token: the one in TORUS_ADMIN_TOKEN');
  } else {
    out('Admin API token: the one printed at the first start (or set TORUS_ADMIN_TOKEN)');
  }
  let shuttingDown = false;
  const shutdown = (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    out(`Received ${signal}, shutting down…`);
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('torus: error during shutdown:', err);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));

  if (opts.demo) {
    const ok = await runDemoPipeline(server, out);
    out(
      ok
        ? `Demo pipeline succeeded. Torus keeps serving at ${settings.url}; try:\n` +
            `  curl -H "Circle-Token: $TOKEN" ${settings.url}/api/v2/project/circleci/demo/hello-torus/pipeline`
        : 'Demo pipeline did not succeed; see the job output through the API. Torus keeps serving.',
    );
  }
}
