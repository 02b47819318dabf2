// The orb registry on the command line. `torus admin import-orb|export-orb` open the configured
// database themselves (as `admin expire` does) and call the import service (orbs/import.ts);
// `torus orb …` and `torus namespace create` talk to a server's `POST /graphql-unstable` with the
// user's token, raw in Authorization, sending the requests the classic `circleci` CLI sends
// (same operations, arguments and selections), so they see what that CLI sees.
import type { Command } from 'commander';
import { parse } from 'yaml';
import { TorusError, isTorusError, type Settings } from '../ops/index.js';
import type {
  ImportTarget,
  OrbExportReport,
  OrbImportReport,
  OrbRegistry,
  UpstreamRegistry,
} from '../orbs/index.js';
import type { Database } from '../storage/index.js';
import { ApiClient } from './client.js';
import { refuseWhileEmbeddedServerRuns } from '../storage/embedded-lock.js';

interface ServerOpts {
  server?: string;
  token?: string;
}

function withServer(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Torus server URL (TORUS_SERVER, default http://127.0.0.1:8080)')
    .option('--token <token>', 'API token (TORUS_TOKEN)');
}

function serverOf(opts: ServerOpts): { server: string; token: string | undefined } {
  return {
    server: (opts.server ?? process.env.TORUS_SERVER ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    token: opts.token ?? process.env.TORUS_TOKEN,
  };
}

const out = (line: string) => process.stdout.write(`${line}\n`);

// ---------------------------------------------------------------------------------------------
// GraphQL client (the classic CLI's transport: POST JSON, raw token, in-band errors)

/** One GraphQL request to the server; transport errors and top-level `errors` throw. */
export async function graphqlRequest<T>(
  opts: ServerOpts,
  query: string,
  variables: Record<string, unknown>,
): Promise<T> {
  const { server, token } = serverOf(opts);
  const url = `${server}/graphql-unstable`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json; charset=utf-8',
        accept: 'application/json; charset=utf-8',
        authorization: token ?? '',
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    const cause = (err as Error).cause;
    throw new TorusError(
      'TORUS_E_UNAVAILABLE',
      `cannot reach the Torus server at ${server}: ${cause instanceof Error ? cause.message : (err as Error).message}; ` +
        'is it running? (set --server or TORUS_SERVER)',
    );
  }
  const text = await res.text();
  let body: { data?: unknown; errors?: { message?: string }[] } | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON (a proxy's page, an old server): reported with its status below
  }
  if (res.status !== 200 || !body || typeof body !== 'object') {
    throw new TorusError(
      res.status === 401 ? 'TORUS_E_UNAUTHORIZED' : 'TORUS_E_UNAVAILABLE',
      `POST ${url}: HTTP ${res.status}: ${(body as { message?: string } | undefined)?.message ?? text.slice(0, 200)}`,
    );
  }
  if (Array.isArray(body.errors) && body.errors.length > 0) {
    const messages = body.errors.map((e) => e?.message ?? JSON.stringify(e)).join('; ');
    const code = /must log in|token/i.test(messages) ? 'TORUS_E_UNAUTHORIZED' : 'TORUS_E_BAD_REQUEST';
    throw new TorusError(
      code,
      messages,
      code === 'TORUS_E_UNAUTHORIZED' ? 'pass a personal API token: --token or TORUS_TOKEN' : undefined,
    );
  }
  return body.data as T;
}

/** A mutation's in-band `errors { message }`: a refusal, with the server's message. */
function refuseOnErrors(
  what: string,
  subject: string,
  errors: { message?: string }[] | null | undefined,
): void {
  if (errors && errors.length > 0) {
    // the server's message often names the subject itself: say it once
    const messages = errors.map((e) => (e.message ?? '').replace(`${subject}: `, ''));
    throw new TorusError('TORUS_E_BAD_REQUEST', `${what} ${subject}: ${messages.join('; ')}`);
  }
}

// The request texts: the classic CLI's operations with its variables and selections.

const LIST_ORBS_QUERY = `query ListOrbs($after: String!, $certifiedOnly: Boolean!) {
  orbs(first: 20, after: $after, certifiedOnly: $certifiedOnly) {
    totalCount
    edges {
      cursor
      node {
        name
        statistics { last30DaysBuildCount last30DaysProjectCount last30DaysOrganizationCount }
        versions(count: 1) { version source }
      }
    }
    pageInfo { hasNextPage }
  }
}`;

const NAMESPACE_ORBS_QUERY = `query namespaceOrbs($namespace: String, $after: String!, $view: OrbListViewType) {
  registryNamespace(name: $namespace) {
    name
    id
    orbs(first: 20, after: $after, view: $view) {
      edges {
        cursor
        node {
          versions(count: 1) { source version }
          name
          statistics { last30DaysBuildCount last30DaysProjectCount last30DaysOrganizationCount }
        }
      }
      totalCount
      pageInfo { hasNextPage }
    }
  }
}`;

const ORB_SOURCE_QUERY = `query($orbVersionRef: String!) {
  orbVersion(orbVersionRef: $orbVersionRef) {
    id
    version
    orb { id }
    source
  }
}`;

const ORB_INFO_QUERY = `query($orbVersionRef: String!) {
  orbVersion(orbVersionRef: $orbVersionRef) {
    id
    version
    orb {
      id
      createdAt
      name
      namespace { name }
      categories { id name }
      statistics { last30DaysBuildCount last30DaysProjectCount last30DaysOrganizationCount }
      versions(count: 200) { createdAt version }
    }
    source
    createdAt
  }
}`;

const PUBLISH_ORB_MUTATION = `mutation($config: String!, $orbName: String, $namespaceName: String, $version: String!) {
  publishOrb(orbName: $orbName, namespaceName: $namespaceName, orbYaml: $config, version: $version) {
    orb { version }
    errors { message }
  }
}`;

const NAMESPACE_ID_QUERY = `query($name: String!) {
  registryNamespace(name: $name) { id }
}`;

const CREATE_ORB_MUTATION = `mutation($name: String!, $registryNamespaceId: UUID!, $isPrivate: Boolean!) {
  createOrb(name: $name, registryNamespaceId: $registryNamespaceId, isPrivate: $isPrivate) {
    orb { id }
    errors { message type }
  }
}`;

const CREATE_NAMESPACE_MUTATION = `mutation($name: String!, $organizationId: UUID!) {
  createNamespace(name: $name, organizationId: $organizationId) {
    namespace { id }
    errors { message type }
  }
}`;

interface OrbNode {
  name: string;
  versions: { version: string; source?: string }[];
}
interface OrbConnection {
  totalCount: number;
  edges: { cursor: string; node: OrbNode }[];
  pageInfo: { hasNextPage: boolean };
}

/** `ns/orb@v` as the CLI takes it: without `@`, the newest (`@volatile`). */
function orbRef(ref: string): string {
  const full = ref.includes('@') ? ref : `${ref}@volatile`;
  if (!/^[^/@\s]+\/[^/@\s]+@\S+$/.test(full)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(ref)} is not an orb reference; expected namespace/orb@version, e.g. circleci/node@5.2.0`,
    );
  }
  return full;
}

function splitOrbName(name: string): { namespace: string; orb: string } {
  const m = /^([^/@\s]+)\/([^/@\s]+)$/.exec(name);
  if (!m) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(name)} is not an orb name; expected namespace/orb, e.g. acme/tools`,
    );
  }
  return { namespace: m[1]!, orb: m[2]! };
}

