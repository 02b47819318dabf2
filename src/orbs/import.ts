// Importing orbs into the registry, as `torus admin import-orb` does: from an upstream registry
// (CircleCI's public one by default; `upstream.ts` reads it) a namespace, an orb or one version;
// newer versions of every imported orb (`--update`); and, for air-gapped installs, orb sources from
// disk (`--from`) in the layout `exportOrbs` writes (a directory or a .tar.gz, see README.md).
//
// Upstream imports go one orb at a time: an orb's versions are all fetched first, then stored in one
// transaction (importOrbVersions), so a failure leaves every orb whole — the orbs before it
// imported, it and the ones after it not — and the error carries exactly that report. Disk imports
// are one transaction: all or nothing.
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { parse } from 'yaml';
import { isTorusError, TorusError, type ErrorCode } from '../ops/index.js';
import { checkName, parseOrbName, parseOrbVersionRef, parseSemver, parseVersionSelector } from './names.js';
import type { Actor, ImportItem, OrbRegistry } from './registry.js';
import type { UpstreamOrbVersion, UpstreamRegistry, UpstreamVersionEntry } from './upstream.js';

/** What `import-orb` names: a namespace, an orb, or one version (`@1.2.3`, `@1`, `@volatile`). */
export type ImportTarget =
  | { kind: 'namespace'; namespace: string }
  | { kind: 'orb'; namespace: string; orb: string }
  | { kind: 'version'; namespace: string; orb: string; version: string };

