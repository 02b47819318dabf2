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
