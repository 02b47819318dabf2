// Remote Docker for docker-executor jobs (`setup_remote_docker`): a per-task proxy of the Docker
// Engine API on a Unix socket that only the task's primary container sees. It forwards to the
// agent's engine, but stamps every container, network, volume and image build the job makes with
// the task's labels (so the task's dispose removes them whatever happened), shows the job only the
// containers, networks and volumes it made, and refuses what would leave the sandbox: bind mounts
// of host paths, privileged containers, host namespaces, devices, capabilities, daemon-side fetches
// of URLs. CircleCI's remote engine cannot see the job's files either; its containers are sized by
// the job's resource class, and so are these. Bodies stream both ways (build contexts, logs,
// attach, exec); only the small JSON bodies that must be checked are read whole.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { chmod, unlink } from 'node:fs/promises';
import type Docker from 'dockerode';
import type { Logger } from '../../ops/index.js';

/** set, with the task label, on everything the job makes through the proxy */
export const REMOTE_DOCKER_LABEL = 'io.torus.remote-docker';
const MAX_JSON_BODY_BYTES = 4 << 20;
const DENIED = "Torus's remote Docker does not allow";

export interface RemoteDockerProxyOptions {
  /** the agent's engine (a Unix socket path) */
  engineSocket: string;
  /** stamped on every container, network, volume and build; the job sees only objects carrying all of them */
  labels: Record<string, string>;
  /**
   * also stamped, but neither filtered on nor required: labels many jobs share (the agent process's,
   * for the orphan sweep). podman ORs a list's label filters where Docker ANDs them, so a shared
   * label among `labels` would show the job other jobs' volumes.
   */
  stamp?: Record<string, string>;
  /** the job's resource class: every container (and classic build) the job starts is capped to it */
  limits?: { cpus: number; memoryBytes: number };
  logger?: Logger;
}

/** a request the proxy answers itself with Docker's error shape */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const deny = (what: string, why = ''): Refusal =>
  new Refusal(403, `${DENIED} ${what}${why ? `: ${why}` : ''}`);

type Json = Record<string, unknown>;

/** what to send to the engine once a request passed the checks */
interface Plan {
  /** path and query for the engine (the version prefix kept) */
  path: string;
  /** a rewritten body; absent: the client's body streams through */
  body?: Buffer;
  /** answered here, not by the engine */
  answer?: { status: number; json: unknown };
  /** sees the engine's response as it streams by */
  scan?: (chunk: Buffer) => void;
  /** after a 2xx answer */
  done?: () => void;
}

export class RemoteDockerProxy {
  private server?: http.Server;
  private readonly sockets = new Set<Duplex>();
  /** image names the job tagged (tag, build -t, commit, import, load): untagged on dispose */
  readonly tags = new Set<string>();
  private readonly labelFilters: string[];
  /** what the job's objects get: `stamp` and `labels` */
  private readonly stamp: Record<string, string>;

  constructor(private readonly opts: RemoteDockerProxyOptions) {
    this.labelFilters = Object.entries(opts.labels).map(([k, v]) => `${k}=${v}`);
    this.stamp = { ...opts.stamp, ...opts.labels };
  }