/** `ns`, `ns/orb` or `ns/orb@version`; anything else is TORUS_E_BAD_REQUEST. */
export function parseImportTarget(ref: string): ImportTarget {
  const bad = () =>
    new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${JSON.stringify(ref)} is not something to import: expected a namespace (circleci), an orb ` +
        '(circleci/node) or an orb version (circleci/node@5.2.0)',
    );
  if (ref.includes('@')) {
    const r = parseOrbVersionRef(ref);
    if (!r) throw bad();
    const selector = parseVersionSelector(r.version);
    if (!selector) throw bad();
    if (selector.kind === 'dev') {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `${ref}: dev versions are not imported, only published versions (1.2.3)`,
      );
    }
    checkName('namespace', r.namespace);
    checkName('orb', r.orb);
    return { kind: 'version', namespace: r.namespace, orb: r.orb, version: r.version };
  }
  if (ref.includes('/')) {
    const r = parseOrbName(ref);
    if (!r) throw bad();
    checkName('namespace', r.namespace);
    checkName('orb', r.orb);
    return { kind: 'orb', namespace: r.namespace, orb: r.orb };
  }
  if (!ref) throw bad();
  checkName('namespace', ref);
  return { kind: 'namespace', namespace: ref };
}

export function formatImportTarget(t: ImportTarget): string {
  switch (t.kind) {
    case 'namespace':
      return t.namespace;
    case 'orb':
      return `${t.namespace}/${t.orb}`;
    case 'version':
      return `${t.namespace}/${t.orb}@${t.version}`;
    default: {
      const never: never = t;
      return String(never);
    }
  }
}

/** What an import did (also when it failed part way: then `failure` and `notImported` are set). */
export interface OrbImportReport {
  /** the upstream URL, or the path read */
  from: string;
  namespacesCreated: string[];
  orbsCreated: string[];
  /** `ns/orb@X.Y.Z` stored now */
  versionsCreated: string[];
  /** `ns/orb@X.Y.Z` that were here already */
  versionsUnchanged: string[];
  /** orbs looked at (`--update`: every imported orb) */
  orbsChecked: number;
  /** things the user should know that did not stop the import */
  warnings: string[];
  /** the orbs (or, from disk, versions) not imported because of the failure */
  notImported: string[];
  /** why the import stopped; unset when it finished */
  failure?: { code: ErrorCode; message: string; orb?: string };
}

/** An import that stopped: `report` says exactly what was imported before it did. */
export class OrbImportError extends TorusError {
  constructor(
    readonly report: OrbImportReport,
    cause: unknown,
  ) {
    const f = report.failure!;
    super(f.code, f.message);
    this.name = 'OrbImportError';
    this.cause = cause;
  }
}

export interface OrbImportDeps {
  registry: OrbRegistry;
  actor: Actor;
  /** one line per step, for a user watching a long import */
  progress?: (line: string) => void;
}

export interface UpstreamImportDeps extends OrbImportDeps {
  upstream: UpstreamRegistry;
  /** version sources fetched at once (default 4) */
  concurrency?: number;
}

function emptyReport(from: string): OrbImportReport {
  return {
    from,
    namespacesCreated: [],
    orbsCreated: [],
    versionsCreated: [],
    versionsUnchanged: [],
    orbsChecked: 0,
    warnings: [],
    notImported: [],
  };
}

function fail(report: OrbImportReport, err: unknown, orb: string | undefined, notImported: string[]): never {
  report.notImported = notImported;
  report.failure = {
    code: isTorusError(err) ? err.code : 'TORUS_E_UNAVAILABLE',
    message: err instanceof Error ? err.message : String(err),
    ...(orb ? { orb } : {}),
  };
  throw new OrbImportError(report, err);
}

/** One orb to bring in: its upstream versions (semver only), and any sources already in hand. */
interface PlannedOrb {
  name: string;
  versions: UpstreamVersionEntry[];
  known: Map<string, UpstreamOrbVersion>;
}

function semverOnly(versions: UpstreamVersionEntry[]): UpstreamVersionEntry[] {
  return versions.filter((v) => parseSemver(v.version) !== null);
}

function compareSemverDesc(a: string, b: string): number {
  const x = parseSemver(a)!;
  const y = parseSemver(b)!;
  return y.major - x.major || y.minor - x.minor || y.patch - x.patch;
}

function parseDate(raw: string | undefined): Date | undefined {
  if (!raw) return undefined;
  const d = new Date(raw);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Refuses to import into a namespace or orb made here (not imported): they are not the upstream's. */
async function checkImportable(registry: OrbRegistry, namespace: string, orb?: string): Promise<void> {
  const ns = await registry.getNamespace(namespace);
  if (ns && !ns.imported) {
    throw new TorusError(
      'TORUS_E_CONFLICT',
      `namespace ${namespace} exists here and was not imported (it belongs to an organization of this server), ` +
        'so orbs cannot be imported into it',
    );
  }
  if (orb) {
    const o = await registry.getOrb(`${namespace}/${orb}`, 'system');
    if (o && !o.imported) {
      throw new TorusError(
        'TORUS_E_CONFLICT',
        `orb ${namespace}/${orb} exists here and was not imported, so versions cannot be imported into it`,
      );
    }
  }
}

/** Runs `work` over `items`, at most `limit` at once, in order of results; the first failure wins. */
async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await work(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Stores the versions of one orb that are not here yet, fetching their sources first; one
 * transaction. `only`: the versions wanted (default all the planned ones).
 */
async function importPlannedOrb(
  deps: UpstreamImportDeps,
  report: OrbImportReport,
  planned: PlannedOrb,
): Promise<ImportItem[]> {
  const { registry, upstream, actor } = deps;
  const [namespace, orb] = planned.name.split('/') as [string, string];
  await checkImportable(registry, namespace, orb);
  const existing = await registry.getOrb(planned.name, 'system');
  const here = new Set(
    existing ? (await registry.listVersions(planned.name, 'system')).map((v) => v.version) : [],
  );
  const missing = planned.versions.filter((v) => !here.has(v.version));
  for (const v of planned.versions)
    if (here.has(v.version)) report.versionsUnchanged.push(`${planned.name}@${v.version}`);
  if (missing.length === 0 && existing) {
    deps.progress?.(`${planned.name}: nothing new`);
    return [];
  }
  const sources = await mapLimited(missing, deps.concurrency ?? 4, async (v) => {
    const known = planned.known.get(v.version);
    return known ?? (await upstream.fetchOrbVersion(`${planned.name}@${v.version}`));
  });
  const items: ImportItem[] = sources.map((s, i) => {
    // the upstream resolves what it was asked; a different answer is not what the listing named
    if (s.version !== missing[i]!.version || s.name !== planned.name) {
      throw new TorusError(
        'TORUS_E_UNAVAILABLE',
        `${upstream.url} answered ${s.name}@${s.version} when asked for ${planned.name}@${missing[i]!.version}`,
      );
    }
    const createdAt = parseDate(s.createdAt) ?? parseDate(missing[i]!.createdAt);
    return { namespace, orb, version: s.version, source: s.source, ...(createdAt ? { createdAt } : {}) };
  });
  if (items.length === 0) {
    // an orb with no published version upstream: nothing to store (importOrbVersions needs a version)
    report.warnings.push(`${planned.name} has no published version upstream; nothing imported`);
    return [];
  }
  const summary = await registry.importOrbVersions(items, actor);
  report.namespacesCreated.push(...summary.namespacesCreated);
  report.orbsCreated.push(...summary.orbsCreated);
  report.versionsCreated.push(...summary.versionsCreated);
  report.versionsUnchanged.push(...summary.versionsUnchanged);
  deps.progress?.(
    `${planned.name}: imported ${summary.versionsCreated.length} version(s)` +
      (summary.versionsCreated.length > 0
        ? ` (${summary.versionsCreated.map((r) => r.slice(r.indexOf('@') + 1)).join(', ')})`
        : ''),
  );
  return items;
}

/**
 * Warns about the orbs that imported versions use (`orbs: {alias: ns/orb@version}`) which the
 * registry cannot resolve: configs using the imported orb would fail to compile until they are
 * imported too.
 */
async function noteMissingDependencies(
  registry: OrbRegistry,
  report: OrbImportReport,
  stored: ImportItem[],
): Promise<void> {
  const users = new Map<string, string>();
  for (const item of stored) {
    let doc: unknown;
    try {
      doc = parse(item.source, { uniqueKeys: false });
    } catch {
      // the registry stored it, so it parsed there; a parser difference only costs this warning
      continue;
    }
    const orbs = (doc as { orbs?: unknown } | null)?.orbs;
    if (!orbs || typeof orbs !== 'object' || Array.isArray(orbs)) continue;
    for (const ref of Object.values(orbs)) {
      // inline orbs (maps) need nothing
      if (typeof ref === 'string' && parseOrbVersionRef(ref) && !users.has(ref)) {
        users.set(ref, `${item.namespace}/${item.orb}@${item.version}`);
      }
    }
  }
  for (const [ref, user] of [...users].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (await registry.getVersion(ref, 'system')) continue;
    report.warnings.push(
      `${user} uses orb ${ref}, which is not here: import it too (torus admin import-orb ${ref})`,
    );
  }
}

async function importPlan(deps: UpstreamImportDeps, report: OrbImportReport, plan: PlannedOrb[]) {
  const stored: ImportItem[] = [];
  for (let i = 0; i < plan.length; i++) {
    const planned = plan[i]!;
    report.orbsChecked++;
    try {
      stored.push(...(await importPlannedOrb(deps, report, planned)));
    } catch (err) {
      fail(
        report,
        err,
        planned.name,
        plan.slice(i).map((p) => p.name),
      );
    }
  }
  await noteMissingDependencies(deps.registry, report, stored);
}

/**
 * Imports a namespace (every orb, every version), an orb (every version) or one version from the
 * upstream registry. Versions already here are left as they are (and not fetched again).
 */
export async function importFromUpstream(
  deps: UpstreamImportDeps,
  target: ImportTarget,
): Promise<OrbImportReport> {
  const { registry, upstream, actor } = deps;
  const report = emptyReport(upstream.url);
  const what = formatImportTarget(target);
  let plan: PlannedOrb[];
  try {
    await checkImportable(registry, target.namespace, target.kind === 'namespace' ? undefined : target.orb);
    switch (target.kind) {
      case 'version': {
        const v = await upstream.fetchOrbVersion(what);
        if (!parseSemver(v.version)) {
          throw new TorusError(
            'TORUS_E_UNAVAILABLE',
            `${upstream.url} resolved ${what} to ${JSON.stringify(v.version)}, which is not a published version`,
          );
        }
        plan = [
          {
            name: v.name,
            versions: [{ version: v.version, createdAt: v.createdAt }],
            known: new Map([[v.version, v]]),
          },
        ];
        break;
      }
      case 'orb': {
        const o = await upstream.fetchOrb(what);
        if (o.versionsCapped) {
          report.warnings.push(
            `${o.name}: the upstream lists at most 200 versions; older ones, if any, were not imported`,
          );
        }
        plan = [{ name: o.name, versions: semverOnly(o.versions), known: new Map() }];
        break;
      }
      case 'namespace': {
        deps.progress?.(`listing the orbs of ${target.namespace} at ${upstream.url}`);
        const orbs = await upstream.listNamespaceOrbs(target.namespace);
        plan = orbs
          .map((o) => {
            if (o.versionsCapped) {
              report.warnings.push(
                `${o.name}: the upstream lists at most 200 versions; older ones, if any, were not imported`,
              );
            }
            return {
              name: o.name,
              versions: semverOnly(o.versions),
              known: new Map([[o.latest.version, o.latest]]),
            };
          })
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        if (orbs.length === 0) {
          // an empty namespace is still imported, so that its name is held here
          const existed = await registry.getNamespace(target.namespace);
          await registry.importNamespace(target.namespace, actor);
          if (!existed) report.namespacesCreated.push(target.namespace);
          report.warnings.push(`namespace ${target.namespace} has no published orbs upstream`);
        }
        break;
      }
      default: {
        const never: never = target;
        throw new Error(`unknown import target ${JSON.stringify(never)}`);
      }
    }
  } catch (err) {
    fail(report, err, undefined, [what]);
  }
  for (const p of plan) {
    const [ns, orb] = p.name.split('/');
    if (ns !== target.namespace || (target.kind !== 'namespace' && orb !== target.orb)) {
      fail(
        report,
        new TorusError(
          'TORUS_E_UNAVAILABLE',
          `${upstream.url} answered orb ${p.name} when asked for ${what}`,
        ),
        undefined,
        [what],
      );
    }
  }
  await importPlan(deps, report, plan);
  return report;
}

/** Every imported orb here (optionally of one namespace), by name. */
async function importedOrbs(registry: OrbRegistry, namespace?: string): Promise<string[]> {
  const names: string[] = [];
  for (let after: string | null = null; ;) {
    const page = await registry.listOrbs(
      { includeUnlisted: true, first: 100, after, ...(namespace ? { namespace } : {}) },
      'system',
    );
    for (const o of page.items) if (o.imported) names.push(o.fullName);
    if (!page.hasNextPage) break;
    after = page.endCursor;
  }
  return names;
}

/**
 * `import-orb --update`: for every imported orb (or those of one namespace, or one orb), the
 * upstream's versions newer than the newest here. An orb the upstream no longer has is a warning.
 */
export async function updateImportedOrbs(
  deps: UpstreamImportDeps,
  scope: { namespace?: string; orb?: string } = {},
): Promise<OrbImportReport> {
  const { registry, upstream } = deps;
  const report = emptyReport(upstream.url);
  let names: string[];
  try {
    names = scope.orb ? [`${scope.namespace}/${scope.orb}`] : await importedOrbs(registry, scope.namespace);
  } catch (err) {
    fail(report, err, undefined, []);
  }
  const stored: ImportItem[] = [];
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    report.orbsChecked++;
    try {
      const local = await registry.listVersions(name, 'system');
      const newest = local.find((v) => !v.dev)?.version;
      let remote;
      try {
        remote = await upstream.fetchOrb(name);
      } catch (err) {
        if (isTorusError(err) && err.code === 'TORUS_E_NOT_FOUND') {
          report.warnings.push(`${name} is not at ${upstream.url} any more; kept as it is`);
          continue;
        }
        throw err;
      }
      const newer = semverOnly(remote.versions).filter(
        (v) => newest === undefined || compareSemverDesc(v.version, newest) < 0,
      );
      if (newer.length === 0) {
        deps.progress?.(`${name}: up to date${newest ? ` (${newest})` : ''}`);
        continue;
      }
      stored.push(...(await importPlannedOrb(deps, report, { name, versions: newer, known: new Map() })));
    } catch (err) {
      fail(report, err, name, names.slice(i));
    }
  }
  await noteMissingDependencies(registry, report, stored);
  return report;
}

// ---------------------------------------------------------------------------------------------
// Air-gapped: the export layout
//
//   manifest.json                      {format, formatVersion, exportedAt, orbs: [{name, versions:
//                                       [{version, createdAt, file, sha256}]}]}
//   <namespace>/<orb>/<X.Y.Z>.yml       the packed source of each version
//
// as a directory or the same tree in a .tar.gz. The manifest lists every file with its SHA-256;
// without a manifest (a tree assembled by hand) every `<ns>/<orb>/<X.Y.Z>.yml` is read.

export const EXPORT_FORMAT = 'torus-orb-export';
export const EXPORT_FORMAT_VERSION = 1;
const MANIFEST = 'manifest.json';
/** a .tar.gz larger than this once unpacked is refused (4 MiB per source is the registry's limit) */
const MAX_BUNDLE_BYTES = 2 * 1024 * 1024 * 1024;

export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  formatVersion: number;
  exportedAt: string;
  orbs: {
    name: string;
    versions: { version: string; createdAt: string; file: string; sha256: string }[];
  }[];
}

/** the files of an export, by path relative to its root (`/`-separated) */
type Bundle = Map<string, Buffer>;

function isTarball(path: string): boolean {
  return /\.(tar\.gz|tgz)$/i.test(path);
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readTarball(path: string): Promise<Bundle> {
  const files: Bundle = new Map();
  const extract = tarStream.extract();
  let total = 0;
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => {
      total += c.length;
      if (total > MAX_BUNDLE_BYTES) {
        stream.destroy(
          new TorusError('TORUS_E_BAD_REQUEST', `${path} unpacks to more than ${MAX_BUNDLE_BYTES} bytes`),
        );
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => {
      if (header.type === 'file') {
        const name = header.name.replace(/^(\.\/)+/, '');
        files.set(name, Buffer.concat(chunks));
      }
      next();
    });
    stream.on('error', (err) => extract.destroy(err));
    stream.resume();
  });
  try {
    await pipeline(createReadStream(path), createGunzip(), extract);
  } catch (err) {
    if (isTorusError(err)) throw err;
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `cannot read ${path} as a .tar.gz of orbs: ${(err as Error).message}`,
    );
  }
  return files;
}

function readDirectory(root: string): Bundle {
  const files: Bundle = new Map();
  const walk = (dir: string, depth: number) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory() && depth < 2) walk(full, depth + 1);
      else if (entry.isFile() && (depth === 2 || entry.name === MANIFEST)) {
        files.set(relative(root, full).split(sep).join('/'), readFileSync(full));
      }
    }
  };
  walk(root, 0);
  return files;
}

async function readBundle(path: string): Promise<Bundle> {
  if (!existsSync(path)) throw new TorusError('TORUS_E_NOT_FOUND', `${path} does not exist`);
  if (statSync(path).isDirectory()) {
    return readDirectory(path);
  }
  if (!isTarball(path)) {
    throw new TorusError(
      'TORUS_E_BAD_REQUEST',
      `${path} is neither a directory nor a .tar.gz (written by \`torus admin export-orb --out\`)`,
    );
  }
  return readTarball(path);
}

