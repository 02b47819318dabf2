// A fake of CircleCI's public orb registry (`https://circleci.com/graphql-unstable`) for import tests:
// it answers, with CircleCI's shapes, the queries the `circleci` CLI sends to read orbs
// (`orbVersion`, `orb`, `registryNamespace { orbs(first:, after:) }`, `orbs(first:, after:,
// certifiedOnly:)`), serving the orbs saved in the shared corpus (`corpus/orbs/<ns>/<orb>/<version>/`:
// a `src/` tree packed as `circleci orb pack` does, or a single `orb.yml`; a folder the corpus could
// not number, `10.x-last`, only as the version a reference resolves to, see corpusVersionOf). Versions are sorted by
// semver, newest first, as the CLI expects; ids are stable UUIDs made from names, and createdAt
// times are made up (one day apart, in version order). On demand it answers garbage, fails, hangs
// or drops the connection, for error tests; closing it makes it unreachable.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { buildSchema, graphql, GraphQLError } from 'graphql';
import { CORPUS_DIR, packOrb } from '../../src/config/corpus-orbs.js';

const SDL = /* GraphQL */ `
  scalar UUID

  enum OrbListViewType {
    PUBLIC_ONLY
    PRIVATE_ONLY
    PUBLIC_AND_PRIVATE
  }

  type Query {
    "null when the orb or version does not exist (the CLI reads an empty id as 'not found')"
    orbVersion(orbVersionRef: String!): OrbVersion
    orb(name: String!): Orb
    registryNamespace(name: String): RegistryNamespace
    orbs(first: Int, after: String, certifiedOnly: Boolean): OrbConnection!
  }

  type RegistryNamespace {
    id: UUID!
    name: String!
    orbs(first: Int, after: String, view: OrbListViewType): OrbConnection!
  }

  type OrbConnection {
    edges: [OrbEdge!]!
    pageInfo: PageInfo!
    totalCount: Int!
  }

  type OrbEdge {
    cursor: String!
    node: Orb!
  }

  type PageInfo {
    hasNextPage: Boolean!
  }

  type Orb {
    id: UUID!
    "the full name, namespace/orb"
    name: String!
    createdAt: String!
    isPrivate: Boolean!
    namespace: RegistryNamespace!
    categories: [OrbCategory!]!
    statistics: OrbStatistics!
    "newest first; all of them without count"
    versions(count: Int): [OrbVersion!]!
  }

  type OrbVersion {
    id: UUID!
    version: String!
    source: String!
    createdAt: String!
    orb: Orb!
  }

  type OrbCategory {
    id: UUID!
    name: String!
  }

  type OrbStatistics {
    last30DaysBuildCount: Int!
    last30DaysProjectCount: Int!
    last30DaysOrganizationCount: Int!
  }
`;

const schema = buildSchema(SDL);

/** How the fake answers a request. */
export type FakeUpstreamMode =
  /** a GraphQL answer */
  | 'ok'
  /** HTTP 200 with an HTML page */
  | 'garbage'
  /** HTTP 200 with JSON that is not a GraphQL answer */
  | 'not-graphql'
  /** HTTP 502 with an HTML page */
  | 'http-error'
  /** HTTP 200 with `{data: null, errors: [...]}` */
  | 'graphql-error'
  /** never answers (until the fake is closed) */
  | 'hang'
  /** closes the connection without an answer */
  | 'drop';

export interface FakeUpstreamRequest {
  query: string;
  variables: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  /** the request body exactly as received */
  body: string;
}

export interface FakeOrbUpstreamOptions {
  corpusDir?: string;
  /**
   * The version a saved folder is served as, or null to leave it out. By default (`corpusVersionOf`)
   * plain semver folders (`5.2.0`) are served as they are; a folder the corpus could not put a
   * number on (`10.x-last`) is served when the corpus' REFS.tsv counts it as what a reference
   * resolves to (`ministryofjustice/hmpps@10`), as the lowest version that reference selects above
   * every saved one (`10.0.0`); the rest (`1.x-last`, `commit-869db08`: no reference is satisfied
   * by them) are left out, since a made-up number would make them satisfy references they do not.
   */
  versionOf?: (namespace: string, orb: string, folder: string) => string | null;
  /** the most orbs one page holds, whatever `first` asks (to test pagination with few orbs) */
  pageSizeCap?: number;
  /** the path served (default /graphql-unstable) */
  path?: string;
}

