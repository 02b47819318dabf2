// The `torus` command: server, agent, projects, pipelines, accounts and config tools.
import { Command, Option } from 'commander';
import { hostname } from 'node:os';
import { isTorusError, loadSettings, createLogger } from '../ops/index.js';
import { registerClientCommands } from './commands.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name('torus')
    .description('Torus: a self-hosted CI/CD server that runs CircleCI pipelines')
    .showHelpAfterError();

  program
    .command('server')
    .description('start the Torus server (embedded storage unless TORUS_DATABASE_URL is set)')
    .option('--demo', 'create the demo project, run its pipeline and print its progress')
    .option('--port <port>', 'listen on this port (TORUS_PORT)')
    .option('--host <host>', 'listen on this address (TORUS_HOST)')
    .option('--data-dir <dir>', 'data directory (TORUS_DATA_DIR)')
    .action(async (opts: { demo?: boolean; port?: string; host?: string; dataDir?: string }) => {
      const env = { ...process.env };
      if (opts.port) env.TORUS_PORT = opts.port;
      if (opts.host) env.TORUS_HOST = opts.host;
      if (opts.dataDir) env.TORUS_DATA_DIR = opts.dataDir;
      const { runServerCommand } = await import('./run-server.js');
      await runServerCommand(loadSettings(env), { demo: Boolean(opts.demo) });
    });

  program
    .command('agent')
    .description('run a build agent that claims tasks from a Torus server')
    .requiredOption('--server <url>', 'the server URL', process.env.TORUS_SERVER)
    .option('--token <token>', 'agent token (TORUS_AGENT_TOKEN)', process.env.TORUS_AGENT_TOKEN)
    .option('--resource-class <class...>', 'resource classes to claim from', ['machine:*'])
    .addOption(
      new Option('--sandbox <mode>', 'sandbox for steps').choices(['auto', 'bwrap', 'none']).default('auto'),
    )
    .option('--work-dir <dir>', 'where task directories are made')
    .option('--name <name>', 'agent name', hostname())
    .option('--local', 'started by a server: finish the current task and exit when the server goes away')
    .action(
      async (opts: {
        server: string;
        token?: string;
        resourceClass: string[];
        sandbox: 'auto' | 'bwrap' | 'none';
        workDir?: string;
        name: string;
        local?: boolean;
      }) => {
        if (!opts.token) throw new Error('an agent token is required: --token or TORUS_AGENT_TOKEN');
        const { runAgent } = await import('../agent/index.js');
        const logger = createLogger(process.env.TORUS_LOG_LEVEL ?? 'info');
        const stop = new AbortController();
        const drain = new AbortController();
        const onSignal = () => {
          drain.abort();
          stop.abort();
        };
        process.once('SIGTERM', onSignal);
        process.once('SIGINT', onSignal);
        if (opts.local) {
          // Our server died: take no new work, finish what runs (its lease may still be honoured
          // by a restarted server), then leave. The channel may already be gone (the server died
          // while this process was loading; its 'disconnect' came before we listened): drain at once,
          // or this agent would outlive its server for good.
          if (process.connected) process.once('disconnect', () => drain.abort());
          else {
            logger.warn(
              'started with --local but the server process that started this agent is already gone: exiting',
            );
            drain.abort();
          }
          // and should the channel outlive the server (its end held by another process), being
          // re-parented tells the same story
          const parent = process.ppid;
          const watch = setInterval(() => {
            if (process.ppid === parent) return;
            logger.warn(
              { parent },
              'the server process that started this agent is gone: finishing the current task, then exiting',
            );
            drain.abort();
            clearInterval(watch);
          }, 1_000);
          watch.unref();
          drain.signal.addEventListener('abort', () => clearInterval(watch), { once: true });
        }
        await runAgent({
          serverUrl: opts.server,
          token: opts.token,
          resourceClasses: opts.resourceClass,
          sandbox: opts.sandbox,
          workRoot: opts.workDir,
          name: opts.name,
          signal: stop.signal,
          drain: drain.signal,
          // the server's own agent shares its machine: cache archives go to and from the object
          // store's files, unless the operator says otherwise (TORUS_AGENT_CACHE_FILES=0)
          sameHost: opts.local === true && !/^(0|false|no)$/i.test(process.env.TORUS_AGENT_CACHE_FILES ?? ''),
          logger,
          // an agent that claims docker jobs drives the engine DOCKER_HOST names (or the default socket);
          // its jobs' setup_remote_docker reach that engine only when the operator opts in
          ...(opts.resourceClass.some((c: string) => c === '*' || c.startsWith('docker:'))
            ? {
                docker: /^(1|true|yes)$/i.test(process.env.TORUS_AGENT_REMOTE_DOCKER ?? '')
                  ? { remoteDocker: { socketDir: process.env.TORUS_AGENT_REMOTE_DOCKER_DIR || undefined } }
                  : {},
              }
            : {}),
        });
        process.exit(0);
      },
    );

  registerClientCommands(program);

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (isTorusError(err)) {
      console.error(`torus: ${err.message}${err.hint ? `\n  hint: ${err.hint}` : ''}`);
    } else {
      console.error(`torus: ${(err as Error).message}`);
    }
    process.exit(1);
  }
}