/** The versions an export holds, checked against its manifest (or found by their paths). */
function itemsOfBundle(path: string, files: Bundle): ImportItem[] {
  const bad = (why: string) => new TorusError('TORUS_E_BAD_REQUEST', `${path}: ${why}`);
  const items: ImportItem[] = [];
  const manifestData = files.get(MANIFEST);
  if (manifestData) {
    let manifest: ExportManifest;
    try {
      manifest = JSON.parse(manifestData.toString('utf8')) as ExportManifest;
    } catch (err) {
      throw bad(`${MANIFEST} is not JSON: ${(err as Error).message}`);
    }
    if (manifest?.format !== EXPORT_FORMAT || !Array.isArray(manifest.orbs)) {
      throw bad(`${MANIFEST} is not a torus orb export manifest (format ${EXPORT_FORMAT})`);
    }
    if (manifest.formatVersion !== EXPORT_FORMAT_VERSION) {
      throw bad(
        `${MANIFEST} has format version ${String(manifest.formatVersion)}; this torus reads version ${EXPORT_FORMAT_VERSION}`,
      );
    }
    for (const orb of manifest.orbs) {
      const name = typeof orb?.name === 'string' ? parseOrbName(orb.name) : null;
      if (!name || !Array.isArray(orb.versions))
        throw bad(`${MANIFEST}: ${JSON.stringify(orb?.name)} is not an orb entry`);
      for (const v of orb.versions) {
        if (typeof v?.version !== 'string' || !parseSemver(v.version) || typeof v.file !== 'string') {
          throw bad(`${MANIFEST}: ${orb.name} has a version entry that is not X.Y.Z with a file`);
        }
        const data = files.get(v.file);
        if (!data) throw bad(`${v.file} (${orb.name}@${v.version}, listed in ${MANIFEST}) is missing`);
        if (typeof v.sha256 === 'string' && sha256(data) !== v.sha256) {
          throw bad(
            `${v.file} (${orb.name}@${v.version}) does not match its SHA-256 in ${MANIFEST}: damaged?`,
          );
        }
        const createdAt = parseDate(v.createdAt);
        items.push({
          namespace: name.namespace,
          orb: name.orb,
          version: v.version,
          source: data.toString('utf8'),
          ...(createdAt ? { createdAt } : {}),
        });
      }
    }
    return items;
  }
  for (const [file, data] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const m = /^([^/]+)\/([^/]+)\/([^/]+)\.ya?ml$/.exec(file);
    if (!m) continue;
    if (!parseSemver(m[3]!)) throw bad(`${file}: the file name must be a version, X.Y.Z.yml`);
    items.push({ namespace: m[1]!, orb: m[2]!, version: m[3]!, source: data.toString('utf8') });
  }
  if (items.length === 0) {
    throw bad(`holds no orbs: expected ${MANIFEST} and <namespace>/<orb>/<X.Y.Z>.yml files`);
  }
  return items;
}