export async function listOrbs(
  opts: ServerOpts,
  namespace: string | undefined,
  view: 'PUBLIC_ONLY' | 'PRIVATE_ONLY' | undefined,
): Promise<{ name: string; version: string | null }[]> {
  const found: { name: string; version: string | null }[] = [];
  const seen = new Set<string>();
  for (let after = ''; ;) {
    let page: OrbConnection;
    if (namespace) {
      const data = await graphqlRequest<{ registryNamespace: { orbs: OrbConnection } | null }>(
        opts,
        NAMESPACE_ORBS_QUERY,
        { namespace, after, ...(view ? { view } : {}) },
      );
      if (!data.registryNamespace) {
        throw new TorusError('TORUS_E_NOT_FOUND', `namespace ${namespace} does not exist`);
      }
      page = data.registryNamespace.orbs;
    } else {
      // Torus certifies no orbs: list them all (the CLI's --uncertified)
      page = (
        await graphqlRequest<{ orbs: OrbConnection }>(opts, LIST_ORBS_QUERY, { after, certifiedOnly: false })
      ).orbs;
    }
    for (const e of page.edges)
      found.push({ name: e.node.name, version: e.node.versions[0]?.version ?? null });
    const last = page.edges[page.edges.length - 1]?.cursor;
    if (!page.pageInfo.hasNextPage || last === undefined || seen.has(last)) break;
    seen.add(last);
    after = last;
  }
  return found;
}

