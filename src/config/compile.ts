// The compiler's stages: parse → version → pipeline parameters → orbs → elements (commands,
// executors, jobs) → workflows (invocations, matrix, requires) → normalized model + processed YAML.
// Pure: the only I/O is the optional orbResolver. Never throws; every failure is a typed ConfigError.
import { stringify } from 'yaml';
import type {
  CompileOptions,
  CompileResult,
  CompiledConfig,
  CompiledJob,
  CompiledWorkflow,
  ConfigError,
  RequiredStatus,
  Requirement,
  ScheduleTrigger,
  WorkflowJob,
  OrbResolver,
} from './model.js';
import { ConfigAbort, configError } from './errors.js';
import { filtersToYaml, normalizeFilters, normalizeJob } from './normalize.js';
import {
  evaluateLogic,
  isKnownPipelineValue,
  isMapValue,
  readParameterDecls,
  report,
  resolveArguments,
  substitute,
  truthy,
  unescapeReferences,
  type Context,
  type ParameterDecl,
  type SubstitutionPass,
} from './params.js';
import { CronError, parseCron } from './cron.js';
import { parseFast } from './fast-source.js';
import { validateSchema } from './schema.js';
import { checkSource, parseSource, SourceMap, type MapValue, type Value } from './source.js';
import { loadOrbs, type OrbLoadContext } from './orbs.js';
import { evaluateExpression, ExpressionError, looksLikeExpression } from './expr.js';
import { registerElements, newNamespace, type Element, type Namespace } from './elements.js';

const DEFAULT_FILE = '.circleci/config.yml';
/** Commands calling commands deeper than this are treated as runaway recursion. */
const MAX_COMMAND_DEPTH = 50;

const BUILTIN_STEPS = new Set([
  'run',
  'checkout',
  'save_cache',
  'restore_cache',
  'deploy',
  'store_artifacts',
  'store_test_results',
  'persist_to_workspace',
  'attach_workspace',
  'add_ssh_keys',
  'setup_remote_docker',
]);
const EXECUTOR_KINDS = ['docker', 'machine', 'macos'] as const;
const ALL_STATUSES: RequiredStatus[] = ['success', 'failed', 'canceled', 'unauthorized', 'not_run'];
/** Keys a job definition may have; CircleCI rejects others ("extraneous key [x] is not permitted"). */
const JOB_KEYS = new Set([
  'steps',
  'docker',
  'machine',
  'macos',
  'executor',
  'working_directory',
  'parameters',
  'description',
  'environment',
  'parallelism',
  'resource_class',
  'shell',
  'circleci_ip_ranges',
  'type',
  'retention',
  'branches',
]);
const INVOCATION_KEYS = new Set([
  'name',
  'requires',
  'filters',
  'context',
  'type',
  'matrix',
  'pre-steps',
  'post-steps',
  'serial-group',
  'override-with',
]);

class Compiler {
  readonly ctx: Context;
  private readonly is21: boolean;
  private pipelinePass: SubstitutionPass = { kind: 'pipeline', values: new Map(), owner: 'the config' };
  private root: Namespace = newNamespace('config');
  /** executor references passed as arguments, and the namespace they resolve in */
  private readonly callerNamespaces = new WeakMap<object, Namespace>();
  /** processed jobs by key, with their canonical JSON for reuse */
  private readonly processedJobs = new Map<string, { raw: MapValue; json: string; compiled: CompiledJob }>();

  constructor(
    ctx: Context,
    private config: MapValue,
    private readonly version: '2' | '2.1',
    private readonly opts: CompileOptions,
  ) {
    this.ctx = ctx;
    this.is21 = version === '2.1';
  }

  async compile(): Promise<{ config: CompiledConfig; processed: MapValue } | undefined> {
    const ctx = this.ctx;
    if (this.is21) {
      this.resolvePipelineParameters();
      // pipeline.* everywhere except orbs and the pipeline parameters' own definitions
      const substituted: MapValue = {};
      for (const [k, v] of Object.entries(this.config)) {
        substituted[k] =
          k === 'orbs' || k === 'parameters' ? v : substitute(ctx, v, this.pipelinePass, this.config, k);
      }
      ctx.sourceMap.copy(this.config, substituted);
      this.config = substituted;
      if (this.config.orbs !== undefined && this.config.orbs !== null) {
        const orbCtx: OrbLoadContext = {
          ctx,
          resolver: this.opts.orbResolver,
          pipelinePass: this.pipelinePass,
        };
        await loadOrbs(orbCtx, this.root, this.config.orbs, this.config, 0);
        // as CircleCI: a config whose orbs cannot be resolved gets only those errors (nothing else
        // can be checked against elements that are missing)
        if (this.root.unresolvedOrbs.size > 0 && ctx.errors.length > 0) return undefined;
      }
    } else {
      for (const key of ['orbs', 'commands', 'executors', 'parameters']) {
        if (this.config[key] !== undefined) {
          report(ctx, 'TORUS_E_CONFIG_VERSION', `"${key}" needs version: 2.1 (this config says version: 2)`, {
            container: this.config,
            key,
          });
        }
      }
    }
    registerElements(ctx, this.root, this.config, this.is21);
    if (
      this.root.jobs.size === 0 &&
      this.config.jobs === undefined &&
      this.root.orbs.size === 0 &&
      this.root.unresolvedOrbs.size === 0
    ) {
      report(
        ctx,
        'TORUS_E_CONFIG_SHAPE',
        'the config defines no jobs',
        { container: this.config },
        'add a jobs: section',
      );
    }
    // Jobs that need no arguments are compiled under their own names (CircleCI validates them all).
    for (const el of this.root.jobs.values()) {
      if (isMapValue(el.body) && (el.body.type === 'no-op' || el.body.type === 'approval')) continue;
      const decls = this.decls(el);
      if ([...decls.values()].some((d) => !d.hasDefault)) continue;
      const raw = this.expandJob(el, {}, undefined, undefined, this.config);
      if (raw) this.registerJob(el.name, raw, el.name);
    }
    const workflows = this.compileWorkflows();
    if (ctx.errors.length > 0) return undefined;
    const jobs: Record<string, CompiledJob> = {};
    const processedJobs: MapValue = {};
    for (const [key, j] of this.processedJobs) {
      jobs[key] = j.compiled;
      processedJobs[key] = j.raw;
    }
    const config: CompiledConfig = {
      sourceVersion: this.version,
      setup: this.config.setup === true,
      jobs,
      workflows: workflows.map((w) => w.compiled),
    };
    const processed: MapValue = { version: 2 };
    if (config.setup) processed.setup = true;
    processed.jobs = processedJobs;
    const wfYaml: MapValue = { version: 2 };
    for (const w of workflows) wfYaml[w.compiled.name] = w.yaml;
    processed.workflows = wfYaml;
    return { config, processed };
  }