export interface FakeOrbUpstream {
  /** e.g. http://127.0.0.1:41234/graphql-unstable */
  url: string;
  port: number;
  /** how the next requests are answered (default 'ok') */
  mode: FakeUpstreamMode;
  /** per-request override of `mode` (e.g. fail only the source of one version) */
  modeFor?: (request: FakeUpstreamRequest) => FakeUpstreamMode | undefined;
  /** every request received, in order */
  requests: FakeUpstreamRequest[];
  /** the full names of the orbs served, sorted */
  orbNames(): string[];
  /** the versions served for `ns/orb`, newest first */
  versionsOf(name: string): string[];
  /** the source served for `ns/orb@version` */
  sourceOf(name: string, version: string): string | undefined;
  /** serves one more version (a new orb or namespace as needed) */
  addVersion(name: string, version: string, source: string, createdAt?: string): void;
  close(): Promise<void>;
}

const SEMVER = /^(\d+)\.(\d+)\.(\d+)$/;

/**
 * The versions REFS.tsv resolves to non-semver folders: `ns/orb/folder` → the references' version
 * selectors (`10`, `4`), as the corpus counts them (status `saved (version_uncertain)`).
 */
function uncertainFolderRefs(corpusDir: string): Map<string, string[]> {
  const refs = new Map<string, string[]>();
  const file = join(corpusDir, 'orbs', 'REFS.tsv');
  if (!existsSync(file)) return refs;
  for (const line of readFileSync(file, 'utf8').trim().split('\n').slice(1)) {
    const [reference, , , , savedAs, status] = line.split('\t');
    if (!reference || !savedAs || savedAs === '-' || !status?.startsWith('saved')) continue;
    const folder = savedAs.split('/')[2] ?? '';
    if (SEMVER.test(folder)) continue;
    const selector = reference.slice(reference.indexOf('@') + 1);
    if (!/^\d+(\.\d+){0,2}$/.test(selector)) continue;
    refs.set(savedAs, [...(refs.get(savedAs) ?? []), selector]);
  }
  return refs;
}

/** The default `versionOf` over a corpus (see FakeOrbUpstreamOptions.versionOf). */
export function corpusVersionOf(
  corpusDir: string = CORPUS_DIR,
): NonNullable<FakeOrbUpstreamOptions['versionOf']> {
  const uncertain = uncertainFolderRefs(corpusDir);
  return (ns, orb, folder) => {
    if (SEMVER.test(folder)) return folder;
    const selectors = uncertain.get(`${ns}/${orb}/${folder}`);
    if (!selectors || selectors.length === 0) return null;
    // the narrowest reference: `@10.2` over `@10`
    const selector = selectors.sort((a, b) => b.split('.').length - a.split('.').length)[0]!;
    const prefix = selector.split('.').map(Number);
    const siblings = readdirSync(join(corpusDir, 'orbs', ns, orb))
      .filter((f) => SEMVER.test(f))
      .filter((f) => prefix.every((p, i) => Number(f.split('.')[i]) === p))
      .sort(compareSemver);
    const highest = siblings[siblings.length - 1];
    if (highest) {
      const [major, minor, patch] = highest.split('.').map(Number) as [number, number, number];
      return `${major}.${minor}.${patch + 1}`;
    }
    return [...prefix, 0, 0].slice(0, 3).join('.');
  };
}

