// Normalization: a processed job (2.0 shape, plain YAML values) becomes a typed CompiledJob, with
// CircleCI's defaults (resource class, working directory, step names, no-output timeout).
import type {
  CompiledJob,
  DockerImage,
  ExecutorSpec,
  JobFilters,
  BranchTagFilter,
  Step,
  StepWhen,
} from './model.js';
import { isMapValue, renderScalar, report, type Context } from './params.js';
import type { MapValue, Value } from './source.js';

/** CircleCI's default no_output_timeout. */
export const DEFAULT_NO_OUTPUT_TIMEOUT_MS = 10 * 60 * 1000;

/** CircleCI's names for steps written without `name:`. */
const DEFAULT_STEP_NAMES: Record<string, string> = {
  checkout: 'Checkout code',
  save_cache: 'Saving cache',
  restore_cache: 'Restoring cache',
  persist_to_workspace: 'Persisting to Workspace',
  attach_workspace: 'Attaching Workspace',
  store_artifacts: 'Uploading artifacts',
  store_test_results: 'Uploading test results',
  setup_remote_docker: 'Setup a remote Docker engine',
  add_ssh_keys: 'Add SSH keys',
};

/** Steps that run whatever happened before them, unless told otherwise. */
const ALWAYS_STEPS = new Set(['store_artifacts', 'store_test_results']);

/** Parses a CircleCI duration ('20m', '1.5h', '30s', '1h30m'; a bare number is seconds) to ms. */
export function parseDuration(v: Value): number | undefined {
  if (typeof v === 'number') return v >= 0 ? Math.round(v * 1000) : undefined;
  if (typeof v !== 'string') return undefined;
  const text = v.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
    consumed = re.lastIndex;
  }
  return consumed === text.length && consumed > 0 ? Math.round(total) : undefined;
}

/** Environment maps: values become strings (CircleCI turns numbers and booleans into text). */
export function normalizeEnvironment(
  ctx: Context,
  raw: Value | undefined,
  where: string,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (raw === undefined || raw === null) return env;
  const add = (k: string, v: Value): void => {
    env[k] = v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : renderScalar(v);
  };
  if (isMapValue(raw)) {
    for (const [k, v] of Object.entries(raw)) add(k, v);
  } else if (Array.isArray(raw)) {
    // older configs write a list of `KEY=value` strings or one-entry maps
    for (const item of raw) {
      if (typeof item === 'string' && item.includes('='))
        add(item.slice(0, item.indexOf('=')), item.slice(item.indexOf('=') + 1));
      else if (isMapValue(item)) for (const [k, v] of Object.entries(item)) add(k, v);
      else
        report(
          ctx,
          'TORUS_E_CONFIG_SHAPE',
          `environment of ${where}: expected KEY=value or a map, got ${JSON.stringify(item)}`,
          { container: raw },
        );
    }
  } else if (typeof raw === 'string' && /^[A-Za-z_][A-Za-z0-9_]*=/.test(raw)) {
    // a single `KEY=value` scalar, which CircleCI also accepts
    add(raw.slice(0, raw.indexOf('=')), raw.slice(raw.indexOf('=') + 1));
  } else {
    report(ctx, 'TORUS_E_CONFIG_SHAPE', `environment of ${where} must be a map`, { container: raw });
  }
  return env;
}

function stringList(v: Value | undefined): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) return v.map((x) => renderScalar(x));
  return [renderScalar(v)];
}