  async listen(socketPath: string): Promise<void> {
    await unlink(socketPath).catch(() => undefined); // a stale socket from a crashed run: listen would fail on it
    // no request timeout: a build context or an attach may take as long as the job does
    const server = http.createServer({ requestTimeout: 0 }, (req, res) => void this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.onUpgrade(req, socket, head);
    });
    server.on('connection', (s: net.Socket) => this.track(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    // the job's user is whoever the image says; the socket is only in this task's container
    await chmod(socketPath, 0o666);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private track(s: Duplex): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  private owns(labels: unknown): boolean {
    const l = (labels ?? {}) as Record<string, string>;
    return Object.entries(this.opts.labels).every(([k, v]) => l[k] === v);
  }

  // ---- the engine, for the checks ----

  private call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = http.request(
        {
          socketPath: this.opts.engineSocket,
          method,
          path,
          headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown = text;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON (a plain-text error): kept as text
            }
            resolve({ status: res.statusCode ?? 500, json });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  private async requireContainer(ref: string): Promise<string> {
    const r = await this.call('GET', `/containers/${encodeURIComponent(ref)}/json`);
    const info = r.json as { Id?: string; Config?: { Labels?: unknown } } | undefined;
    if (r.status !== 200 || !this.owns(info?.Config?.Labels)) {
      throw new Refusal(404, `No such container: ${ref}`);
    }
    return info?.Id ?? ref;
  }

  private async requireNetwork(ref: string): Promise<void> {
    const r = await this.call('GET', `/networks/${encodeURIComponent(ref)}`);
    if (r.status !== 200 || !this.owns((r.json as { Labels?: unknown } | undefined)?.Labels)) {
      throw new Refusal(404, `network ${ref} not found`);
    }
  }

  private async requireVolume(name: string): Promise<void> {
    const r = await this.call('GET', `/volumes/${encodeURIComponent(name)}`);
    if (r.status !== 200 || !this.owns((r.json as { Labels?: unknown } | undefined)?.Labels)) {
      throw new Refusal(404, `get ${name}: no such volume`);
    }
  }

  private async requireExec(id: string): Promise<void> {
    const r = await this.call('GET', `/exec/${encodeURIComponent(id)}/json`);
    const container = (r.json as { ContainerID?: string } | undefined)?.ContainerID;
    if (r.status !== 200 || !container) throw new Refusal(404, `No such exec instance: ${id}`);
    await this.requireContainer(container).catch(() => {
      throw new Refusal(404, `No such exec instance: ${id}`);
    });
  }

  /** a named volume the job mounts: its own, or made now with its labels (the engine would make it unlabelled) */
  private async ensureVolume(name: string): Promise<void> {
    const r = await this.call('GET', `/volumes/${encodeURIComponent(name)}`);
    if (r.status === 200) {
      if (!this.owns((r.json as { Labels?: unknown } | undefined)?.Labels)) {
        throw deny(
          `volume ${name}`,
          'it belongs to another job or to the agent; give the volume another name',
        );
      }
      return;
    }
    const made = await this.call('POST', '/volumes/create', { Name: name, Labels: this.stamp });
    if (made.status >= 300) throw new Refusal(made.status, engineMessage(made.json));
  }

  // ---- requests ----

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let plan: Plan;
    try {
      plan = await this.check(req, false);
    } catch (err) {
      answerError(res, err, this.opts.logger);
      req.resume();
      return;
    }
    if (plan.answer) {
      sendJson(res, plan.answer.status, plan.answer.json);
      req.resume();
      return;
    }
    this.forward(req, res, plan);
  }

  private forward(req: IncomingMessage, res: ServerResponse, plan: Plan): void {
    const headers = { ...req.headers };
    delete headers.connection;
    delete headers['keep-alive'];
    if (plan.body) {
      delete headers['transfer-encoding'];
      headers['content-length'] = String(plan.body.length);
    }
    const up = http.request({
      socketPath: this.opts.engineSocket,
      method: req.method,
      path: plan.path,
      headers,
      agent: false,
    });
    up.on('response', (ur) => {
      const h = { ...ur.headers };
      delete h.connection;
      delete h['keep-alive'];
      res.writeHead(ur.statusCode ?? 502, h);
      // a long poll (wait, events) or a follow gets its headers now, not with its first byte
      res.flushHeaders();
      if (plan.scan) ur.on('data', plan.scan);
      if (plan.done && (ur.statusCode ?? 500) < 300) ur.once('end', plan.done);
      ur.on('error', () => res.destroy());
      ur.pipe(res);
    });
    up.on('error', (err) => {
      if (!res.headersSent) {
        sendJson(res, 502, {
          message: `Torus's remote Docker cannot reach the agent's Docker engine: ${err.message}`,
        });
      } else res.destroy();
    });
    // the client went away (Ctrl-C on `docker logs -f`): so does the engine request
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    if (plan.body) {
      up.end(plan.body);
      req.resume();
    } else req.pipe(up);
  }

  /** attach, exec start, BuildKit's session and gRPC: checked, then spliced to the engine byte for byte */
  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.track(socket);
    let plan: Plan;
    try {
      plan = await this.check(req, true);
      if (plan.answer || plan.body) throw new Refusal(400, `${req.method} ${req.url} cannot be upgraded`);
    } catch (err) {
      const { status, message } = errorOf(err, this.opts.logger);
      const body = JSON.stringify({ message });
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    const up = net.connect(this.opts.engineSocket);
    this.track(up);
    const end = () => {
      up.destroy();
      socket.destroy();
    };
    up.on('error', end);
    socket.on('error', end);
    up.on('close', end);
    socket.on('close', end);
    up.once('connect', () => {
      const lines = [`${req.method} ${plan.path} HTTP/${req.httpVersion}`];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      up.write(lines.join('\r\n') + '\r\n\r\n');
      if (head.length) up.write(head);
      // half-closes pass on: stdin's end reaches the container while its output still flows back
      up.pipe(socket);
      socket.pipe(up);
    });
  }

  /** the checks and rewrites of one request; throws a Refusal */
  private async check(req: IncomingMessage, upgrade: boolean): Promise<Plan> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://docker');
    const m = /^(\/v\d+(?:\.\d+)?)?(\/.*)$/.exec(url.pathname);
    const prefix = m?.[1] ?? '';
    const p = m?.[2] ?? url.pathname;
    const q = url.searchParams;
    const path = () => {
      const query = q.toString();
      return `${prefix}${p}${query ? `?${query}` : ''}`;
    };
    const pass = (extra: Partial<Plan> = {}): Plan => ({ path: path(), ...extra });
    const seg = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new Refusal(400, `invalid path segment: ${s}`);
      }
    };
    const json = async () => readJson(req);
    let r: RegExpExecArray | null;