function compareSemver(a: string, b: string): number {
  const pa = SEMVER.exec(a)!.slice(1).map(Number);
  const pb = SEMVER.exec(b)!.slice(1).map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

/** A stable UUID (v5 layout) from a name, so answers are the same from run to run. */
function uuidOf(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const DAY_MS = 86_400_000;
const EPOCH_MS = Date.UTC(2020, 0, 1);

class FakeNamespace {
  readonly id: string;
  readonly orbsByName = new Map<string, FakeOrb>();
  constructor(
    readonly name: string,
    private readonly registry: Registry,
  ) {
    this.id = uuidOf(`namespace:${name}`);
  }

  orbs(args: { first?: number | null; after?: string | null; view?: string | null }): Connection {
    // the fake holds public orbs only
    const all = args.view === 'PRIVATE_ONLY' ? [] : this.listed();
    return this.registry.page(all, args.first, args.after);
  }

  listed(): FakeOrb[] {
    return [...this.orbsByName.values()]
      .filter((o) => o.all.length > 0)
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}

class FakeOrb {
  readonly id: string;
  readonly isPrivate = false;
  readonly categories: never[] = [];
  readonly statistics = {
    last30DaysBuildCount: 0,
    last30DaysProjectCount: 0,
    last30DaysOrganizationCount: 0,
  };
  /** newest first */
  all: FakeVersion[] = [];
  constructor(
    readonly name: string,
    readonly namespace: FakeNamespace,
  ) {
    this.id = uuidOf(`orb:${name}`);
  }

  get createdAt(): string {
    const first = this.all[this.all.length - 1];
    return new Date((first ? Date.parse(first.createdAt) : EPOCH_MS) - DAY_MS).toISOString();
  }

  versions(args: { count?: number | null }): FakeVersion[] {
    return typeof args.count === 'number' ? this.all.slice(0, Math.max(0, args.count)) : this.all;
  }

  add(version: FakeVersion): void {
    this.all = [...this.all.filter((v) => v.version !== version.version), version].sort((a, b) =>
      compareSemver(b.version, a.version),
    );
  }
}

class FakeVersion {
  readonly id: string;
  private packed: string | undefined;
  constructor(
    readonly orb: FakeOrb,
    readonly version: string,
    readonly createdAt: string,
    private readonly load: () => string,
  ) {
    this.id = uuidOf(`version:${orb.name}@${version}`);
  }

  get source(): string {
    this.packed ??= this.load();
    return this.packed;
  }
}

interface Connection {
  edges: { cursor: string; node: FakeOrb }[];
  pageInfo: { hasNextPage: boolean };
  totalCount: number;
}

class Registry {
  readonly namespaces = new Map<string, FakeNamespace>();
  constructor(private readonly pageSizeCap: number | undefined) {}

  namespace(name: string): FakeNamespace {
    let ns = this.namespaces.get(name);
    if (!ns) {
      ns = new FakeNamespace(name, this);
      this.namespaces.set(name, ns);
    }
    return ns;
  }

  orb(fullName: string): FakeOrb | undefined {
    const [ns, name] = fullName.split('/');
    if (!ns || !name) return undefined;
    const orb = this.namespaces.get(ns)?.orbsByName.get(fullName);
    return orb && orb.all.length > 0 ? orb : undefined;
  }

  orbOrCreate(fullName: string): FakeOrb {
    const [ns, name] = fullName.split('/');
    if (!ns || !name) throw new Error(`not an orb name: ${fullName}`);
    const namespace = this.namespace(ns);
    let orb = namespace.orbsByName.get(fullName);
    if (!orb) {
      orb = new FakeOrb(fullName, namespace);
      namespace.orbsByName.set(fullName, orb);
    }
    return orb;
  }

  /** `ns/orb@volatile`, `@1`, `@1.2` or `@1.2.3`, as CircleCI resolves them */
  resolve(ref: string): FakeVersion | null {
    const m = /^([^/@]+\/[^/@]+)@(.+)$/.exec(ref);
    if (!m) return null;
    const orb = this.orb(m[1]!);
    if (!orb) return null;
    const spec = m[2]!;
    if (spec === 'volatile') return orb.all[0] ?? null;
    if (!/^\d+(\.\d+){0,2}$/.test(spec)) return null;
    const parts = spec.split('.');
    return (
      orb.all.find((v) => {
        const have = v.version.split('.');
        return parts.every((p, i) => Number(p) === Number(have[i]));
      }) ?? null
    );
  }

  page(all: FakeOrb[], first: number | null | undefined, after: string | null | undefined): Connection {
    let start = 0;
    if (after) {
      const name = Buffer.from(after, 'base64url').toString('utf8');
      const i = all.findIndex((o) => o.name === name);
      if (i < 0) throw new GraphQLError(`invalid cursor: ${after}`);
      start = i + 1;
    }
    const size = Math.min(first ?? 20, this.pageSizeCap ?? Infinity);
    const slice = all.slice(start, start + Math.max(0, size));
    return {
      edges: slice.map((node) => ({ cursor: Buffer.from(node.name).toString('base64url'), node })),
      pageInfo: { hasNextPage: start + slice.length < all.length },
      totalCount: all.length,
    };
  }

  allListed(certifiedOnly: boolean): FakeOrb[] {
    return [...this.namespaces.values()]
      .filter((ns) => !certifiedOnly || ns.name === 'circleci')
      .flatMap((ns) => ns.listed())
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}

function loadCorpus(
  registry: Registry,
  corpusDir: string,
  versionOf: NonNullable<FakeOrbUpstreamOptions['versionOf']>,
) {
  const orbsDir = join(corpusDir, 'orbs');
  if (!existsSync(orbsDir)) throw new Error(`no corpus orbs at ${orbsDir}`);
  const dirs = (path: string) => readdirSync(path).filter((n) => statSync(join(path, n)).isDirectory());
  for (const ns of dirs(orbsDir).sort()) {
    for (const orbName of dirs(join(orbsDir, ns)).sort()) {
      const served: { version: string; dir: string }[] = [];
      for (const folder of dirs(join(orbsDir, ns, orbName))) {
        const version = versionOf(ns, orbName, folder);
        if (version !== null) served.push({ version, dir: join(orbsDir, ns, orbName, folder) });
      }
      if (served.length === 0) continue;
      const orb = registry.orbOrCreate(`${ns}/${orbName}`);
      served.sort((a, b) => compareSemver(a.version, b.version));
      served.forEach(({ version, dir }, rank) => {
        const createdAt = new Date(EPOCH_MS + rank * DAY_MS).toISOString();
        const load = () =>
          existsSync(join(dir, 'orb.yml'))
            ? readFileSync(join(dir, 'orb.yml'), 'utf8')
            : packOrb(join(dir, 'src'));
        orb.add(new FakeVersion(orb, version, createdAt, load));
      });
    }
  }
}

const HTML_PAGE = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>oops</body></html>';

/** Starts the fake on a free loopback port. */
export async function startFakeOrbUpstream(opts: FakeOrbUpstreamOptions = {}): Promise<FakeOrbUpstream> {
  const registry = new Registry(opts.pageSizeCap);
  const corpusDir = opts.corpusDir ?? CORPUS_DIR;
  loadCorpus(registry, corpusDir, opts.versionOf ?? corpusVersionOf(corpusDir));
  const path = opts.path ?? '/graphql-unstable';

  const rootValue = {
    orbVersion: ({ orbVersionRef }: { orbVersionRef: string }) => registry.resolve(orbVersionRef),
    orb: ({ name }: { name: string }) => registry.orb(name) ?? null,
    registryNamespace: ({ name }: { name?: string | null }) =>
      (name ? registry.namespaces.get(name) : undefined) ?? null,
    orbs: (args: { first?: number | null; after?: string | null; certifiedOnly?: boolean | null }) =>
      registry.page(registry.allListed(args.certifiedOnly ?? false), args.first, args.after),
  };

  const fake: FakeOrbUpstream = {
    url: '',
    port: 0,
    mode: 'ok',
    requests: [],
    orbNames: () => registry.allListed(false).map((o) => o.name),
    versionsOf: (name) => registry.orb(name)?.all.map((v) => v.version) ?? [],
    sourceOf: (name, version) => registry.orb(name)?.all.find((v) => v.version === version)?.source,
    addVersion: (name, version, source, createdAt) => {
      if (!SEMVER.test(version)) throw new Error(`the fake serves plain semver versions, not ${version}`);
      const orb = registry.orbOrCreate(name);
      orb.add(new FakeVersion(orb, version, createdAt ?? new Date().toISOString(), () => source));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const json = (status: number, body: unknown) =>
        res
          .writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
          .end(JSON.stringify(body));
      if (req.method !== 'POST' || req.url !== path) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found');
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      let parsed: { query?: unknown; variables?: unknown };
      try {
        parsed = JSON.parse(body) as typeof parsed;
      } catch {
        json(400, { errors: [{ message: 'the request body is not JSON' }] });
        return;
      }
      const request: FakeUpstreamRequest = {
        query: typeof parsed.query === 'string' ? parsed.query : '',
        variables:
          parsed.variables && typeof parsed.variables === 'object'
            ? (parsed.variables as Record<string, unknown>)
            : {},
        headers: req.headers,
        body,
      };
      fake.requests.push(request);
      const mode = fake.modeFor?.(request) ?? fake.mode;
      switch (mode) {
        case 'ok':
          graphql({ schema, source: request.query, rootValue, variableValues: request.variables }).then(
            (result) => json(200, result),
            (err: unknown) => json(500, { errors: [{ message: String(err) }] }),
          );
          return;
        case 'garbage':
          res.writeHead(200, { 'content-type': 'text/html' }).end(HTML_PAGE);
          return;
        case 'not-graphql':
          json(200, { status: 'ok', hello: 'world' });
          return;
        case 'http-error':
          res.writeHead(502, { 'content-type': 'text/html' }).end(HTML_PAGE);
          return;
        case 'graphql-error':
          json(200, { data: null, errors: [{ message: 'Something went wrong upstream' }] });
          return;
        case 'hang':
          return;
        case 'drop':
          req.socket.destroy();
          return;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as AddressInfo).port;
  fake.url = `http://127.0.0.1:${fake.port}${path}`;
  return fake;
}