function inTarget(item: ImportItem, target: ImportTarget | undefined): boolean {
  if (!target) return true;
  if (item.namespace !== target.namespace) return false;
  if (target.kind === 'namespace') return true;
  if (item.orb !== target.orb) return false;
  if (target.kind === 'orb') return true;
  const sel = parseVersionSelector(target.version);
  if (!sel) return false;
  // partial and volatile selections take the highest matching version (pickSelected)
  return sel.kind === 'exact' ? item.version === target.version : true;
}

/** `@1`, `@1.2` or `@volatile` over the versions at hand: the highest one it selects. */
function pickSelected(items: ImportItem[], target: ImportTarget | undefined): ImportItem[] {
  if (target?.kind !== 'version') return items;
  const sel = parseVersionSelector(target.version);
  if (!sel || sel.kind === 'exact') return items;
  const prefix = sel.kind === 'volatile' ? [] : target.version.split('.').map(Number);
  const matching = items
    .filter((i) => {
      const v = parseSemver(i.version)!;
      return prefix.every((p, k) => [v.major, v.minor, v.patch][k] === p);
    })
    .sort((a, b) => compareSemverDesc(a.version, b.version));
  return matching.slice(0, 1);
}

/**
 * `import-orb --from <dir|.tar.gz> [target]`: the export's versions (those of the target, when
 * given) in one transaction. Versions already here with the same source are left as they are; one
 * here with a different source fails the whole import.
 */