interface OrbVersionInfoAnswer {
  orbVersion: {
    id: string;
    version: string;
    source: string;
    createdAt: string;
    orb: {
      id: string;
      name: string;
      createdAt: string;
      namespace: { name: string };
      categories: { id: string; name: string }[];
      statistics: Record<string, number>;
      versions: { version: string; createdAt: string }[];
    };
  } | null;
}

export async function orbSource(opts: ServerOpts, ref: string): Promise<string> {
  const full = orbRef(ref);
  const data = await graphqlRequest<{ orbVersion: { id: string; source: string } | null }>(
    opts,
    ORB_SOURCE_QUERY,
    { orbVersionRef: full },
  );
  if (!data.orbVersion || !data.orbVersion.id) {
    throw new TorusError(
      'TORUS_E_NOT_FOUND',
      `no orb ${full} here: check the name and version (torus orb list)`,
    );
  }
  return data.orbVersion.source;
}

/** `orb info`: what the classic CLI prints (latest, dates, revisions, element counts, categories). */
export async function orbInfo(opts: ServerOpts, ref: string): Promise<string[]> {
  const full = orbRef(ref);
  const data = await graphqlRequest<OrbVersionInfoAnswer>(opts, ORB_INFO_QUERY, { orbVersionRef: full });
  const v = data.orbVersion;
  if (!v || !v.id) {
    throw new TorusError(
      'TORUS_E_NOT_FOUND',
      `no orb ${full} here: check the name and version (torus orb list)`,
    );
  }
  const lines: string[] = [];
  const latest = v.orb.versions[0];
  lines.push(`Latest: ${v.orb.name}@${latest?.version ?? v.version}`);
  lines.push(`Last-updated: ${latest?.createdAt ?? v.createdAt}`);
  lines.push(`Created: ${v.orb.createdAt}`);
  lines.push(`Total-revisions: ${v.orb.versions.length}`);
  lines.push('');
  let doc: Record<string, unknown> = {};
  try {
    const parsed: unknown = parse(v.source);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      doc = parsed as Record<string, unknown>;
  } catch {
    // a source the server holds is valid YAML; should it not be, the counts are left at 0
  }
  const count = (key: string) => {
    const section = doc[key];
    return section && typeof section === 'object' ? Object.keys(section).length : 0;
  };
  lines.push(`Total-commands: ${count('commands')}`);
  lines.push(`Total-executors: ${count('executors')}`);
  lines.push(`Total-jobs: ${count('jobs')}`);
  lines.push('');
  lines.push(`Version: ${v.version}`);
  if (v.orb.categories.length > 0)
    lines.push(`Categories: ${v.orb.categories.map((c) => c.name).join(', ')}`);
  lines.push(`Learn more about this orb: torus orb source ${v.orb.name}@${v.version}`);
  return lines;
}