function normalizeExecutor(ctx: Context, job: MapValue, name: string): ExecutorSpec {
  if (job.docker !== undefined) {
    const list = job.docker;
    if (!Array.isArray(list) || list.length === 0) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `docker of job ${name} must be a non-empty list of images`, {
        container: job,
        key: 'docker',
      });
      return { type: 'docker', images: [] };
    }
    const images: DockerImage[] = [];
    list.forEach((item, i) => {
      if (!isMapValue(item) || typeof item.image !== 'string' || item.image === '') {
        report(ctx, 'TORUS_E_CONFIG_SHAPE', `docker image ${i + 1} of job ${name} needs "image:"`, {
          container: list,
          key: i,
        });
        return;
      }
      const img: DockerImage = {
        image: item.image,
        environment: normalizeEnvironment(ctx, item.environment, `job ${name}`),
      };
      if (item.name !== undefined && item.name !== null) img.name = renderScalar(item.name);
      const entrypoint = stringList(item.entrypoint);
      if (entrypoint) img.entrypoint = entrypoint;
      const command = stringList(item.command);
      if (command) img.command = command;
      if (item.user !== undefined && item.user !== null) img.user = renderScalar(item.user);
      if (isMapValue(item.auth))
        img.auth = {
          username: renderScalar(item.auth.username ?? ''),
          password: renderScalar(item.auth.password ?? ''),
        };
      if (isMapValue(item.aws_auth)) {
        const a = item.aws_auth;
        img.awsAuth = {};
        if (a.aws_access_key_id != null) img.awsAuth.accessKeyId = renderScalar(a.aws_access_key_id);
        if (a.aws_secret_access_key != null)
          img.awsAuth.secretAccessKey = renderScalar(a.aws_secret_access_key);
        if (a.oidc_role_arn != null) img.awsAuth.oidcRoleArn = renderScalar(a.oidc_role_arn);
      }
      images.push(img);
    });
    return { type: 'docker', images };
  }
  if (job.machine !== undefined && job.machine !== false && job.machine !== null) {
    const m = job.machine;
    const spec: ExecutorSpec = { type: 'machine' };
    if (isMapValue(m)) {
      if (m.image !== undefined && m.image !== null) spec.image = renderScalar(m.image);
      if (m.docker_layer_caching !== undefined) spec.dockerLayerCaching = m.docker_layer_caching === true;
    }
    return spec;
  }
  if (job.macos !== undefined) {
    const m = job.macos;
    if (!isMapValue(m) || m.xcode === undefined || m.xcode === null) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `macos of job ${name} needs "xcode:"`, {
        container: job,
        key: 'macos',
      });
      return { type: 'macos', xcode: '' };
    }
    return { type: 'macos', xcode: renderScalar(m.xcode) };
  }
  return { type: 'none' };
}

function stepWhen(v: Value | undefined, fallback: StepWhen): StepWhen {
  return v === 'on_success' || v === 'on_fail' || v === 'always' ? v : fallback;
}

function normalizeRun(
  ctx: Context,
  type: string,
  body: Value,
  step: MapValue,
  job: string,
): Step | undefined {
  if (typeof body === 'string') {
    return {
      type: 'run',
      name: firstLine(body),
      command: body,
      environment: {},
      noOutputTimeoutMs: DEFAULT_NO_OUTPUT_TIMEOUT_MS,
      when: 'on_success',
      background: false,
    };
  }
  if (!isMapValue(body) || body.command === undefined || body.command === null) {
    report(ctx, 'TORUS_E_CONFIG_SHAPE', `${type} step in job ${job} needs "command:"`, {
      container: step,
      key: type,
    });
    return undefined;
  }
  const command = renderScalar(body.command);
  let timeout = DEFAULT_NO_OUTPUT_TIMEOUT_MS;
  if (body.no_output_timeout !== undefined && body.no_output_timeout !== null) {
    const ms = parseDuration(body.no_output_timeout);
    if (ms === undefined) {
      report(
        ctx,
        'TORUS_E_CONFIG_SHAPE',
        `no_output_timeout ${JSON.stringify(body.no_output_timeout)} in job ${job} is not a duration such as 20m, 1.5h or 30s`,
        {
          container: body,
          key: 'no_output_timeout',
        },
      );
    } else timeout = ms;
  }
  const step2: Step = {
    type: 'run',
    name:
      body.name !== undefined && body.name !== null && body.name !== ''
        ? renderScalar(body.name)
        : firstLine(command),
    command,
    environment: normalizeEnvironment(ctx, body.environment, `a step of job ${job}`),
    noOutputTimeoutMs: timeout,
    when: stepWhen(body.when, 'on_success'),
    background: body.background === true,
  };
  if (body.shell !== undefined && body.shell !== null) step2.shell = renderScalar(body.shell);
  if (body.working_directory !== undefined && body.working_directory !== null)
    step2.workingDirectory = renderScalar(body.working_directory);
  if (typeof body.max_auto_reruns === 'number') step2.maxAutoReruns = body.max_auto_reruns;
  if (body.auto_rerun_delay !== undefined) {
    const ms = parseDuration(body.auto_rerun_delay ?? null);
    if (ms !== undefined) step2.autoRerunDelayMs = ms;
  }
  return step2;
}

function firstLine(text: string): string {
  const line = text.split('\n').find((l) => l.trim() !== '') ?? text;
  return line.trim();
}