  // ---- pipeline parameters ----

  private resolvePipelineParameters(): void {
    const ctx = this.ctx;
    const values = this.pipelinePass.values;
    for (const [k, v] of Object.entries(this.opts.pipelineValues ?? {})) {
      values.set(k.startsWith('pipeline.') ? k : `pipeline.${k}`, v);
    }
    const decls = readParameterDecls(ctx, this.config.parameters, 'the pipeline', true);
    const supplied = this.opts.pipelineParameters ?? {};
    // CircleCI's API limits on trigger-supplied parameters
    const entries = Object.entries(supplied);
    if (entries.length > 100) {
      ctx.errors.push(
        configError(
          'TORUS_E_CONFIG_PARAMETER_TYPE',
          `${entries.length} pipeline parameters were passed; the limit is 100`,
          ctx.file,
          undefined,
        ),
      );
    }
    for (const [k, v] of entries) {
      if (k.length > 128 || (typeof v === 'string' && v.length > 512)) {
        ctx.errors.push(
          configError(
            'TORUS_E_CONFIG_PARAMETER_TYPE',
            `pipeline parameter ${k.slice(0, 40)}: names are limited to 128 characters and values to 512`,
            ctx.file,
            undefined,
          ),
        );
      }
    }
    const unknown = Object.keys(supplied).filter((k) => !decls.has(k));
    if (unknown.length > 0) {
      ctx.errors.push(
        configError(
          'TORUS_E_CONFIG_UNEXPECTED_ARGUMENT',
          `Unexpected argument(s): pipeline parameters ${unknown.join(', ')} are not declared in the config`,
          ctx.file,
          ctx.sourceMap.at(this.config, 'parameters'),
          'declare them under the top-level parameters: with a type and a default',
        ),
      );
    }
    const args: MapValue = {};
    for (const [k, v] of Object.entries(supplied)) if (decls.has(k)) args[k] = v;
    const resolved = resolveArguments(ctx, decls, args, 'the pipeline', {
      container: this.config,
      key: 'parameters',
    });
    for (const [k, v] of Object.entries(resolved)) values.set(`pipeline.parameters.${k}`, v);
  }

  // ---- elements ----

  private decls(el: Element): Map<string, ParameterDecl> {
    if (!el.decls) {
      const body = el.body;
      el.decls = readParameterDecls(
        this.ctx,
        isMapValue(body) ? body.parameters : undefined,
        this.describe(el),
      );
    }
    return el.decls;
  }

  private describe(el: Element): string {
    const what = el.kind === 'commands' ? 'command' : el.kind === 'executors' ? 'executor' : 'job';
    return el.ns.label === 'config' ? `${what} ${el.name}` : `${what} ${el.ns.label}/${el.name}`;
  }

  /** Finds `name` or `alias/name` in a namespace; reports and returns undefined when missing. */
  lookup(
    ns: Namespace,
    kind: Element['kind'],
    name: string,
    where: { container: unknown; key?: string | number },
    quiet = false,
  ): Element | undefined {
    const slash = name.indexOf('/');
    // a processed config may name jobs with slashes (matrix values); an exact local name wins
    if (slash > 0 && !ns[kind].has(name)) {
      const alias = name.slice(0, slash);
      const orb = ns.orbs.get(alias);
      if (!orb) {
        const ref = ns.unresolvedOrbs.get(alias);
        if (ref && !quiet && ns.label !== 'config') {
          // an orb's own import is reported where it is needed (the config's are reported where declared)
          report(
            this.ctx,
            'TORUS_E_CONFIG_UNKNOWN_ORB',
            `orb ${ref} (imported by orb ${ns.label} as "${alias}", used by ${name}) is not available`,
            where,
            `import it with: torus admin import-orb ${ref}`,
          );
        }
        if (!quiet && !ref) {
          report(
            this.ctx,
            'TORUS_E_CONFIG_UNKNOWN_ORB',
            `"${name}" uses orb alias "${alias}", which is not declared under orbs:`,
            where,
            `declare it, e.g. orbs: { ${alias}: namespace/orb@version }, then import it with: torus admin import-orb namespace/orb@version`,
          );
        }
        return undefined;
      }
      return this.lookup(orb, kind, name.slice(slash + 1), where, quiet);
    }
    const el = ns[kind].get(name);
    if (el && typeof el.body === 'string' && el.body.includes('/')) {
      // orb elements may alias another orb's element: `commands: {x: other-orb/their-command}`
      return this.lookup(el.ns, kind, el.body, where, quiet);
    }
    if (!el && !quiet) {
      const code =
        kind === 'jobs'
          ? 'TORUS_E_CONFIG_UNKNOWN_JOB'
          : kind === 'commands'
            ? 'TORUS_E_CONFIG_UNKNOWN_COMMAND'
            : 'TORUS_E_CONFIG_UNKNOWN_EXECUTOR';
      const known = [...ns[kind].keys()];
      const what = kind.slice(0, -1);
      report(
        this.ctx,
        code,
        `${what} "${name}" is not defined${ns.label === 'config' ? '' : ` in orb ${ns.label}`}`,
        where,
        known.length > 0 ? `defined ${kind}: ${known.slice(0, 20).join(', ')}` : `define it under ${kind}:`,
      );
    }
    return el;
  }