export async function publishOrb(opts: ServerOpts, source: string, ref: string): Promise<string> {
  const m = /^([^/@\s]+)\/([^/@\s]+)@(\d+\.\d+\.\d+|dev:[\w.-]+)$/.exec(ref);
  if (!m) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(ref)} is not something to publish to: expected namespace/orb@X.Y.Z or namespace/orb@dev:<label>`,
    );
  }
  const [, namespaceName, orbName, version] = m as unknown as [string, string, string, string];
  const data = await graphqlRequest<{
    publishOrb: { orb: { version: string } | null; errors: { message: string }[] | null } | null;
  }>(opts, PUBLISH_ORB_MUTATION, { config: source, orbName, namespaceName, version });
  refuseOnErrors('cannot publish', ref, data.publishOrb?.errors);
  if (!data.publishOrb?.orb)
    throw new TorusError('TORUS_E_UNAVAILABLE', `the server published nothing for ${ref}`);
  return data.publishOrb.orb.version;
}

export async function createOrb(opts: ServerOpts, name: string, isPrivate: boolean): Promise<string> {
  const { namespace, orb } = splitOrbName(name);
  const ns = await graphqlRequest<{ registryNamespace: { id: string } | null }>(opts, NAMESPACE_ID_QUERY, {
    name: namespace,
  });
  if (!ns.registryNamespace?.id) {
    throw new TorusError(
      'TORUS_E_NOT_FOUND',
      `namespace ${namespace} does not exist`,
      `create it first: torus namespace create ${namespace} <organization>`,
    );
  }
  const data = await graphqlRequest<{
    createOrb: { orb: { id: string } | null; errors: { message: string }[] | null } | null;
  }>(opts, CREATE_ORB_MUTATION, {
    name: orb,
    registryNamespaceId: ns.registryNamespace.id,
    isPrivate,
  });
  refuseOnErrors('cannot create orb', name, data.createOrb?.errors);
  if (!data.createOrb?.orb) throw new TorusError('TORUS_E_UNAVAILABLE', `the server created no orb ${name}`);
  return data.createOrb.orb.id;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An organization id, or the id of the organization of this name or slug the user belongs to. */
async function organizationId(opts: ServerOpts, org: string): Promise<string> {
  if (UUID.test(org)) return org;
  const { server, token } = serverOf(opts);
  // as the CLI turns --org-slug into an id
  const orgs = await new ApiClient({ server, token }).get<{ id: string; name: string; slug?: string }[]>(
    '/api/v2/me/collaborations',
  );
  const found = orgs.find((o) => o.name === org || o.slug === org);
  if (!found) {
    throw new TorusError(
      'TORUS_E_NOT_FOUND',
      `no organization ${JSON.stringify(org)} among yours (${orgs.map((o) => o.name).join(', ') || 'none'})`,
    );
  }
  return found.id;
}

export async function createNamespace(opts: ServerOpts, name: string, org: string): Promise<string> {
  const organizationId_ = await organizationId(opts, org);
  const data = await graphqlRequest<{
    createNamespace: { namespace: { id: string } | null; errors: { message: string }[] | null } | null;
  }>(opts, CREATE_NAMESPACE_MUTATION, { name, organizationId: organizationId_ });
  refuseOnErrors('cannot create namespace', name, data.createNamespace?.errors);
  if (!data.createNamespace?.namespace) {
    throw new TorusError('TORUS_E_UNAVAILABLE', `the server created no namespace ${name}`);
  }
  return data.createNamespace.namespace.id;
}

// ---------------------------------------------------------------------------------------------
// admin import-orb / export-orb (on the configured database)

export interface AdminOrbCommandOptions {
  settings: Settings;
  print(line: string): void;
  /** given by tests; otherwise opened from the settings and closed at the end */
  db?: Database;
  /** given by tests; otherwise an upstream client through the configured proxy */
  upstream?: UpstreamRegistry;
}

async function withRegistry<T>(
  opts: AdminOrbCommandOptions,
  work: (registry: OrbRegistry) => Promise<T>,
): Promise<T> {
  const { settings } = opts;
  if (!opts.db && !settings.databaseUrl)
    await refuseWhileEmbeddedServerRuns(
      settings,
      'stop it first, or import through it: circleci admin import-orb --host ' + settings.url,
    );
  const { createObjectStore, openDatabase } = await import('../storage/index.js');
  const { createOrbRegistry } = await import('../orbs/index.js');
  const { createLogger, randomIds, systemClock } = await import('../ops/index.js');
  const db =
    opts.db ?? (await openDatabase({ databaseUrl: settings.databaseUrl, dataDir: settings.dataDir }));
  try {
    const registry = createOrbRegistry({
      db,
      store: createObjectStore(settings),
      clock: systemClock,
      ids: randomIds,
      logger: createLogger('silent'),
      settings,
    });
    return await work(registry);
  } finally {
    if (!opts.db) await db.close();
  }
}

/** The lines `import-orb` prints for a report (also a partial one). */
export function formatImportReport(r: OrbImportReport): string[] {
  const lines: string[] = [];
  const versions = (refs: string[]) => (refs.length > 0 ? `: ${refs.join(', ')}` : '');
  lines.push(`Imported from ${r.from}:`);
  lines.push(`  namespaces created: ${r.namespacesCreated.length}${versions(r.namespacesCreated)}`);
  lines.push(`  orbs created: ${r.orbsCreated.length}${versions(r.orbsCreated)}`);
  lines.push(`  versions imported: ${r.versionsCreated.length}${versions(r.versionsCreated)}`);
  lines.push(`  versions already here: ${r.versionsUnchanged.length}`);
  if (r.orbsChecked > 0) lines.push(`  orbs checked: ${r.orbsChecked}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  if (r.failure) {
    lines.push(`FAILED${r.failure.orb ? ` at ${r.failure.orb}` : ''}: ${r.failure.message}`);
    lines.push(
      r.notImported.length > 0
        ? `  not imported: ${r.notImported.join(', ')}`
        : '  not imported: nothing else was to be imported',
    );
    lines.push(
      r.versionsCreated.length + r.namespacesCreated.length + r.orbsCreated.length > 0
        ? '  what is listed above as imported stays imported; run the same command again to continue'
        : '  nothing was changed',
    );
  }
  return lines;
}

