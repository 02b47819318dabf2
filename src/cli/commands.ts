// CLI commands that talk to a running server over its HTTP API (and the local config tools).
import { chmodSync, existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ApiClient, slugPath } from './client.js';
import { watchPipeline } from './watch.js';
import { registerOrbCommands } from './orb-commands.js';
import { TorusError } from '../ops/errors.js';

interface GlobalOpts {
  server?: string;
  token?: string;
}

const TORUS_BIN = fileURLToPath(new URL('../../bin/torus.js', import.meta.url));

function client(opts: GlobalOpts): ApiClient {
  const server = opts.server ?? process.env.TORUS_SERVER ?? 'http://127.0.0.1:8080';
  const token = opts.token ?? process.env.TORUS_TOKEN;
  return new ApiClient({ server, token });
}

function withServer(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Torus server URL (TORUS_SERVER, default http://127.0.0.1:8080)')
    .option('--token <token>', 'API token (TORUS_TOKEN)');
}

function print(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** `-p key=value` pairs, with numbers and booleans typed as CircleCI's API types them. */
export function parseParameters(
  pairs: string[] = [],
  json?: string,
): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  if (json) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (err) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `--parameters is not valid JSON: ${(err as Error).message}`,
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        '--parameters must be a JSON object, e.g. \'{"deploy": true}\'',
      );
    }
    Object.assign(out, parsed);
  }
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw new TorusError('TORUS_E_BAD_REQUEST', `parameter ${JSON.stringify(pair)} is not key=value`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    out[key] = raw === 'true' ? true : raw === 'false' ? false : /^-?\d+$/.test(raw) ? Number(raw) : raw;
  }
  return out;
}

interface ProjectResponse {
  slug: string;
  name: string;
  id: string;
  vcs_info?: { vcs_url?: string; default_branch?: string };
}

interface PipelineResponse {
  id: string;
  number: number;
  state: string;
  created_at: string;
  vcs?: { branch?: string; tag?: string; revision?: string };
}