  private elementPass(el: Element, values: Record<string, unknown>): SubstitutionPass {
    return {
      kind: 'parameters',
      values: new Map(Object.entries(values).map(([k, v]) => [`parameters.${k}`, v as Value])),
      owner: this.describe(el),
      // pipeline values are not visible inside orbs
      ...(el.ns.label === 'config' ? { pipeline: this.pipelinePass.values } : {}),
    };
  }

  /** Expands a job with its arguments into a processed 2.0 job; undefined when it has errors. */
  expandJob(
    el: Element,
    args: MapValue,
    preSteps: Value | undefined,
    postSteps: Value | undefined,
    where: unknown,
  ): MapValue | undefined {
    const ctx = this.ctx;
    const before = ctx.errors.length;
    if (!isMapValue(el.body)) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `${this.describe(el)} must be a map`, { container: where });
      return undefined;
    }
    for (const key of Object.keys(el.body)) {
      if (!JOB_KEYS.has(key)) {
        report(
          ctx,
          'TORUS_E_CONFIG_SHAPE',
          `${this.describe(el)}: extraneous key [${key}] is not permitted`,
          { container: el.body, key },
          `job keys are ${[...JOB_KEYS].join(', ')}`,
        );
      }
    }
    const decls = this.decls(el);
    const values = this.is21
      ? resolveArguments(ctx, decls, args, this.describe(el), { container: where })
      : {};
    for (const d of decls.values()) {
      // an executor passed as an argument names an executor of the caller (the config), not of the orb
      const v = values[d.name];
      if (d.type === 'executor' && d.name in args && v !== undefined && v !== null) {
        const ref: MapValue = typeof v === 'string' ? { name: v } : { ...(v as MapValue) };
        this.callerNamespaces.set(ref, this.root);
        values[d.name] = ref;
      }
    }
    const template: MapValue = {};
    for (const [k, v] of Object.entries(el.body))
      if (k !== 'parameters' && k !== 'description') template[k] = v;
    ctx.sourceMap.copy(el.body, template);
    let body = this.is21 ? (substitute(ctx, template, this.elementPass(el, values)) as MapValue) : template;
    if (!Array.isArray(body.steps) || body.steps.length === 0) {
      report(
        ctx,
        'TORUS_E_CONFIG_NO_STEPS',
        `${this.describe(el)} has no steps`,
        { container: el.body, key: 'steps' },
        'add steps: with at least one step',
      );
      return undefined;
    }
    if (body.executor !== undefined) {
      if (!this.is21) {
        report(ctx, 'TORUS_E_CONFIG_VERSION', `"executor" in ${this.describe(el)} needs version: 2.1`, {
          container: el.body,
          key: 'executor',
        });
        return undefined;
      }
      body = this.applyExecutor(el, body) ?? body;
      delete body.executor;
    }
    const steps: Value[] = [];
    if (preSteps !== undefined) steps.push(...this.expandSteps(this.root, preSteps, 0, []));
    steps.push(...this.expandSteps(el.ns, body.steps ?? null, 0, []));
    if (postSteps !== undefined) steps.push(...this.expandSteps(this.root, postSteps, 0, []));
    const out: MapValue = { ...body, steps };
    ctx.sourceMap.copy(body, out);
    if (ctx.errors.length > before) return undefined;
    return this.is21 ? (unescapeReferences(out) as MapValue) : out;
  }

  private applyExecutor(jobEl: Element, job: MapValue): MapValue | undefined {
    const ctx = this.ctx;
    const ref = job.executor ?? null;
    let name: string;
    let args: MapValue = {};
    if (typeof ref === 'string') name = ref;
    else if (isMapValue(ref) && typeof ref.name === 'string') {
      name = ref.name;
      args = { ...ref };
      delete args.name;
      ctx.sourceMap.copy(ref, args);
    } else {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `executor of ${this.describe(jobEl)} must be a name or {name: …}`, {
        container: job,
        key: 'executor',
      });
      return undefined;
    }
    const scope = (isMapValue(ref) && this.callerNamespaces.get(ref)) || jobEl.ns;
    const ex = this.lookup(scope, 'executors', name, { container: job, key: 'executor' });
    if (!ex) return undefined;
    if (!isMapValue(ex.body)) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `${this.describe(ex)} must be a map`, {
        container: job,
        key: 'executor',
      });
      return undefined;
    }
    const values = resolveArguments(ctx, this.decls(ex), args, this.describe(ex), {
      container: job,
      key: 'executor',
    });
    const template: MapValue = {};
    for (const [k, v] of Object.entries(ex.body))
      if (k !== 'parameters' && k !== 'description') template[k] = v;
    ctx.sourceMap.copy(ex.body, template);
    const exec = substitute(ctx, template, this.elementPass(ex, values)) as MapValue;
    const out: MapValue = {};
    const jobHasKind = EXECUTOR_KINDS.some((k) => job[k] !== undefined);
    for (const [k, v] of Object.entries(exec)) {
      if ((EXECUTOR_KINDS as readonly string[]).includes(k) && jobHasKind) continue;
      if (k === 'environment') continue;
      out[k] = v;
    }
    for (const [k, v] of Object.entries(job)) if (k !== 'environment') out[k] = v;
    if (isMapValue(exec.environment) || isMapValue(job.environment)) {
      out.environment = {
        ...(isMapValue(exec.environment) ? exec.environment : {}),
        ...(isMapValue(job.environment) ? job.environment : {}),
      };
    } else if (job.environment !== undefined) out.environment = job.environment;
    else if (exec.environment !== undefined) out.environment = exec.environment;
    ctx.sourceMap.copy(job, out);
    return out;
  }

  /** Expands commands, `when`/`unless` and `steps` splices into built-in steps. */
  private expandSteps(ns: Namespace, steps: Value, depth: number, stack: string[]): Value[] {
    const ctx = this.ctx;
    if (steps === null) return [];
    if (!Array.isArray(steps)) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', 'steps must be a list', { container: steps });
      return [];
    }
    const out: Value[] = [];
    steps.forEach((step, i) => {
      const where = { container: steps, key: i };
      let name: string;
      let args: Value = null;
      if (Array.isArray(step) && this.is21) {
        // `- << parameters.steps >>` leaves a list inside the list: CircleCI splices it
        out.push(...this.expandSteps(ns, step, depth, stack));
        return;
      }
      if (typeof step === 'string') name = step;
      else if (isMapValue(step) && Object.keys(step).length >= 1) {
        name = Object.keys(step)[0]!;
        args = step[name] ?? null;
        if (Object.keys(step).length > 1) {
          report(
            ctx,
            'TORUS_E_CONFIG_SHAPE',
            `a step is a map with one key; this one has ${Object.keys(step).join(', ')}`,
            where,
            'indent the step arguments under the step name',
          );
          return;
        }
      } else {
        report(ctx, 'TORUS_E_CONFIG_SHAPE', `step ${i + 1} must be a step name or a map with one key`, where);
        return;
      }
      if (!this.is21) {
        if (!BUILTIN_STEPS.has(name)) {
          report(
            ctx,
            'TORUS_E_CONFIG_UNKNOWN_COMMAND',
            `step "${name}" is not a built-in step`,
            where,
            'commands need version: 2.1; built-in steps are ' + [...BUILTIN_STEPS].join(', '),
          );
          return;
        }
        out.push(step);
        return;
      }
      if ((name === 'when' || name === 'unless') && isMapValue(args)) {
        if (!('condition' in args)) {
          report(ctx, 'TORUS_E_CONFIG_LOGIC', `step "${name}" needs condition:`, where);
          return;
        }
        const cond = evaluateLogic(ctx, args.condition ?? null, { container: args, key: 'condition' });
        if (cond === (name === 'when')) out.push(...this.expandSteps(ns, args.steps ?? null, depth, stack));
        return;
      }
      if (name === 'steps') {
        out.push(...this.expandSteps(ns, args, depth, stack));
        return;
      }
      const isCommand = ns.commands.has(name) || name.includes('/');
      if (!isCommand && BUILTIN_STEPS.has(name)) {
        out.push(step);
        return;
      }
      const cmd = this.lookup(ns, 'commands', name, where);
      if (!cmd) return;
      const key = `${cmd.ns.label}/${cmd.name}`;
      if (stack.includes(key) || depth >= MAX_COMMAND_DEPTH) {
        report(
          ctx,
          'TORUS_E_CONFIG_RECURSION',
          stack.includes(key)
            ? `command ${cmd.name} invokes itself (${[...stack, key].map((s) => s.replace(/^config\//, '')).join(' → ')})`
            : `commands nested more than ${MAX_COMMAND_DEPTH} deep`,
          where,
        );
        return;
      }
      if (!isMapValue(cmd.body) || !Array.isArray(cmd.body.steps)) {
        report(ctx, 'TORUS_E_CONFIG_SHAPE', `${this.describe(cmd)} needs steps:`, where);
        return;
      }
      if (args !== null && !isMapValue(args)) {
        report(ctx, 'TORUS_E_CONFIG_SHAPE', `arguments of ${this.describe(cmd)} must be a map`, where);
        return;
      }
      const values = resolveArguments(ctx, this.decls(cmd), args ?? {}, this.describe(cmd), where);
      const body = substitute(ctx, cmd.body.steps, this.elementPass(cmd, values), cmd.body, 'steps');
      out.push(...this.expandSteps(cmd.ns, body, depth + 1, [...stack, key]));
    });
    ctx.sourceMap.copy(steps, out);
    return out;
  }

  /** Stores a processed job under a key: its own name if identical, else the invocation name (suffixed on clash). */
  private registerJob(preferred: string, raw: MapValue, definition: string): string {
    const json = JSON.stringify(raw);
    const own = this.processedJobs.get(definition);
    if (own && own.json === json) return definition;
    for (let n = 1; ; n++) {
      const key = n === 1 ? preferred : `${preferred}-${n}`;
      const existing = this.processedJobs.get(key);
      if (!existing) {
        this.processedJobs.set(key, { raw, json, compiled: normalizeJob(this.ctx, raw, key) });
        return key;
      }
      if (existing.json === json) return key;
    }
  }

  // ---- workflows ----

  private compileWorkflows(): { compiled: CompiledWorkflow; yaml: MapValue }[] {
    const ctx = this.ctx;
    const raw = this.config.workflows;
    const out: { compiled: CompiledWorkflow; yaml: MapValue }[] = [];
    if (raw === undefined || raw === null) {
      // CircleCI runs the job named `build` when a config has no workflows
      if (this.root.jobs.has('build')) {
        const implicit: MapValue = { jobs: ['build'] };
        ctx.sourceMap.copy(this.config, implicit);
        const w = this.compileWorkflow('workflow', implicit);
        if (w) out.push(w);
      }
      return out;
    }
    if (!isMapValue(raw)) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', 'workflows must be a map', {
        container: this.config,
        key: 'workflows',
      });
      return out;
    }
    for (const [name, wf] of Object.entries(raw)) {
      if (name === 'version') continue;
      if (!isMapValue(wf)) {
        report(ctx, 'TORUS_E_CONFIG_SHAPE', `workflow ${name} must be a map with jobs:`, {
          container: raw,
          key: name,
        });
        continue;
      }
      if (this.is21 && (wf.when !== undefined || wf.unless !== undefined)) {
        const key = wf.when !== undefined ? 'when' : 'unless';
        const cond = this.evaluateWorkflowCondition(wf[key] ?? null, { container: wf, key });
        if (cond !== (key === 'when')) continue;
      }
      const w = this.compileWorkflow(name, wf);
      if (w) out.push(w);
    }
    return out;
  }

  /** Workflow `when`/`unless`: a logic statement, or a bare expression string over pipeline values. */
  private evaluateWorkflowCondition(cond: Value, where: { container: unknown; key?: string }): boolean {
    if (typeof cond === 'string' && looksLikeExpression(cond, 'pipeline')) {
      try {
        return truthy(evaluateExpression(cond, (name) => this.pipelineValue(name)));
      } catch (err) {
        if (!(err instanceof ExpressionError)) throw err;
        report(this.ctx, 'TORUS_E_CONFIG_EXPRESSION', `in ${cond}: ${err.message}`, where);
        return false;
      }
    }
    return evaluateLogic(this.ctx, cond, where);
  }

  private pipelineValue(name: string): Value {
    const values = this.pipelinePass.values;
    if (values.has(name)) return values.get(name) ?? null;
    if (isKnownPipelineValue(name)) return null;
    throw new ExpressionError(`unknown variable ${name}`);
  }

  /**
   * `filters:` as a map, or (newer CircleCI) as an expression over pipeline values, which is
   * decided now: false becomes a filter no branch or tag matches, so the job is filtered out.
   */
  private readJobFilters(invocation: MapValue): WorkflowJob['filters'] {
    const f = invocation.filters;
    if ((typeof f === 'string' || typeof f === 'boolean') && this.is21) {
      const pass = this.evaluateWorkflowCondition(f, { container: invocation, key: 'filters' });
      return pass ? {} : { branches: { only: [] } };
    }
    if (f !== undefined && f !== null && !isMapValue(f)) {
      report(this.ctx, 'TORUS_E_CONFIG_SHAPE', 'filters must be a map of branches/tags, or an expression', {
        container: invocation,
        key: 'filters',
      });
    }
    return normalizeFilters(f);
  }

  private compileWorkflow(
    name: string,
    wf: MapValue,
  ): { compiled: CompiledWorkflow; yaml: MapValue } | undefined {
    const ctx = this.ctx;
    const list = wf.jobs;
    if (!Array.isArray(list)) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `workflow ${name} needs a jobs: list`, {
        container: wf,
        key: 'jobs',
      });
      return undefined;
    }
    interface Instance {
      name: string;
      /** names that `requires` may use for this instance (matrix alias, pre-suffix name) */
      aliases: string[];
      job?: string;
      type: WorkflowJob['type'];
      requiresRaw: Value;
      requiresWhere: unknown;
      filters: WorkflowJob['filters'];
      context: string[];
      serialGroup?: string;
    }
    const instances: Instance[] = [];
    list.forEach((entry, i) => {
      const where = { container: list, key: i };
      let jobName: string;
      let inv: MapValue;
      if (typeof entry === 'string') {
        jobName = entry;
        inv = {};
      } else if (isMapValue(entry) && Object.keys(entry).length === 1) {
        jobName = Object.keys(entry)[0]!;
        const v = entry[jobName] ?? null;
        if (v !== null && !isMapValue(v)) {
          report(
            ctx,
            'TORUS_E_CONFIG_SHAPE',
            `the invocation of ${jobName} in workflow ${name} must be a map`,
            where,
          );
          return;
        }
        inv = v ?? {};
      } else {
        report(
          ctx,
          'TORUS_E_CONFIG_SHAPE',
          `job ${i + 1} of workflow ${name} must be a job name or a map with one key`,
          where,
        );
        return;
      }
      const invWhere = typeof entry === 'string' ? where : { container: inv };
      const combos =
        this.is21 && inv.matrix !== undefined
          ? this.expandMatrix(jobName, inv, name)
          : [{ values: {}, suffix: '' }];
      const alias =
        isMapValue(inv.matrix) && typeof inv.matrix.alias === 'string' ? inv.matrix.alias : jobName;
      for (const combo of combos) {
        let invocation = inv;
        if (inv.matrix !== undefined) {
          const copy: MapValue = { ...inv };
          delete copy.matrix;
          ctx.sourceMap.copy(inv, copy);
          const pass: SubstitutionPass = {
            kind: 'matrix',
            values: new Map(Object.entries(combo.values).map(([k, v]) => [`matrix.${k}`, v])),
            owner: `the matrix of ${jobName}`,
          };
          invocation = substitute(ctx, copy, pass) as MapValue;
        }
        // a job defined with `type: no-op` / `type: approval` needs no steps and runs as that type
        const defined = this.root.jobs.get(jobName)?.body;
        const type =
          invocation.type ??
          (isMapValue(defined) && typeof defined.type === 'string' ? defined.type : 'build');
        if (type !== 'build' && type !== 'approval' && type !== 'no-op') {
          report(
            ctx,
            'TORUS_E_CONFIG_UNSUPPORTED',
            `job type ${JSON.stringify(type)} of ${jobName} in workflow ${name} is not supported (use build, approval or no-op)`,
            {
              container: invocation,
              key: 'type',
            },
          );
          continue;
        }
        const finalName =
          typeof invocation.name === 'string' && invocation.name !== ''
            ? invocation.name
            : `${jobName}${combo.suffix}`;
        const inst: Instance = {
          name: finalName,
          aliases: inv.matrix !== undefined ? [alias] : [],
          type,
          requiresRaw: invocation.requires ?? null,
          requiresWhere: invocation,
          filters: this.readJobFilters(invocation),
          context:
            invocation.context === undefined || invocation.context === null
              ? []
              : (Array.isArray(invocation.context) ? invocation.context : [invocation.context]).map(String),
        };
        if (invocation['serial-group'] !== undefined) inst.serialGroup = String(invocation['serial-group']);
        if (type === 'build') {
          // `override-with: orb/job` swaps in the orb's job when the orb has it; else the local job stays
          const override =
            typeof invocation['override-with'] === 'string'
              ? this.lookup(this.root, 'jobs', invocation['override-with'], invWhere, true)
              : undefined;
          const el = override ?? this.lookup(this.root, 'jobs', jobName, invWhere);
          // a job that fails still joins the workflow, so `requires` on it do not cascade into more errors
          if (!el) {
            instances.push(inst);
            continue;
          }
          const args: MapValue = {};
          for (const [k, v] of Object.entries(invocation)) if (!INVOCATION_KEYS.has(k)) args[k] = v;
          for (const [k, v] of Object.entries(combo.values)) args[k] = v;
          ctx.sourceMap.copy(invocation, args);
          if (!this.is21 && Object.keys(args).length > 0) {
            report(
              ctx,
              'TORUS_E_CONFIG_VERSION',
              `job arguments (${Object.keys(args).join(', ')}) for ${jobName} need version: 2.1`,
              invWhere,
            );
            continue;
          }
          const raw = this.expandJob(
            el,
            args,
            this.is21 ? invocation['pre-steps'] : undefined,
            this.is21 ? invocation['post-steps'] : undefined,
            invocation,
          );
          if (raw) inst.job = this.registerJob(finalName, raw, el.name);
        }
        instances.push(inst);
      }
    });
    // Repeated names get -1, -2, … (CircleCI: "numbers are appended to your job name").
    const counts = new Map<string, number>();
    for (const inst of instances) counts.set(inst.name, (counts.get(inst.name) ?? 0) + 1);
    const seen = new Map<string, number>();
    for (const inst of instances) {
      if ((counts.get(inst.name) ?? 0) > 1) {
        const n = (seen.get(inst.name) ?? 0) + 1;
        seen.set(inst.name, n);
        inst.aliases.push(inst.name);
        inst.name = `${inst.name}-${n}`;
      }
    }
    const byName = new Map<string, string[]>();
    for (const inst of instances) {
      for (const n of [inst.name, ...inst.aliases]) byName.set(n, [...(byName.get(n) ?? []), inst.name]);
    }
    const jobs: WorkflowJob[] = [];
    const yamlJobs: Value[] = [];
    for (const inst of instances) {
      const requires = this.resolveRequires(inst.requiresRaw, inst.requiresWhere, byName, inst.name, name);
      const wj: WorkflowJob = {
        name: inst.name,
        type: inst.type,
        requires,
        filters: inst.filters,
        context: inst.context,
      };
      if (inst.job !== undefined) wj.job = inst.job;
      if (inst.serialGroup !== undefined) wj.serialGroup = inst.serialGroup;
      jobs.push(wj);
      yamlJobs.push(workflowJobYaml(wj));
    }
    this.checkCycles(jobs, name, wf);
    const triggers = this.readTriggers(wf, name);
    const compiled: CompiledWorkflow = { name, jobs, triggers };
    if (typeof wf.max_auto_reruns === 'number') compiled.maxAutoReruns = wf.max_auto_reruns;
    const yaml: MapValue = {};
    if (triggers.length > 0)
      yaml.triggers = triggers.map((t) => ({
        schedule: { cron: t.cron, filters: filtersToYaml(t.filters) },
      }));
    if (compiled.maxAutoReruns !== undefined) yaml.max_auto_reruns = compiled.maxAutoReruns;
    yaml.jobs = yamlJobs;
    return { compiled, yaml };
  }

  private expandMatrix(
    jobName: string,
    inv: MapValue,
    workflow: string,
  ): { values: MapValue; suffix: string }[] {
    const ctx = this.ctx;
    const m = inv.matrix;
    if (!isMapValue(m) || !isMapValue(m.parameters)) {
      report(
        ctx,
        'TORUS_E_CONFIG_SHAPE',
        `matrix of ${jobName} in workflow ${workflow} needs parameters: {name: [values]}`,
        { container: inv, key: 'matrix' },
      );
      return [];
    }
    const params = m.parameters;
    const names = Object.keys(params).sort();
    for (const n of names) {
      if (!Array.isArray(params[n]) || (params[n] as Value[]).length === 0) {
        report(ctx, 'TORUS_E_CONFIG_SHAPE', `matrix parameter ${n} of ${jobName} must be a non-empty list`, {
          container: params,
          key: n,
        });
        return [];
      }
    }
    let combos: MapValue[] = [{}];
    for (const n of names) {
      const next: MapValue[] = [];
      for (const c of combos) for (const v of params[n] as Value[]) next.push({ ...c, [n]: v });
      combos = next;
    }
    const excludes = Array.isArray(m.exclude) ? m.exclude.filter(isMapValue) : [];
    const same = (a: Value | undefined, b: Value | undefined): boolean =>
      JSON.stringify(a) === JSON.stringify(b) || String(a) === String(b);
    combos = combos.filter(
      (c) => !excludes.some((ex) => Object.entries(ex).every(([k, v]) => same(c[k], v))),
    );
    // CircleCI names instances <job>-<values ordered by parameter name>
    return combos.map((values) => ({
      values,
      suffix: names.map((n) => `-${renderName(values[n] ?? null)}`).join(''),
    }));
  }

  private resolveRequires(
    raw: Value,
    where: unknown,
    byName: Map<string, string[]>,
    self: string,
    workflow: string,
  ): Requirement[] {
    const ctx = this.ctx;
    if (raw === null) return [];
    const items = Array.isArray(raw) ? raw : [raw];
    const out: Requirement[] = [];
    const add = (
      name: string,
      statuses: RequiredStatus[],
      loc: { container: unknown; key?: string | number },
    ): void => {
      const targets = byName.get(name);
      if (!targets) {
        report(
          ctx,
          'TORUS_E_CONFIG_UNKNOWN_REQUIREMENT',
          `job ${self} in workflow ${workflow} requires "${name}", which is not a job in this workflow`,
          loc,
          `jobs in ${workflow}: ${[...byName.keys()].slice(0, 20).join(', ')}`,
        );
        return;
      }
      for (const t of targets) {
        const existing = out.find((r) => r.name === t);
        if (existing) existing.statuses = [...new Set([...existing.statuses, ...statuses])];
        else out.push({ name: t, statuses: [...statuses] });
      }
    };
    items.forEach((item, i) => {
      const loc = { container: Array.isArray(raw) ? raw : where, key: Array.isArray(raw) ? i : 'requires' };
      if (typeof item === 'string') add(item, ['success'], loc);
      else if (isMapValue(item)) {
        for (const [name, st] of Object.entries(item)) {
          const list = Array.isArray(st) ? st : [st];
          const statuses: RequiredStatus[] = [];
          for (const s of list) {
            if (s === 'terminal') statuses.push(...ALL_STATUSES);
            else if (typeof s === 'string' && (ALL_STATUSES as string[]).includes(s))
              statuses.push(s as RequiredStatus);
            else
              report(
                ctx,
                'TORUS_E_CONFIG_SHAPE',
                `requires status ${JSON.stringify(s)} for ${name} is not one of ${[...ALL_STATUSES, 'terminal'].join(', ')}`,
                { container: item, key: name },
              );
          }
          add(name, [...new Set(statuses)], { container: item, key: name });
        }
      } else report(ctx, 'TORUS_E_CONFIG_SHAPE', `requires entries are job names or {job: status}`, loc);
    });
    return out;
  }

  private checkCycles(jobs: WorkflowJob[], workflow: string, wf: MapValue): void {
    const edges = new Map(jobs.map((j) => [j.name, j.requires.map((r) => r.name)]));
    const state = new Map<string, 1 | 2>();
    const path: string[] = [];
    const visit = (n: string): boolean => {
      if (state.get(n) === 2) return false;
      if (state.get(n) === 1) {
        const cycle = [...path.slice(path.indexOf(n)), n];
        report(
          this.ctx,
          'TORUS_E_CONFIG_REQUIRES_CYCLE',
          `workflow ${workflow} has a requires cycle: ${cycle.join(' → ')}`,
          { container: wf, key: 'jobs' },
        );
        return true;
      }
      state.set(n, 1);
      path.push(n);
      for (const m of edges.get(n) ?? []) if (visit(m)) return true;
      path.pop();
      state.set(n, 2);
      return false;
    };
    for (const j of jobs) if (visit(j.name)) return;
  }

  private readTriggers(wf: MapValue, workflow: string): ScheduleTrigger[] {
    const raw = wf.triggers;
    if (raw === undefined || raw === null) return [];
    if (!Array.isArray(raw)) {
      report(this.ctx, 'TORUS_E_CONFIG_SHAPE', `triggers of workflow ${workflow} must be a list`, {
        container: wf,
        key: 'triggers',
      });
      return [];
    }
    const out: ScheduleTrigger[] = [];
    raw.forEach((t, i) => {
      const s = isMapValue(t) ? t.schedule : undefined;
      if (!isMapValue(s) || typeof s.cron !== 'string') {
        report(
          this.ctx,
          'TORUS_E_CONFIG_SHAPE',
          `trigger ${i + 1} of workflow ${workflow} needs schedule: {cron: "…"}`,
          { container: raw, key: i },
        );
        return;
      }
      try {
        parseCron(s.cron);
      } catch (err) {
        if (!(err instanceof CronError)) throw err;
        report(
          this.ctx,
          'TORUS_E_CONFIG_CRON',
          `the cron of trigger ${i + 1} of workflow ${workflow} is not valid: ${err.message}`,
          { container: s, key: 'cron' },
          'write five fields in UTC: minute hour day-of-month month day-of-week, e.g. "0 2 * * 1-5"',
        );
        return;
      }
      out.push({ cron: s.cron, filters: normalizeFilters(s.filters) });
    });
    return out;
  }
}