export interface ImportOrbCommandOptions extends AdminOrbCommandOptions {
  /** `ns`, `ns/orb` or `ns/orb@version`, imported in turn; optional with --update and --from */
  targets?: string[];
  update?: boolean;
  from?: string;
  upstreamUrl?: string;
  /** sent raw in Authorization to the upstream (a CircleCI Server upstream needs one) */
  upstreamToken?: string;
  /** where HTTP_PROXY / HTTPS_PROXY / NO_PROXY are read (default process.env); settings win */
  env?: NodeJS.ProcessEnv;
}

/**
 * `torus admin import-orb`: imports each target in turn and prints its report. A failure prints what
 * was and was not imported (and the targets not started), then throws the OrbImportError.
 */
export async function importOrbCommand(opts: ImportOrbCommandOptions): Promise<OrbImportReport[]> {
  const orbs = await import('../orbs/index.js');
  const { createProxiedFetch, proxySettingsFromEnv } = await import('../ops/index.js');
  const targets = (opts.targets ?? []).map((t) => orbs.parseImportTarget(t));
  if (opts.from && opts.update) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      '--from and --update do not go together: --update reads the upstream',
    );
  }
  if (!opts.from && !opts.update && targets.length === 0) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      'name what to import (a namespace, ns/orb or ns/orb@version), or give --update or --from <dir|.tar.gz>',
    );
  }
  if (opts.update && targets.some((t) => t.kind === 'version')) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      '--update takes namespaces or orbs (or nothing: every imported orb), not versions',
    );
  }
  const fetch = opts.upstream
    ? undefined
    : createProxiedFetch(proxySettingsFromEnv(opts.env ?? process.env, opts.settings));
  try {
    return await withRegistry(opts, async (registry) => {
      const deps = { registry, actor: 'system' as const, progress: opts.print };
      const upstream = () =>
        opts.upstream ??
        orbs.createUpstreamRegistry({
          url: opts.upstreamUrl ?? opts.settings.orbUpstreamUrl ?? orbs.DEFAULT_UPSTREAM_URL,
          ...(opts.upstreamToken ? { token: opts.upstreamToken } : {}),
          fetch: fetch!,
        });
      // one run per target; `--from` and `--update` without targets are one run over everything
      const runs: (ImportTarget | undefined)[] = targets.length > 0 ? targets : [undefined];
      const reports: OrbImportReport[] = [];
      for (let i = 0; i < runs.length; i++) {
        const target = runs[i];
        try {
          let report: OrbImportReport;
          if (opts.from) report = await orbs.importFromDisk(deps, opts.from, target);
          else if (opts.update) {
            report = await orbs.updateImportedOrbs(
              { ...deps, upstream: upstream() },
              target
                ? { namespace: target.namespace, ...(target.kind === 'orb' ? { orb: target.orb } : {}) }
                : {},
            );
          } else report = await orbs.importFromUpstream({ ...deps, upstream: upstream() }, target!);
          for (const line of formatImportReport(report)) opts.print(line);
          reports.push(report);
        } catch (err) {
          if (err instanceof orbs.OrbImportError) {
            for (const line of formatImportReport(err.report)) opts.print(line);
            const rest = runs.slice(i + 1).filter((t): t is ImportTarget => t !== undefined);
            if (rest.length > 0) opts.print(`  not started: ${rest.map(orbs.formatImportTarget).join(', ')}`);
          }
          throw err;
        }
      }
      return reports;
    });
  } finally {
    await fetch?.close();
  }
}