    if (upgrade) {
      // only these hijack the connection; everything else is refused rather than spliced unchecked
      if ((r = /^\/containers\/([^/]+)\/attach(\/ws)?$/.exec(p))) {
        await this.requireContainer(seg(r[1]!));
        return pass();
      }
      if ((r = /^\/exec\/([^/]+)\/start$/.exec(p))) {
        await this.requireExec(seg(r[1]!));
        return pass();
      }
      // BuildKit (docker buildx, DOCKER_BUILDKIT=1): the build session and the builder's gRPC API
      if (p === '/session' || p === '/grpc') return pass();
      throw deny(`${method} ${p} with a connection upgrade`);
    }

    // the engine, read-only, and what is shared by design (the image store is the agent's cache)
    if (/^\/(_ping|version|info|system\/df)$/.test(p)) return pass();
    if (method === 'POST' && p === '/auth') return pass();
    if (/^\/distribution\/.+\/json$/.test(p)) return pass();

    if (
      p === '/events' ||
      (method === 'GET' && (p === '/containers/json' || p === '/networks' || p === '/volumes'))
    ) {
      this.addLabelFilters(q);
      return pass();
    }
    if (method === 'POST' && /^\/(containers|networks|volumes|images)\/prune$/.test(p)) {
      // a prune sees only this job's objects, never other jobs' or the agent's
      this.addLabelFilters(q);
      return pass();
    }

    // ---- containers ----
    if (method === 'POST' && p === '/containers/create') {
      const body = (await json()) ?? {};
      await this.checkContainer(body);
      return pass({ body: Buffer.from(JSON.stringify(body)) });
    }
    if ((r = /^\/containers\/([^/]+)(\/.*)?$/.exec(p))) {
      await this.requireContainer(seg(r[1]!));
      const sub = r[2] ?? '';
      if (method === 'DELETE' && sub === '') {
        // anonymous volumes go with their container: nothing unlabelled outlives the job
        q.set('v', '1');
        return pass();
      }
      if (method === 'POST' && sub === '/update') {
        const body = (await json()) ?? {};
        this.clampResources(body);
        return pass({ body: Buffer.from(JSON.stringify(body)) });
      }
      if (method === 'POST' && sub === '/exec') {
        const body = (await json()) ?? {};
        if (body.Privileged)
          throw deny('privileged exec', 'the job cannot have more than a container of its own');
        return pass({ body: Buffer.from(JSON.stringify(body)) });
      }
      return pass();
    }
    if ((r = /^\/exec\/([^/]+)\/(start|resize|json)$/.exec(p))) {
      await this.requireExec(seg(r[1]!));
      return pass();
    }
    if (method === 'POST' && p === '/commit') {
      await this.requireContainer(q.get('container') ?? '');
      return pass({ done: () => this.recordTag(q.get('repo'), q.get('tag')) });
    }

