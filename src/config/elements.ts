// Elements and namespaces: the config and each orb are a Namespace of commands, executors and jobs,
// and of the orbs they import; names resolve lexically within the namespace that defines them.
import { ELEMENT_NAME, isMapValue, report, type Context, type ParameterDecl } from './params.js';
import type { MapValue, Value } from './source.js';

/** A reusable element (command, executor, job) and the namespace its names resolve in. */
export interface Element {
  kind: 'commands' | 'executors' | 'jobs';
  name: string;
  body: Value;
  ns: Namespace;
  decls?: Map<string, ParameterDecl>;
}

/** The config itself or one orb: its elements and the orbs it imports. */
export interface Namespace {
  label: string;
  commands: Map<string, Element>;
  executors: Map<string, Element>;
  jobs: Map<string, Element>;
  orbs: Map<string, Namespace>;
  /** orb aliases declared but not resolvable (reported where they are used) */
  unresolvedOrbs: Map<string, string>;
}

export function newNamespace(label: string): Namespace {
  return {
    label,
    commands: new Map(),
    executors: new Map(),
    jobs: new Map(),
    orbs: new Map(),
    unresolvedOrbs: new Map(),
  };
}

/** Registers the commands/executors/jobs of a config or orb body into a namespace. */
export function registerElements(ctx: Context, ns: Namespace, body: MapValue, checkNames: boolean): void {
  for (const kind of ['commands', 'executors', 'jobs'] as const) {
    const section = body[kind];
    if (section === undefined || section === null) continue;
    if (!isMapValue(section)) {
      report(ctx, 'TORUS_E_CONFIG_SHAPE', `${kind} must be a map of names to definitions`, {
        container: body,
        key: kind,
      });
      continue;
    }
    const lower = new Set<string>();
    for (const [name, def] of Object.entries(section)) {
      if (checkNames && !ELEMENT_NAME.test(name) && kind !== 'jobs') {
        report(
          ctx,
          'TORUS_E_CONFIG_INVALID_NAME',
          `${kind.slice(0, -1)} name "${name}" is invalid: names start with a letter and use letters, digits, "_" and "-"`,
          {
            container: section,
            key: name,
          },
        );
      }
      if (kind === 'jobs') {
        if (lower.has(name.toLowerCase())) {
          report(
            ctx,
            'TORUS_E_CONFIG_DUPLICATE_NAME',
            `job name "${name}" differs from another job only by case; job names are unique case-insensitively`,
            {
              container: section,
              key: name,
            },
          );
        }
        lower.add(name.toLowerCase());
      }
      ns[kind].set(name, { kind, name, body: def, ns });
    }
  }
}