export interface ExportOrbCommandOptions extends AdminOrbCommandOptions {
  scope?: string;
  out: string;
}

export async function exportOrbCommand(opts: ExportOrbCommandOptions): Promise<OrbExportReport> {
  const { exportOrbs } = await import('../orbs/index.js');
  let scope: { namespace?: string; orb?: string } = {};
  if (opts.scope) {
    const m = /^([a-z][a-z0-9_-]*)(?:\/([a-z][a-z0-9_-]*))?$/i.exec(opts.scope);
    if (!m) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `${JSON.stringify(opts.scope)} is not a namespace or an orb (namespace/orb) to export`,
      );
    }
    scope = { namespace: m[1]!, ...(m[2] ? { orb: m[2] } : {}) };
  }
  return withRegistry(opts, async (registry) => {
    const report = await exportOrbs(registry, opts.out, scope);
    opts.print(`Exported ${report.versions} version(s) of ${report.orbs} orb(s) to ${report.out}`);
    if (report.privateOrbsLeftOut.length > 0) {
      opts.print(
        `  left out ${report.privateOrbsLeftOut.length} private orb(s) (an import makes orbs public): ` +
          report.privateOrbsLeftOut.join(', '),
      );
    }
    return report;
  });
}

// ---------------------------------------------------------------------------------------------

