// Server settings: environment variables win over `torus.yaml` keys, which win over defaults.
// Every key is listed here and in the README's configuration reference.
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { TorusError } from './errors.js';

export interface Settings {
  host: string;
  port: number;
  /** external address, used in links and CIRCLE_BUILD_URL */
  url: string;
  dataDir: string;
  databaseUrl?: string;
  adminToken?: string;
  /** local agent processes the server starts; 0 for none */
  localAgents: number;
  /** resource classes the local agents claim from */
  localAgentClasses: string[];
  logLevel: string;
  leaseMs: number;
  heartbeatMs: number;
  /** how many times an expired lease re-queues a task before the task is infrastructure_fail */
  maxLeaseRequeues: number;
  /** 'auto' uses bubblewrap when present */
  sandbox: 'auto' | 'bwrap' | 'none';
  /** secrets keyring file (default `<dataDir>/keyring.json`, created 0600 on first use) */
  keyringFile?: string;
  /** the keyring itself, base64 JSON (scaled-out shape); wins over keyringFile */
  keyring?: string;
  /** where objects (output, artifacts, caches, workspaces) go: 'fs' (`<dataDir>/objects`, the default) or 's3' */
  objectStore?: 'fs' | 's3';
  /** S3-compatible endpoint URL; AWS when absent */
  s3Endpoint?: string;
  s3Bucket?: string;
  s3Region?: string;
  /** path-style addressing (MinIO, s3rver); virtual-hosted when false */
  s3ForcePathStyle?: boolean;
  /** key prefix inside the bucket */
  s3Prefix?: string;
  /** static credentials; the AWS SDK's default chain when absent */
  s3AccessKeyId?: string;
  s3SecretAccessKey?: string;
  /** serve html/css/javascript/xml artifacts with their own content types (CircleCI's "unsafe artifacts") */
  unsafeArtifacts?: boolean;
  /** days artifacts and test results are kept (CircleCI Server: 30); 0 keeps them forever */
  artifactRetentionDays: number;
  /** days a saved cache is kept, counted from its save (CircleCI Server: 15); 0 keeps them forever */
  cacheRetentionDays: number;
  /** days workspace layers are kept (CircleCI Server: 15); 0 keeps them forever */
  workspaceRetentionDays: number;
  /** how often the server sweeps expired artifacts, test results, caches and workspace layers */
  retentionSweepMs: number;
  /** how often each server checks for workflow schedules that are due (`triggers: - schedule:`) */
  scheduleTickMs: number;
  /** how often each server deletes expired dev orb versions (they stop resolving when they expire) */
  orbDevSweepMs: number;
  /** the upstream orb registry `torus admin import-orb` reads (default CircleCI's) */
  orbUpstreamUrl?: string;
  /** proxy for outbound http:// requests; wins over HTTP_PROXY / http_proxy (see ops/proxy.ts) */
  httpProxy?: string;
  /** proxy for outbound https:// requests; wins over HTTPS_PROXY / https_proxy */
  httpsProxy?: string;
  /** hosts reached without a proxy; wins over NO_PROXY / no_proxy */
  noProxy?: string;
  /** the config file read, if any */
  configFile?: string;
}

interface Key {
  env: string;
  yaml: string;
  apply(s: Settings, raw: string): void;
}