function normalizeStep(
  ctx: Context,
  step: Value,
  steps: Value[],
  index: number,
  job: string,
): Step | undefined {
  if (typeof step === 'string') {
    if (step === 'checkout')
      return { type: 'checkout', name: DEFAULT_STEP_NAMES.checkout!, when: 'on_success' };
    return {
      type: step,
      name: DEFAULT_STEP_NAMES[step] ?? step,
      when: ALWAYS_STEPS.has(step) ? 'always' : 'on_success',
      args: {},
    };
  }
  if (!isMapValue(step) || Object.keys(step).length !== 1) {
    report(
      ctx,
      'TORUS_E_CONFIG_SHAPE',
      `step ${index + 1} of job ${job} must be a step name or a map with one key`,
      { container: steps, key: index },
    );
    return undefined;
  }
  const type = Object.keys(step)[0]!;
  const body = step[type] ?? null;
  // `deploy` is CircleCI's deprecated alias of `run`
  if (type === 'run' || type === 'deploy') return normalizeRun(ctx, type, body, step, job);
  const args: Record<string, unknown> = isMapValue(body) ? { ...body } : {};
  const name =
    typeof args.name === 'string' && args.name !== '' ? args.name : (DEFAULT_STEP_NAMES[type] ?? type);
  const when = stepWhen(args.when as Value, ALWAYS_STEPS.has(type) ? 'always' : 'on_success');
  if (type === 'checkout') {
    const s: Step = { type: 'checkout', name, when };
    if (args.path !== undefined && args.path !== null) s.path = renderScalar(args.path as Value);
    return s;
  }
  delete args.name;
  delete args.when;
  if (body !== null && !isMapValue(body)) {
    report(ctx, 'TORUS_E_CONFIG_SHAPE', `step "${type}" of job ${job} takes a map of arguments`, {
      container: step,
      key: type,
    });
    return undefined;
  }
  return { type, name, when, args };
}

/** A processed job (steps expanded, executor inlined) to the typed model. */
export function normalizeJob(ctx: Context, job: MapValue, name: string): CompiledJob {
  const steps: Step[] = [];
  const rawSteps = Array.isArray(job.steps) ? job.steps : [];
  rawSteps.forEach((s, i) => {
    const step = normalizeStep(ctx, s, rawSteps, i, name);
    if (step) steps.push(step);
  });
  let parallelism = 1;
  if (job.parallelism !== undefined && job.parallelism !== null) {
    const p = typeof job.parallelism === 'string' ? Number(job.parallelism) : job.parallelism;
    if (typeof p === 'number' && Number.isInteger(p) && p >= 1) parallelism = p;
    else
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `parallelism of job ${name} must be a positive integer`, {
        container: job,
        key: 'parallelism',
      });
  }
  const compiled: CompiledJob = {
    executor: normalizeExecutor(ctx, job, name),
    resourceClass:
      job.resource_class !== undefined && job.resource_class !== null
        ? renderScalar(job.resource_class)
        : 'medium',
    workingDirectory:
      job.working_directory !== undefined && job.working_directory !== null
        ? renderScalar(job.working_directory)
        : '~/project',
    parallelism,
    environment: normalizeEnvironment(ctx, job.environment, `job ${name}`),
    steps,
  };
  if (job.shell !== undefined && job.shell !== null) compiled.shell = renderScalar(job.shell);
  return compiled;
}

function normalizeBranchTag(v: Value | undefined): BranchTagFilter | undefined {
  if (!isMapValue(v)) return undefined;
  const f: BranchTagFilter = {};
  const only = stringList(v.only);
  const ignore = stringList(v.ignore);
  if (only) f.only = only;
  if (ignore) f.ignore = ignore;
  return f;
}

/** `filters:` with `only`/`ignore` as lists. */
export function normalizeFilters(v: Value | undefined): JobFilters {
  const f: JobFilters = {};
  if (!isMapValue(v)) return f;
  const branches = normalizeBranchTag(v.branches);
  const tags = normalizeBranchTag(v.tags);
  if (branches) f.branches = branches;
  if (tags) f.tags = tags;
  return f;
}

/** The filters back in YAML form, for the processed config. */
export function filtersToYaml(f: JobFilters): MapValue {
  const out: MapValue = {};
  for (const k of ['branches', 'tags'] as const) {
    const bt = f[k];
    if (!bt) continue;
    const m: MapValue = {};
    if (bt.only) m.only = bt.only;
    if (bt.ignore) m.ignore = bt.ignore;
    out[k] = m;
  }
  return out;
}