export async function importFromDisk(
  deps: OrbImportDeps,
  path: string,
  target?: ImportTarget,
): Promise<OrbImportReport> {
  const report = emptyReport(path);
  let items: ImportItem[];
  try {
    items = pickSelected(
      itemsOfBundle(path, await readBundle(path)).filter((i) => inTarget(i, target)),
      target,
    );
    if (items.length === 0) {
      throw new TorusError(
        'TORUS_E_NOT_FOUND',
        `${path} holds no version of ${target ? formatImportTarget(target) : 'any orb'}`,
      );
    }
  } catch (err) {
    fail(report, err, undefined, target ? [formatImportTarget(target)] : []);
  }
  const refs = items.map((i) => `${i.namespace}/${i.orb}@${i.version}`);
  const orbs = [...new Set(items.map((i) => `${i.namespace}/${i.orb}`))].sort();
  report.orbsChecked = orbs.length;
  try {
    for (const o of orbs) {
      const [ns, orb] = o.split('/') as [string, string];
      await checkImportable(deps.registry, ns, orb);
    }
    const summary = await deps.registry.importOrbVersions(items, deps.actor);
    report.namespacesCreated = summary.namespacesCreated;
    report.orbsCreated = summary.orbsCreated;
    report.versionsCreated = summary.versionsCreated;
    report.versionsUnchanged = summary.versionsUnchanged;
  } catch (err) {
    // one transaction: nothing of it was stored
    fail(report, err, undefined, refs);
  }
  const created = new Set(report.versionsCreated);
  await noteMissingDependencies(
    deps.registry,
    report,
    items.filter((i) => created.has(`${i.namespace}/${i.orb}@${i.version}`)),
  );
  return report;
}