    // ---- images: shared with the agent's other jobs, so removal is limited to the job's own ----
    if (method === 'GET' && (p === '/images/json' || p === '/images/search' || p === '/images/get'))
      return pass();
    if (method === 'POST' && p === '/images/create') {
      const src = q.get('fromSrc');
      if (src && src !== '-') {
        throw deny(
          'the engine to download images from URLs',
          'download the archive in a step and pipe it to `docker import -`',
        );
      }
      return pass({ done: () => (src ? this.recordTag(q.get('repo'), q.get('tag')) : undefined) });
    }
    if (method === 'POST' && p === '/images/load') {
      let carry = '';
      return pass({
        scan: (chunk) => {
          const text = carry + chunk.toString('utf8');
          const lines = text.split('\n');
          carry = lines.pop() ?? '';
          for (const line of lines) {
            const loaded = /Loaded image: ([^\s"\\]+)/.exec(line);
            if (loaded) this.recordTag(loaded[1]!, null);
          }
        },
      });
    }
    if ((r = /^\/images\/(.+)\/(json|history|get|push)$/.exec(p))) return pass();
    if (method === 'POST' && (r = /^\/images\/(.+)\/tag$/.exec(p))) {
      return pass({ done: () => this.recordTag(q.get('repo'), q.get('tag')) });
    }
    if (method === 'DELETE' && (r = /^\/images\/(.+)$/.exec(p))) {
      const name = seg(r[1]!);
      if (!this.tags.has(imageRef(name, null))) {
        const info = await this.call('GET', `/images/${encodeURIComponent(name)}/json`);
        if (info.status === 404) throw new Refusal(404, `No such image: ${name}`);
        const labels = (info.json as { Config?: { Labels?: unknown } } | undefined)?.Config?.Labels;
        if (!this.owns(labels)) {
          throw deny(
            `removing image ${name}`,
            "the job did not build or tag it, and the agent's image store is shared with its other jobs",
          );
        }
      }
      return pass();
    }

    // ---- builds ----
    if (method === 'POST' && p === '/build') {
      const remote = q.get('remote');
      if (remote && remote !== 'client-session') {
        throw deny(
          'the engine to fetch build contexts from URLs',
          "clone or download in a step and build from the job's directory",
        );
      }
      if (q.get('networkmode') === 'host') throw deny('builds on the host network');
      if (q.get('cgroupparent')) throw deny('builds in another cgroup');
      const labels = { ...(parseJson(q.get('labels')) as Json | undefined), ...this.stamp };
      q.set('labels', JSON.stringify(labels));
      if (this.opts.limits) {
        const max = this.opts.limits.memoryBytes;
        const mem = Number(q.get('memory')) || 0;
        const memory = mem > 0 && mem < max ? mem : max;
        q.set('memory', String(memory));
        q.set('memswap', String(memory));
      }
      const tags = q.getAll('t');
      return pass({ done: () => tags.forEach((t) => this.recordTag(t, null)) });
    }
    if (method === 'POST' && p === '/build/cancel') return pass();
    if (method === 'POST' && p === '/build/prune') {
      // the build cache is the agent's, shared by every job (Docker layer caching): it stays
      return pass({ answer: { status: 200, json: { CachesDeleted: [], SpaceReclaimed: 0 } } });
    }

    // ---- networks ----
    if (method === 'POST' && p === '/networks/create') {
      const body = (await json()) ?? {};
      checkNetwork(body);
      body.Labels = { ...((body.Labels as Json | undefined) ?? {}), ...this.stamp };
      return pass({ body: Buffer.from(JSON.stringify(body)) });
    }
    if ((r = /^\/networks\/([^/]+)(\/connect|\/disconnect)?$/.exec(p))) {
      await this.requireNetwork(seg(r[1]!));
      if (r[2]) {
        const body = (await json()) ?? {};
        await this.requireContainer(String(body.Container ?? ''));
        return pass({ body: Buffer.from(JSON.stringify(body)) });
      }
      return pass();
    }

    // ---- volumes ----
    if (method === 'POST' && p === '/volumes/create') {
      const body = (await json()) ?? {};
      checkVolume(body);
      const name = typeof body.Name === 'string' ? body.Name : '';
      if (name) {
        const existing = await this.call('GET', `/volumes/${encodeURIComponent(name)}`);
        if (existing.status === 200 && !this.owns((existing.json as { Labels?: unknown }).Labels)) {
          throw deny(
            `volume ${name}`,
            'it belongs to another job or to the agent; give the volume another name',
          );
        }
      }
      body.Labels = { ...((body.Labels as Json | undefined) ?? {}), ...this.stamp };
      return pass({ body: Buffer.from(JSON.stringify(body)) });
    }
    if ((r = /^\/volumes\/([^/]+)$/.exec(p))) {
      await this.requireVolume(seg(r[1]!));
      return pass();
    }

    throw deny(
      `${method} ${p}`,
      'it is not part of what a job needs (containers, images, builds, networks, volumes)',
    );
  }

  private recordTag(repo: string | null, tag: string | null): void {
    if (repo) this.tags.add(imageRef(repo, tag));
  }

  private addLabelFilters(q: URLSearchParams): void {
    const filters = (parseJson(q.get('filters')) ?? {}) as Record<string, unknown>;
    const label = filters.label;
    // both of Docker's filter shapes: {"label": ["a=b"]} and the older {"label": {"a=b": true}}
    const list = Array.isArray(label)
      ? (label as string[])
      : label && typeof label === 'object'
        ? Object.keys(label).filter((k) => (label as Record<string, unknown>)[k])
        : [];
    filters.label = [...list, ...this.labelFilters];
    q.set('filters', JSON.stringify(filters));
  }

  /** refuses what leaves the sandbox, makes named volumes the job's own, labels and sizes the container */
  private async checkContainer(body: Json): Promise<void> {
    if (!body.HostConfig || typeof body.HostConfig !== 'object') body.HostConfig = {};
    const hc = body.HostConfig as Json;
    const refs = { containers: new Set<string>(), networks: new Set<string>(), volumes: new Set<string>() };
    const files =
      "the engine cannot see the job's files (as on CircleCI): copy them in with `docker cp` or a build context, or use a volume";

    for (const bind of (hc.Binds as string[] | null | undefined) ?? []) {
      const source = bind.split(':')[0] ?? '';
      if (source.startsWith('/') || source.startsWith('.') || source.startsWith('~')) {
        throw deny(`bind mounts of host paths (${source})`, files);
      }
      refs.volumes.add(source);
    }
    for (const mount of (hc.Mounts as Json[] | null | undefined) ?? []) {
      const type = String(mount.Type ?? 'volume');
      if (type === 'bind') throw deny(`bind mounts of host paths (${String(mount.Source)})`, files);
      if (type === 'volume') {
        const driver = (mount.VolumeOptions as Json | undefined)?.DriverConfig as Json | undefined;
        if (
          driver &&
          ((driver.Name && driver.Name !== 'local') || Object.keys((driver.Options as Json) ?? {}).length)
        ) {
          throw deny('volume driver options', 'they can mount host paths');
        }
        if (mount.Source) refs.volumes.add(String(mount.Source));
      } else if (type !== 'tmpfs') {
        throw deny(`${type} mounts`);
      }
    }
    if (hc.Privileged)
      throw deny('privileged containers', 'the job cannot have more than a container of its own');
    if ((hc.CapAdd as unknown[] | null | undefined)?.length) throw deny('added capabilities (--cap-add)');
    if ((hc.Devices as unknown[] | null | undefined)?.length) throw deny('host devices (--device)');
    if ((hc.DeviceRequests as unknown[] | null | undefined)?.length) throw deny('host devices (--gpus)');
    if ((hc.DeviceCgroupRules as unknown[] | null | undefined)?.length) throw deny('device cgroup rules');
    for (const opt of (hc.SecurityOpt as string[] | null | undefined) ?? []) {
      if (!/^no-new-privileges/.test(opt)) throw deny(`security options (${opt})`);
    }
    if (hc.MaskedPaths || hc.ReadonlyPaths) throw deny('unmasking system paths');
    if (hc.CgroupParent) throw deny('containers in another cgroup (--cgroup-parent)');
    if (hc.VolumeDriver) throw deny('volume drivers');
    if (hc.Runtime && hc.Runtime !== 'runc') throw deny(`the ${String(hc.Runtime)} runtime`);
    if (typeof hc.OomScoreAdj === 'number' && hc.OomScoreAdj < 0)
      throw deny('a negative OOM score adjustment');
    const log = (hc.LogConfig as Json | undefined)?.Type;
    if (log && !['json-file', 'local', 'none'].includes(String(log))) {
      throw deny(`the ${String(log)} log driver`, "it sends logs from the agent's host");
    }
    for (const [key, flag] of [
      ['PidMode', '--pid'],
      ['IpcMode', '--ipc'],
      ['UTSMode', '--uts'],
      ['UsernsMode', '--userns'],
      ['CgroupnsMode', '--cgroupns'],
    ] as const) {
      const mode = String(hc[key] ?? '');
      if (mode === 'host') throw deny(`the host's namespaces (${flag}=host)`);
      if (mode.startsWith('container:')) refs.containers.add(mode.slice('container:'.length));
    }
    const netMode = String(hc.NetworkMode ?? '');
    if (netMode === 'host') throw deny("the host's network (--network=host)");
    if (netMode.startsWith('container:')) refs.containers.add(netMode.slice('container:'.length));
    else if (!['', 'default', 'bridge', 'none'].includes(netMode)) refs.networks.add(netMode);
    const endpoints =
      ((body.NetworkingConfig as Json | undefined)?.EndpointsConfig as Json | undefined) ?? {};
    for (const name of Object.keys(endpoints)) {
      if (name === 'host') throw deny("the host's network (--network=host)");
      if (!['default', 'bridge', 'none'].includes(name)) refs.networks.add(name);
    }
    for (const from of (hc.VolumesFrom as string[] | null | undefined) ?? [])
      refs.containers.add(from.split(':')[0] ?? '');
    for (const link of (hc.Links as string[] | null | undefined) ?? [])
      refs.containers.add(link.split(':')[0] ?? '');
    // published ports would listen on the agent's host: nobody but the host could reach them, so
    // they stay on its loopback on ports the engine picks (the job reaches its containers through the engine)
    if (hc.PortBindings && typeof hc.PortBindings === 'object') {
      for (const [port, binds] of Object.entries(hc.PortBindings as Record<string, unknown>)) {
        (hc.PortBindings as Record<string, unknown>)[port] = (Array.isArray(binds) ? binds : [{}]).map(
          () => ({
            HostIp: '127.0.0.1',
            HostPort: '',
          }),
        );
      }
    }
    if (hc.PublishAllPorts) hc.PublishAllPorts = false;

    for (const c of refs.containers) await this.requireContainer(c);
    for (const n of refs.networks) await this.requireNetwork(n);
    for (const v of refs.volumes) await this.ensureVolume(v);

    body.Labels = { ...((body.Labels as Json | null | undefined) ?? {}), ...this.stamp };
    this.clampResources(hc);
  }

  /** caps memory and CPUs at the job's resource class (CircleCI sizes its remote engine by it) */
  private clampResources(hc: Json): void {
    const limits = this.opts.limits;
    if (!limits) return;
    const mem = Number(hc.Memory) || 0;
    hc.Memory = mem > 0 && mem < limits.memoryBytes ? mem : limits.memoryBytes;
    hc.MemorySwap = hc.Memory;
    const quota = Number(hc.CpuQuota) || 0;
    if (quota > 0) {
      const period = Number(hc.CpuPeriod) || 100_000;
      if (quota / period > limits.cpus) hc.CpuQuota = Math.round(limits.cpus * period);
    } else {
      const nano = Number(hc.NanoCpus) || 0;
      const max = Math.round(limits.cpus * 1e9);
      hc.NanoCpus = nano > 0 && nano < max ? nano : max;
    }
  }
}

function checkNetwork(body: Json): void {
  const driver = String(body.Driver ?? '');
  if (driver && driver !== 'bridge')
    throw deny(`the ${driver} network driver`, 'only bridge networks are private to the job');
  const allowed = new Set([
    'com.docker.network.driver.mtu',
    'com.docker.network.bridge.enable_icc',
    'com.docker.network.bridge.enable_ip_masquerade',
  ]);
  for (const key of Object.keys((body.Options as Json | null | undefined) ?? {})) {
    if (!allowed.has(key)) throw deny(`the network option ${key}`);
  }
  if (body.ConfigFrom || body.Ingress || body.Scope === 'swarm') throw deny('swarm networks');
}

function checkVolume(body: Json): void {
  const driver = String(body.Driver ?? '');
  if (driver && driver !== 'local') throw deny(`the ${driver} volume driver`);
  const opts = ((body.DriverOpts as Record<string, string> | null | undefined) ?? {}) as Record<
    string,
    string
  >;
  // the local driver's options can mount any host path (`o=bind,device=/etc`): only a tmpfs is harmless
  const harmless =
    opts.type === 'tmpfs' && (opts.device ?? 'tmpfs') === 'tmpfs' && !/\bbind\b/.test(opts.o ?? '');
  if (Object.keys(opts).length && !harmless) throw deny('volume driver options', 'they can mount host paths');
}

/**
 * `name` as the job would write it again: Docker's default tag added, Docker Hub's implied registry
 * and `library/` dropped (the CLI sends `docker.io/x` to tag, `x` to remove)
 */
function imageRef(repo: string, tag: string | null): string {
  const name = repo.replace(/^(?:docker\.io|index\.docker\.io)\/(?:library\/)?/, '');
  if (tag) return `${name}:${tag}`;
  const last = name.slice(name.lastIndexOf('/') + 1);
  return last.includes(':') || last.includes('@') ? name : `${name}:latest`;
}

function parseJson(text: string | null): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Refusal(400, `invalid JSON in the query: ${text.slice(0, 200)}`);
  }
}