export function registerOrbCommands(program: Command): void {
  const admin = program.commands.find((c) => c.name() === 'admin');
  if (!admin) throw new Error('register the admin commands before the orb commands');
  const loadEnvSettings = async () => (await import('../ops/index.js')).loadSettings(process.env);

  admin
    .command('import-orb [targets...]')
    .description(
      "import orbs from an upstream registry into this server's registry: namespaces, ns/orb or " +
        'ns/orb@version, one after the other (with the embedded database, stop the server first)',
    )
    .option(
      '--update',
      'fetch the versions newer than the newest here of every imported orb (or of the target)',
    )
    .option('--from <path>', 'import from a directory or .tar.gz written by `torus admin export-orb`')
    .option(
      '--upstream <url>',
      'the upstream registry (orb_upstream; default https://circleci.com/graphql-unstable)',
    )
    .option('--upstream-token <token>', 'token for the upstream registry (sent as the circleci CLI does)')
    .action(
      async (
        targets: string[],
        o: { update?: boolean; from?: string; upstream?: string; upstreamToken?: string },
      ) => {
        try {
          await importOrbCommand({
            settings: await loadEnvSettings(),
            print: out,
            targets,
            update: Boolean(o.update),
            ...(o.from ? { from: o.from } : {}),
            ...(o.upstream ? { upstreamUrl: o.upstream } : {}),
            ...(o.upstreamToken ? { upstreamToken: o.upstreamToken } : {}),
          });
        } catch (err) {
          // the report is printed already; the error goes to stderr with exit status 1
          if (isTorusError(err) && err.name === 'OrbImportError') {
            process.stderr.write(`torus: import failed: ${err.message}\n`);
            process.exitCode = 1;
            return;
          }
          throw err;
        }
      },
    );

  admin
    .command('export-orb [scope]')
    .description(
      'write the public orbs (all, a namespace, or ns/orb) with their versions to a directory or .tar.gz, ' +
        'for `import-orb --from` on an air-gapped server',
    )
    .requiredOption('--out <path>', 'a new or empty directory, or a file ending in .tar.gz')
    .action(async (scope: string | undefined, o: { out: string }) => {
      await exportOrbCommand({
        settings: await loadEnvSettings(),
        print: out,
        out: o.out,
        ...(scope ? { scope } : {}),
      });
    });

  const orb = program
    .command('orb')
    .description("orbs in the server's registry (the classic circleci CLI's orb commands)");

  orb
    .command('pack <dir>')
    .description(
      'pack an orb source tree (the folder holding @orb.yml) into one YAML, as `circleci orb pack`',
    )
    .action(async (dir: string) => {
      const { packOrb } = await import('../orbs/index.js');
      process.stdout.write(packOrb(dir));
    });

  withServer(orb.command('list [namespace]'))
    .description('list orbs (all, or those of a namespace) with their newest version')
    .option('--private', 'the private orbs of the namespace (needs a namespace and a token)')
    .action(async (namespace: string | undefined, o: ServerOpts & { private?: boolean }) => {
      if (o.private && !namespace) {
        throw new TorusError('TORUS_E_BAD_REQUEST', 'name the namespace whose private orbs to list');
      }
      const view = namespace ? (o.private ? 'PRIVATE_ONLY' : 'PUBLIC_ONLY') : undefined;
      const orbs = await listOrbs(o, namespace, view);
      if (orbs.length === 0)
        out(`No ${o.private ? 'private ' : ''}orbs found${namespace ? ` in ${namespace}` : ''}.`);
      for (const x of orbs) out(`${x.name} (${x.version ?? 'Not published'})`);
    });

  withServer(orb.command('source <ref>'))
    .description('print the source of ns/orb@version (no @: the newest)')
    .action(async (ref: string, o: ServerOpts) => {
      const source = await orbSource(o, ref);
      process.stdout.write(source.endsWith('\n') ? source : `${source}\n`);
    });

  withServer(orb.command('info <ref>'))
    .description('show the versions and contents of ns/orb@version')
    .action(async (ref: string, o: ServerOpts) => {
      for (const line of await orbInfo(o, ref)) out(line);
    });

  withServer(orb.command('publish <path> <ref>'))
    .description(
      'publish a packed orb (or an orb source folder, packed first) as ns/orb@X.Y.Z or ns/orb@dev:<label>',
    )
    .action(async (path: string, ref: string, o: ServerOpts) => {
      const { readOrbSource } = await import('../orbs/index.js');
      let source: string;
      try {
        source = readOrbSource(path);
      } catch (err) {
        throw new TorusError('TORUS_E_BAD_REQUEST', (err as Error).message);
      }
      const version = await publishOrb(o, source, ref);
      const name = ref.slice(0, ref.indexOf('@'));
      out(`Orb \`${name}@${version}\` was published.`);
      if (version.startsWith('dev:')) {
        out(
          'Note that your dev label expires 90 days after its last publish; it can be overwritten until then.',
        );
      }
    });

  withServer(orb.command('create <name>'))
    .description('create ns/orb in an existing namespace')
    .option('--private', "a private orb: only members of the namespace's organization see it")
    .action(async (name: string, o: ServerOpts & { private?: boolean }) => {
      await createOrb(o, name, Boolean(o.private));
      out(`Orb \`${name}\` created.`);
      out(
        o.private
          ? "It is private: only members of the namespace's organization see it and its versions."
          : 'Please note that any versions you publish of this orb are readable by everyone who can reach this server.',
      );
    });

  const namespace = program.command('namespace').description('orb namespaces');
  withServer(namespace.command('create <name> <organization>'))
    .description('create a namespace owned by an organization (its id, name or slug)')
    .action(async (name: string, org: string, o: ServerOpts) => {
      await createNamespace(o, name, org);
      out(`Namespace \`${name}\` created.`);
      out('Orbs in it are public unless created with `torus orb create --private`.');
    });
}