export interface OrbExportReport {
  out: string;
  orbs: number;
  versions: number;
  /** private orbs are not exported: an import makes every orb public */
  privateOrbsLeftOut: string[];
}

/**
 * `export-orb [ns[/orb]] --out <dir|.tar.gz>`: every public orb (of a namespace, or one orb) with
 * its published versions. A directory must be new or empty; a .tar.gz is written anew.
 */
export async function exportOrbs(
  registry: OrbRegistry,
  out: string,
  scope: { namespace?: string; orb?: string } = {},
): Promise<OrbExportReport> {
  const names: { name: string; private: boolean }[] = [];
  if (scope.orb) {
    const o = await registry.getOrb(`${scope.namespace}/${scope.orb}`, 'system');
    if (!o) throw new TorusError('TORUS_E_NOT_FOUND', `orb ${scope.namespace}/${scope.orb} not found`);
    names.push({ name: o.fullName, private: o.private });
  } else {
    if (scope.namespace && !(await registry.getNamespace(scope.namespace))) {
      throw new TorusError('TORUS_E_NOT_FOUND', `namespace ${scope.namespace} not found`);
    }
    for (let after: string | null = null; ;) {
      const page = await registry.listOrbs(
        {
          includeUnlisted: true,
          first: 100,
          after,
          ...(scope.namespace ? { namespace: scope.namespace } : {}),
        },
        'system',
      );
      for (const o of page.items) names.push({ name: o.fullName, private: o.private });
      if (!page.hasNextPage) break;
      after = page.endCursor;
    }
  }
  const report: OrbExportReport = { out, orbs: 0, versions: 0, privateOrbsLeftOut: [] };
  const manifest: ExportManifest = {
    format: EXPORT_FORMAT,
    formatVersion: EXPORT_FORMAT_VERSION,
    exportedAt: new Date().toISOString(),
    orbs: [],
  };
  const files: Bundle = new Map();
  for (const { name, private: isPrivate } of names) {
    if (isPrivate) {
      report.privateOrbsLeftOut.push(name);
      continue;
    }
    const versions = (await registry.listVersions(name, 'system')).filter((v) => !v.dev);
    if (versions.length === 0) continue;
    const entry: ExportManifest['orbs'][number] = { name, versions: [] };
    for (const info of versions) {
      const v = await registry.getVersion(`${name}@${info.version}`, 'system');
      if (!v) continue; // deleted since the listing (its namespace went): nothing to export
      const file = `${name}/${v.version}.yml`;
      const data = Buffer.from(v.source, 'utf8');
      files.set(file, data);
      entry.versions.push({
        version: v.version,
        createdAt: v.createdAt.toISOString(),
        file,
        sha256: sha256(data),
      });
    }
    manifest.orbs.push(entry);
    report.orbs++;
    report.versions += entry.versions.length;
  }
  files.set(MANIFEST, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8'));
  if (isTarball(out)) await writeTarball(out, files);
  else writeDirectory(out, files);
  return report;
}

function writeDirectory(out: string, files: Bundle): void {
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `${out} is a file; give a directory (new or empty) or a path ending in .tar.gz`,
      );
    }
    if (readdirSync(out).length > 0) {
      throw new TorusError('TORUS_E_CONFLICT', `${out} is not empty; give a new or empty directory`);
    }
  }
  for (const [file, data] of files) {
    const full = join(out, ...file.split('/'));
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, data);
  }
}

async function writeTarball(out: string, files: Bundle): Promise<void> {
  mkdirSync(dirname(out), { recursive: true });
  const pack = tarStream.pack();
  const dirs = new Set<string>();
  const mtime = new Date();
  // manifest first: a reader sees what to expect before the sources
  const order = [...files.keys()].sort((a, b) => (a === MANIFEST ? -1 : b === MANIFEST ? 1 : a < b ? -1 : 1));
  const written = pipeline(pack, createGzip(), createWriteStream(out));
  for (const file of order) {
    const parts = file.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (dirs.has(d)) continue;
      dirs.add(d);
      pack.entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime });
    }
    pack.entry({ name: file, type: 'file', mode: 0o644, mtime }, files.get(file)!);
  }
  pack.finalize();
  await written;
}