async function readJson(req: IncomingMessage): Promise<Json | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY_BYTES) throw new Refusal(413, `request body over ${MAX_JSON_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text || text === 'null') return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Json;
  } catch (err) {
    throw new Refusal(400, `invalid JSON body: ${(err as Error).message}`);
  }
}

function engineMessage(json: unknown): string {
  return typeof json === 'object' && json && 'message' in json ? String(json.message) : String(json);
}

function errorOf(err: unknown, logger?: Logger): { status: number; message: string } {
  if (err instanceof Refusal) return { status: err.status, message: err.message };
  logger?.warn({ err: (err as Error).message }, 'remote Docker proxy: engine call failed');
  return {
    status: 502,
    message: `Torus's remote Docker cannot reach the agent's Docker engine: ${(err as Error).message}`,
  };
}

function answerError(res: ServerResponse, err: unknown, logger?: Logger): void {
  const { status, message } = errorOf(err, logger);
  sendJson(res, status, { message });
}

function sendJson(res: ServerResponse, status: number, json: unknown): void {
  const body = JSON.stringify(json);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Removes what a job made through its proxy: containers (with their anonymous volumes), networks,
 * volumes, the images its builds made (labelled) and the tags it set: every object that carries all
 * of `labels` (checked here too: podman ORs a volume list's label filters). Returns what could not be removed.
 */
export async function removeRemoteDockerObjects(
  docker: Docker,
  labels: Record<string, string>,
  tags: Iterable<string>,
): Promise<string[]> {
  const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      const code = (err as { statusCode?: number }).statusCode;
      // already gone, or (409) still used by another job's container: the image store is shared
      if (code === 404 || code === 409) return;
      errors.push(
        `${what}: ${(err as { json?: { message?: string } }).json?.message ?? (err as Error).message}`,
      );
    }
  };
  const all = <T extends { Labels?: Record<string, string> | null }>(list: T[]) =>
    list.filter((o) => Object.entries(labels).every(([k, v]) => o.Labels?.[k] === v));
  const containers = all(await docker.listContainers({ all: true, filters: { label } }));
  for (const c of containers)
    await attempt(`container ${c.Id}`, () => docker.getContainer(c.Id).remove({ force: true, v: true }));
  const networks = all(await docker.listNetworks({ filters: { label } }));
  for (const n of networks) await attempt(`network ${n.Name}`, () => docker.getNetwork(n.Id).remove());
  const volumes = all((await docker.listVolumes({ filters: { label } })).Volumes ?? []);
  for (const v of volumes) await attempt(`volume ${v.Name}`, () => docker.getVolume(v.Name).remove());
  const images = all(await docker.listImages({ filters: { label } }));
  for (const i of images) await attempt(`image ${i.Id}`, () => docker.getImage(i.Id).remove({ force: true }));
  for (const t of tags) await attempt(`image ${t}`, () => docker.getImage(t).remove());
  return errors;
}