export function registerClientCommands(program: Command): void {
  const project = program.command('project').description('manage projects');

  withServer(project.command('add <vcs-url>'))
    .description('add a git repository (file://, path, http(s)://, ssh://) as a project')
    .option('--org <org>', 'organization name (created on first use)', 'local')
    .option('--name <name>', 'project name (default: the repository name)')
    .option('--default-branch <branch>', 'default branch', 'main')
    .action(async (url: string, opts: GlobalOpts & { org: string; name?: string; defaultBranch: string }) => {
      const vcsUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `file://${resolve(url)}`;
      const name = opts.name ?? basename(vcsUrl.replace(/\/+$/, '')).replace(/\.git$/, '');
      const p = await client(opts).post<ProjectResponse>(
        `/api/v2/organization/${encodeURIComponent(opts.org)}/project`,
        {
          name,
          vcs_url: vcsUrl,
          default_branch: opts.defaultBranch,
        },
      );
      process.stdout.write(`${p.slug}\n`);
    });

  withServer(project.command('list'))
    .description('list projects')
    .action(async (opts: GlobalOpts) => {
      const res = await client(opts).get<{ items: ProjectResponse[] }>('/api/v2/torus/projects');
      for (const p of res.items) process.stdout.write(`${p.slug}\t${p.vcs_info?.vcs_url ?? ''}\n`);
    });

  const hook = project.command('hook').description('git hooks that trigger pipelines');
  withServer(hook.command('install <repo-path>'))
    .description(
      'install post-commit and post-receive hooks that trigger a pipeline for the committed/pushed branch',
    )
    .requiredOption('--project <slug>', 'project slug, e.g. circleci/local/my-repo')
    .action((repoPath: string, opts: GlobalOpts & { project: string }) => {
      installHooks(
        repoPath,
        opts.project,
        opts.server ?? process.env.TORUS_SERVER ?? 'http://127.0.0.1:8080',
        opts.token ?? process.env.TORUS_TOKEN,
      );
    });

  const pipeline = program.command('pipeline').description('trigger and follow pipelines');
  withServer(pipeline.command('trigger'))
    .description('trigger a pipeline')
    .requiredOption('--project <slug>', 'project slug')
    .option('--branch <branch>', 'branch (default: the project default branch)')
    .option('--tag <tag>', 'tag')
    .option('-p, --param <key=value...>', 'pipeline parameter')
    .option('--parameters <json>', 'pipeline parameters as a JSON object')
    .option('--watch', 'follow the pipeline until it finishes')
    .action(
      async (
        opts: GlobalOpts & {
          project: string;
          branch?: string;
          tag?: string;
          param?: string[];
          parameters?: string;
          watch?: boolean;
        },
      ) => {
        const body: Record<string, unknown> = {};
        if (opts.branch) body.branch = opts.branch;
        if (opts.tag) body.tag = opts.tag;
        const parameters = parseParameters(opts.param, opts.parameters);
        if (Object.keys(parameters).length > 0) body.parameters = parameters;
        const c = client(opts);
        const p = await c.post<PipelineResponse>(`/api/v2/project/${slugPath(opts.project)}/pipeline`, body);
        process.stdout.write(`pipeline #${p.number} ${p.id} ${p.state}\n`);
        if (opts.watch)
          process.exitCode = (await watchPipeline(c, p.id, (l) => process.stdout.write(l + '\n'))) ? 0 : 1;
      },
    );

  withServer(pipeline.command('list'))
    .description("list a project's pipelines, newest first")
    .requiredOption('--project <slug>', 'project slug')
    .option('--branch <branch>', 'only this branch')
    .action(async (opts: GlobalOpts & { project: string; branch?: string }) => {
      const q = opts.branch ? `?branch=${encodeURIComponent(opts.branch)}` : '';
      const res = await client(opts).get<{ items: PipelineResponse[] }>(
        `/api/v2/project/${slugPath(opts.project)}/pipeline${q}`,
      );
      for (const p of res.items) {
        const ref = p.vcs?.tag ? `tag ${p.vcs.tag}` : `branch ${p.vcs?.branch ?? ''}`;
        process.stdout.write(`#${p.number}\t${p.state}\t${ref}\t${p.created_at}\t${p.id}\n`);
      }
    });

  withServer(pipeline.command('watch <pipeline-id>'))
    .description('follow a pipeline live: job states and the output of running steps')
    .action(async (id: string, opts: GlobalOpts) => {
      process.exitCode = (await watchPipeline(client(opts), id, (l) => process.stdout.write(l + '\n')))
        ? 0
        : 1;
    });

  registerAdminCommands(program);
  registerConfigCommands(program);
  registerOrbCommands(program);
}