function int(name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      `${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

/** A retention in days: 0 (forever) up to a century, so the cut-off stays a valid date. */
function retentionDays(name: string, raw: string): number {
  const n = int(name, raw, 0);
  if (n > 36_500) {
    throw new TorusError(
      'TORUS_E_SETTINGS',
      `${name} must be at most 36500 days, got ${n}; use 0 to keep forever`,
    );
  }
  return n;
}

function bool(name: string, raw: string): boolean {
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no|)$/i.test(raw)) return false;
  throw new TorusError('TORUS_E_SETTINGS', `${name} must be true or false, got ${JSON.stringify(raw)}`);
}

const KEYS: Key[] = [
  { env: 'TORUS_HOST', yaml: 'host', apply: (s, v) => (s.host = v) },
  { env: 'TORUS_PORT', yaml: 'port', apply: (s, v) => (s.port = int('TORUS_PORT', v, 0)) },
  { env: 'TORUS_URL', yaml: 'url', apply: (s, v) => (s.url = v.replace(/\/+$/, '')) },
  { env: 'TORUS_DATA_DIR', yaml: 'data_dir', apply: (s, v) => (s.dataDir = resolve(v)) },
  { env: 'TORUS_DATABASE_URL', yaml: 'database_url', apply: (s, v) => (s.databaseUrl = v || undefined) },
  { env: 'TORUS_ADMIN_TOKEN', yaml: 'admin_token', apply: (s, v) => (s.adminToken = v || undefined) },
  {
    env: 'TORUS_LOCAL_AGENTS',
    yaml: 'local_agents',
    apply: (s, v) => (s.localAgents = int('TORUS_LOCAL_AGENTS', v, 0)),
  },
  {
    env: 'TORUS_LOCAL_AGENT_CLASSES',
    yaml: 'local_agent_classes',
    apply: (s, v) =>
      (s.localAgentClasses = v
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean)),
  },
  { env: 'TORUS_LOG_LEVEL', yaml: 'log_level', apply: (s, v) => (s.logLevel = v) },
  { env: 'TORUS_LEASE_MS', yaml: 'lease_ms', apply: (s, v) => (s.leaseMs = int('TORUS_LEASE_MS', v, 100)) },
  {
    env: 'TORUS_HEARTBEAT_MS',
    yaml: 'heartbeat_ms',
    apply: (s, v) => (s.heartbeatMs = int('TORUS_HEARTBEAT_MS', v, 20)),
  },
  {
    env: 'TORUS_MAX_LEASE_REQUEUES',
    yaml: 'max_lease_requeues',
    apply: (s, v) => (s.maxLeaseRequeues = int('TORUS_MAX_LEASE_REQUEUES', v, 0)),
  },
  {
    env: 'TORUS_SANDBOX',
    yaml: 'sandbox',
    apply: (s, v) => {
      if (v !== 'auto' && v !== 'bwrap' && v !== 'none') {
        throw new TorusError(
          'TORUS_E_SETTINGS',
          `TORUS_SANDBOX must be auto, bwrap or none, got ${JSON.stringify(v)}`,
        );
      }
      s.sandbox = v;
    },
  },
  {
    env: 'TORUS_KEYRING_FILE',
    yaml: 'keyring_file',
    apply: (s, v) => (s.keyringFile = v ? resolve(v) : undefined),
  },
  { env: 'TORUS_KEYRING', yaml: 'keyring', apply: (s, v) => (s.keyring = v || undefined) },
  {
    env: 'TORUS_OBJECT_STORE',
    yaml: 'object_store',
    apply: (s, v) => {
      if (v !== 'fs' && v !== 's3') {
        throw new TorusError(
          'TORUS_E_SETTINGS',
          `TORUS_OBJECT_STORE must be fs or s3, got ${JSON.stringify(v)}`,
        );
      }
      s.objectStore = v;
    },
  },
  { env: 'TORUS_S3_ENDPOINT', yaml: 's3_endpoint', apply: (s, v) => (s.s3Endpoint = v || undefined) },
  { env: 'TORUS_S3_BUCKET', yaml: 's3_bucket', apply: (s, v) => (s.s3Bucket = v || undefined) },
  { env: 'TORUS_S3_REGION', yaml: 's3_region', apply: (s, v) => (s.s3Region = v || undefined) },
  {
    env: 'TORUS_S3_FORCE_PATH_STYLE',
    yaml: 's3_force_path_style',
    apply: (s, v) => (s.s3ForcePathStyle = bool('TORUS_S3_FORCE_PATH_STYLE', v)),
  },
  { env: 'TORUS_S3_PREFIX', yaml: 's3_prefix', apply: (s, v) => (s.s3Prefix = v || undefined) },
  {
    env: 'TORUS_S3_ACCESS_KEY_ID',
    yaml: 's3_access_key_id',
    apply: (s, v) => (s.s3AccessKeyId = v || undefined),
  },
  {
    env: 'TORUS_S3_SECRET_ACCESS_KEY',
    yaml: 's3_secret_access_key',
    apply: (s, v) => (s.s3SecretAccessKey = v || undefined),
  },
  {
    env: 'TORUS_UNSAFE_ARTIFACTS',
    yaml: 'unsafe_artifacts',
    apply: (s, v) => (s.unsafeArtifacts = bool('TORUS_UNSAFE_ARTIFACTS', v)),
  },
  {
    env: 'TORUS_ARTIFACT_RETENTION_DAYS',
    yaml: 'artifact_retention_days',
    apply: (s, v) => (s.artifactRetentionDays = retentionDays('TORUS_ARTIFACT_RETENTION_DAYS', v)),
  },
  {
    env: 'TORUS_CACHE_RETENTION_DAYS',
    yaml: 'cache_retention_days',
    apply: (s, v) => (s.cacheRetentionDays = retentionDays('TORUS_CACHE_RETENTION_DAYS', v)),
  },
  {
    env: 'TORUS_WORKSPACE_RETENTION_DAYS',
    yaml: 'workspace_retention_days',
    apply: (s, v) => (s.workspaceRetentionDays = retentionDays('TORUS_WORKSPACE_RETENTION_DAYS', v)),
  },
  {
    env: 'TORUS_RETENTION_SWEEP_MS',
    yaml: 'retention_sweep_ms',
    apply: (s, v) => (s.retentionSweepMs = int('TORUS_RETENTION_SWEEP_MS', v, 1_000)),
  },
  {
    env: 'TORUS_SCHEDULE_TICK_MS',
    yaml: 'schedule_tick_ms',
    apply: (s, v) => (s.scheduleTickMs = int('TORUS_SCHEDULE_TICK_MS', v, 100)),
  },
  {
    env: 'TORUS_ORB_DEV_SWEEP_MS',
    yaml: 'orb_dev_sweep_ms',
    apply: (s, v) => (s.orbDevSweepMs = int('TORUS_ORB_DEV_SWEEP_MS', v, 100)),
  },
  { env: 'TORUS_ORB_UPSTREAM', yaml: 'orb_upstream', apply: (s, v) => (s.orbUpstreamUrl = v || undefined) },
  { env: 'TORUS_HTTP_PROXY', yaml: 'http_proxy', apply: (s, v) => (s.httpProxy = v || undefined) },
  { env: 'TORUS_HTTPS_PROXY', yaml: 'https_proxy', apply: (s, v) => (s.httpsProxy = v || undefined) },
  { env: 'TORUS_NO_PROXY', yaml: 'no_proxy', apply: (s, v) => (s.noProxy = v || undefined) },
];

export const SETTING_KEYS = KEYS.map((k) => ({ env: k.env, yaml: k.yaml }));

export function defaultSettings(): Settings {
  return {
    host: '127.0.0.1',
    port: 8080,
    url: '',
    dataDir: resolve('.torus'),
    localAgents: availableParallelism(),
    localAgentClasses: ['machine:*'],
    logLevel: 'info',
    leaseMs: 30_000,
    heartbeatMs: 5_000,
    maxLeaseRequeues: 2,
    sandbox: 'auto',
    artifactRetentionDays: 30,
    cacheRetentionDays: 15,
    workspaceRetentionDays: 15,
    retentionSweepMs: 3_600_000,
    scheduleTickMs: 15_000,
    orbDevSweepMs: 3_600_000,
  };
}

/** Reads `torus.yaml` (TORUS_CONFIG, else ./torus.yaml when present) and the environment. */
export function loadSettings(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<Settings> = {},
): Settings {
  const s = defaultSettings();
  const file = env.TORUS_CONFIG ?? (existsSync('torus.yaml') ? 'torus.yaml' : undefined);
  if (file) {
    let doc: unknown;
    try {
      doc = parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new TorusError('TORUS_E_SETTINGS', `cannot read ${file}: ${(err as Error).message}`);
    }
    if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) {
      throw new TorusError('TORUS_E_SETTINGS', `${file} must be a mapping of setting names to values`);
    }
    const map = (doc ?? {}) as Record<string, unknown>;
    for (const name of Object.keys(map)) {
      const key = KEYS.find((k) => k.yaml === name);
      if (!key) {
        throw new TorusError(
          'TORUS_E_SETTINGS',
          `${file}: unknown setting ${JSON.stringify(name)}; known: ${KEYS.map((k) => k.yaml).join(', ')}`,
        );
      }
      const v = map[name];
      key.apply(s, Array.isArray(v) ? v.join(',') : String(v));
    }
    s.configFile = resolve(file);
  }
  for (const key of KEYS) {
    const v = env[key.env];
    if (v !== undefined) key.apply(s, v);
  }
  Object.assign(s, overrides);
  if (!s.url) s.url = `http://${s.host === '0.0.0.0' ? '127.0.0.1' : s.host}:${s.port}`;
  return s;
}