function renderName(v: Value): string {
  return v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function workflowJobYaml(wj: WorkflowJob): Value {
  const key = wj.job ?? wj.name;
  const body: MapValue = {};
  if (wj.name !== key) body.name = wj.name;
  if (wj.type !== 'build') body.type = wj.type;
  if (wj.requires.length > 0) {
    body.requires = wj.requires.map((r) =>
      r.statuses.length === 1 && r.statuses[0] === 'success'
        ? r.name
        : { [r.name]: r.statuses.length === 1 ? r.statuses[0]! : r.statuses },
    );
  }
  if (wj.filters.branches || wj.filters.tags) body.filters = filtersToYaml(wj.filters);
  if (wj.context.length > 0) body.context = wj.context;
  if (wj.serialGroup !== undefined) body['serial-group'] = wj.serialGroup;
  return Object.keys(body).length === 0 ? key : { [key]: body };
}

function readVersion(ctx: Context, root: MapValue): '2' | '2.1' | undefined {
  const v = root.version;
  if (v === undefined || v === null) {
    report(
      ctx,
      'TORUS_E_CONFIG_VERSION',
      'the config has no version: key',
      { container: root },
      'add version: 2.1 at the top of the file',
    );
    return undefined;
  }
  const text = String(v);
  if (text === '2' || text === '2.0') return '2';
  if (text === '2.1') return '2.1';
  report(ctx, 'TORUS_E_CONFIG_VERSION', `version ${JSON.stringify(v)} is not supported (use 2, 2.0 or 2.1)`, {
    container: root,
    key: 'version',
  });
  return undefined;
}

/** Compiles a `.circleci/config.yml` text. Never throws. */
export async function compileConfig(source: string, opts: CompileOptions = {}): Promise<CompileResult> {
  const file = opts.filename ?? DEFAULT_FILE;
  try {
    if (typeof source !== 'string') {
      return {
        ok: false,
        errors: [configError('TORUS_E_CONFIG_YAML', 'config source must be text', file, undefined)],
      };
    }
    checkSource(source, file, opts.maxBytes);
    // The fast reader has no positions: a config it reads and that compiles cleanly is done; any
    // error is reported from a second compile of source.ts's reading, which locates it.
    // both compiles of one config ask the resolver once per orb reference
    if (opts.orbResolver) opts = { ...opts, orbResolver: rememberingResolver(opts.orbResolver) };
    const fast = opts.exactRead ? undefined : parseFast(source);
    if (fast !== undefined) {
      try {
        const result = await compileTree(fast, new SourceMap(), file, opts, true);
        if (result.ok) return result;
      } catch (err) {
        if (!(err instanceof StopAtFirstError)) throw err;
      }
    }
    const parsed = parseSource(source, file, opts.maxBytes, new SourceMap(), false, true);
    return await compileTree(parsed.root, parsed.sourceMap, file, opts);
  } catch (err) {
    if (err instanceof ConfigAbort) return { ok: false, errors: err.errors };
    if (err instanceof RangeError) {
      return {
        ok: false,
        errors: [
          configError(
            'TORUS_E_CONFIG_TOO_DEEP',
            `config is nested too deeply to compile (${err.message})`,
            file,
            undefined,
          ),
        ],
      };
    }
    return {
      ok: false,
      errors: [
        configError(
          'TORUS_E_CONFIG_INTERNAL',
          `internal compiler error: ${(err as Error)?.message ?? String(err)}`,
          file,
          undefined,
          'please report this with the config',
        ),
      ],
    };
  }
}

/** Thrown by the fast read's compile at its first error: the exact reading will report them all. */
class StopAtFirstError extends Error {}

function stoppingList(): ConfigError[] {
  const list: ConfigError[] = [];
  list.push = () => {
    throw new StopAtFirstError('a config error');
  };
  return list;
}

function rememberingResolver(inner: OrbResolver): OrbResolver {
  const answers = new Map<string, ReturnType<OrbResolver['resolve']>>();
  return {
    resolve(ref) {
      let answer = answers.get(ref);
      if (!answer) {
        answer = inner.resolve(ref);
        answers.set(ref, answer);
      }
      return answer;
    },
  };
}

/** Compiles a parsed config tree (from either reader); throws ConfigAbort like the readers. */
async function compileTree(
  root: Value,
  sourceMap: SourceMap,
  file: string,
  opts: CompileOptions,
  /** the fast read's compile: its errors carry no positions, so it stops at the first one */
  stopAtFirst = false,
): Promise<CompileResult> {
  const ctx: Context = { file, sourceMap, errors: stopAtFirst ? stoppingList() : [] };
  if (!isMapValue(root)) {
    report(
      ctx,
      'TORUS_E_CONFIG_SHAPE',
      root === null ? 'the config is empty' : 'the config must be a map at the top level',
      { line: 1, column: 1 },
    );
    return { ok: false, errors: ctx.errors };
  }
  const version = readVersion(ctx, root);
  if (!version) return { ok: false, errors: ctx.errors };
  // CircleCI's JSON schema (patched where CircleCI accepts more) describes 2.1 sources only. Its
  // findings count when the compiler's own rules, whose messages are CircleCI's, find nothing.
  // (checked after the compile, which leaves `root` as it was: its own errors come first)
  const compiler = new Compiler(ctx, root, version, opts);
  const result = await compiler.compile();
  if (!result || ctx.errors.length > 0) return { ok: false, errors: dedupe(ctx.errors) };
  if (version === '2.1') {
    const schemaErrors: ConfigError[] = stopAtFirst ? stoppingList() : [];
    validateSchema(root, { file, sourceMap, errors: schemaErrors });
    if (schemaErrors.length > 0) return { ok: false, errors: schemaErrors };
  }
  // written on first read (most callers want only the config); an enumerable getter, so spreads and
  // JSON see it as a plain property. `processed` is a fresh tree no other stage holds.
  const processed = result.processed;
  let processedYaml: string | undefined;
  return {
    ok: true,
    config: result.config,
    get processedYaml(): string {
      processedYaml ??= stringify(processed, {
        aliasDuplicateObjects: false,
        lineWidth: 0,
        version: '1.1',
      });
      return processedYaml;
    },
  };
}

function dedupe(errors: ConfigError[]): ConfigError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.code}|${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