function registerAdminCommands(program: Command): void {
  const admin = program.command('admin').description('users, tokens and organizations (admin token needed)');
  const user = admin.command('user').description('users');
  withServer(user.command('list'))
    .description('list users')
    .action(async (opts: GlobalOpts) => print(await client(opts).get('/api/v2/torus/users')));
  withServer(user.command('create <login>'))
    .description('create a user (and print a first API token for them)')
    .option('--name <name>', 'display name')
    .option('--admin', 'make the user an admin')
    .action(async (login: string, opts: GlobalOpts & { name?: string; admin?: boolean }) =>
      print(
        await client(opts).post('/api/v2/torus/users', {
          login,
          name: opts.name ?? login,
          role: opts.admin ? 'admin' : 'member',
        }),
      ),
    );
  withServer(user.command('suspend <login>'))
    .description('suspend a user (their tokens stop working)')
    .action(async (login: string, opts: GlobalOpts) =>
      print(await client(opts).post(`/api/v2/torus/users/${encodeURIComponent(login)}/suspend`, {})),
    );
  withServer(user.command('unsuspend <login>'))
    .description('lift a suspension')
    .action(async (login: string, opts: GlobalOpts) =>
      print(await client(opts).post(`/api/v2/torus/users/${encodeURIComponent(login)}/unsuspend`, {})),
    );

  const token = admin.command('token').description('personal API tokens');
  withServer(token.command('create'))
    .description('create an API token (for yourself, or --user as admin)')
    .option('--user <login>', 'owner (admins only)')
    .option('--label <label>', 'label', 'cli')
    .action(async (opts: GlobalOpts & { user?: string; label: string }) =>
      print(
        await client(opts).post(`/api/v2/torus/users/${encodeURIComponent(opts.user ?? 'me')}/tokens`, {
          label: opts.label,
        }),
      ),
    );
  withServer(token.command('list'))
    .description('list API tokens')
    .option('--user <login>', 'owner (admins only)')
    .action(async (opts: GlobalOpts & { user?: string }) =>
      print(await client(opts).get(`/api/v2/torus/users/${encodeURIComponent(opts.user ?? 'me')}/tokens`)),
    );
  withServer(token.command('revoke <token-id>'))
    .description('revoke an API token')
    .option('--user <login>', 'owner (admins only)')
    .action(async (id: string, opts: GlobalOpts & { user?: string }) =>
      print(
        await client(opts).request(
          'DELETE',
          `/api/v2/torus/users/${encodeURIComponent(opts.user ?? 'me')}/tokens/${encodeURIComponent(id)}`,
        ),
      ),
    );

  const org = admin.command('org').description('organizations and members');
  withServer(org.command('list'))
    .description('list organizations')
    .action(async (opts: GlobalOpts) => print(await client(opts).get('/api/v2/torus/orgs')));
  withServer(org.command('create <name>'))
    .description('create an organization')
    .action(async (name: string, opts: GlobalOpts) =>
      print(await client(opts).post('/api/v2/torus/orgs', { name })),
    );
  withServer(org.command('add-member <org> <login>'))
    .description('add a user to an organization')
    .option('--admin', 'as an organization admin')
    .action(async (name: string, login: string, opts: GlobalOpts & { admin?: boolean }) =>
      print(
        await client(opts).post(`/api/v2/torus/orgs/${encodeURIComponent(name)}/members`, {
          login,
          role: opts.admin ? 'admin' : 'member',
        }),
      ),
    );
  withServer(org.command('remove-member <org> <login>'))
    .description('remove a user from an organization')
    .action(async (name: string, login: string, opts: GlobalOpts) =>
      print(
        await client(opts).request(
          'DELETE',
          `/api/v2/torus/orgs/${encodeURIComponent(name)}/members/${encodeURIComponent(login)}`,
        ),
      ),
    );
  withServer(org.command('members <org>'))
    .description('list the members of an organization')
    .action(async (name: string, opts: GlobalOpts) =>
      print(await client(opts).get(`/api/v2/torus/orgs/${encodeURIComponent(name)}/members`)),
    );

  admin
    .command('rotate-key')
    .description(
      'add a new secrets key and re-encrypt every stored secret under it (stop the embedded server first)',
    )
    .option('--reencrypt-only', 're-encrypt under the current active key without adding one')
    .option('--print-keyring', 'with TORUS_KEYRING: print a keyring value with a new active key')
    .action(async (opts: { reencryptOnly?: boolean; printKeyring?: boolean }) => {
      const { loadSettings } = await import('../ops/index.js');
      const { rotateKeyCommand } = await import('../secrets/index.js');
      await rotateKeyCommand({
        settings: loadSettings(process.env),
        reencryptOnly: Boolean(opts.reencryptOnly),
        printKeyring: Boolean(opts.printKeyring),
        print: (line) => console.log(line),
      });
    });
  admin
    .command('expire')
    .description(
      'remove artifacts, test results, caches and workspace layers past their retention now ' +
        '(servers also do it every hour; with the embedded database, stop the server first)',
    )
    .option('--dry-run', 'count what would be removed, remove nothing')
    .action(async (opts: { dryRun?: boolean }) => {
      const { loadSettings } = await import('../ops/index.js');
      const { expireCommand } = await import('../blobs/index.js');
      const report = await expireCommand({
        settings: loadSettings(process.env),
        dryRun: Boolean(opts.dryRun),
        print: (line) => console.log(line),
      });
      // objects that could not be deleted are orphans now: a script running this should notice
      if (Object.values(report.kinds).some((k) => k.objectErrors > 0)) process.exitCode = 1;
    });
  withServer(admin.command('agent-token <resource-class>'))
    .description("create an agent token for a resource class (e.g. 'myns/runner' or 'machine:*')")
    .option('--name <name>', 'label', 'agent')
    .action(async (resourceClass: string, opts: GlobalOpts & { name: string }) =>
      print(
        await client(opts).post('/api/v2/torus/agent-tokens', {
          resource_class: resourceClass,
          name: opts.name,
        }),
      ),
    );
}

function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('validate and process .circleci/config.yml locally');
  config
    .command('validate [file]')
    .description('check a config; exits non-zero with the errors when it is invalid')
    .option('--pipeline-parameters <json>', 'pipeline parameters as a JSON object')
    .action(async (file: string | undefined, opts: { pipelineParameters?: string }) => {
      const ok = await compileFile(file, opts.pipelineParameters, () => undefined);
      if (ok) process.stdout.write(`Config file at ${file ?? '.circleci/config.yml'} is valid.\n`);
    });
  config
    .command('process [file]')
    .description('print the processed configuration (2.0 shape), as `circleci config process` does')
    .option('--pipeline-parameters <json>', 'pipeline parameters as a JSON object')
    .action(async (file: string | undefined, opts: { pipelineParameters?: string }) => {
      await compileFile(file, opts.pipelineParameters, (yaml) => process.stdout.write(yaml));
    });
}

async function compileFile(
  file: string | undefined,
  params: string | undefined,
  onOk: (yaml: string) => void,
): Promise<boolean> {
  const path = file ?? '.circleci/config.yml';
  if (!existsSync(path)) throw new TorusError('TORUS_E_NOT_FOUND', `${path}: no such file`);
  const { compileConfig } = await import('../config/index.js');
  const result = await compileConfig(readFileSync(path, 'utf8'), {
    filename: path,
    pipelineParameters: parseParameters([], params),
  });
  if (!result.ok) {
    for (const e of result.errors)
      process.stderr.write(`Error: ${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}\n`);
    process.exitCode = 1;
    return false;
  }
  onOk(result.processedYaml);
  return true;
}

/** Writes post-commit (working repositories) and post-receive (bare repositories) hooks. */
export function installHooks(
  repoPath: string,
  slug: string,
  server: string,
  token: string | undefined,
): void {
  const repo = resolve(repoPath);
  let gitDir: string;
  try {
    gitDir = resolve(
      repo,
      execFileSync('git', ['rev-parse', '--git-dir'], { cwd: repo, encoding: 'utf8' }).trim(),
    );
  } catch {
    throw new TorusError('TORUS_E_BAD_REQUEST', `${repo} is not a git repository`);
  }
  const hooksDir = join(gitDir, 'hooks');
  mkdirSync(hooksDir, { recursive: true });
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const env = `TORUS_SERVER=${q(server)}${token ? ` TORUS_TOKEN=${q(token)}` : ''}`;
  const trigger = `${env} ${q(process.execPath)} ${q(TORUS_BIN)} pipeline trigger --project ${q(slug)}`;
  const postCommit = `#!/bin/sh
# Installed by \`torus project hook install\`: triggers a Torus pipeline for the committed branch.
branch=$(git symbolic-ref --quiet --short HEAD) || exit 0
${trigger} --branch "$branch" || echo "torus: could not trigger a pipeline" >&2
`;
  const postReceive = `#!/bin/sh
# Installed by \`torus project hook install\`: triggers a Torus pipeline for each pushed branch or tag.
while read old new ref; do
  [ "$new" = "0000000000000000000000000000000000000000" ] && continue
  case "$ref" in
    refs/heads/*) ${trigger} --branch "\${ref#refs/heads/}" || echo "torus: could not trigger a pipeline" >&2 ;;
    refs/tags/*) ${trigger} --tag "\${ref#refs/tags/}" || echo "torus: could not trigger a pipeline" >&2 ;;
  esac
done
`;
  for (const [name, body] of [
    ['post-commit', postCommit],
    ['post-receive', postReceive],
  ] as const) {
    const p = join(hooksDir, name);
    writeFileSync(p, body);
    // The hook may hold a token: readable by its owner only.
    chmodSync(p, 0o700);
    process.stdout.write(`installed ${p}\n`);
  }
}
