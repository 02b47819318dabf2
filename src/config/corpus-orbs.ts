// An OrbResolver over the shared corpus (/work/shared/corpus/orbs): REFS.tsv says which references
// resolve to which saved folder; `src/` trees are packed with CircleCI's `orb pack` rules
// (interfaces §4), single-file `orb.yml` orbs are used as they are. For tests and demos.
import { fileURLToPath } from 'node:url';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { OrbResolver } from './model.js';
import { CONFIG_YAML_OPTIONS } from './source.js';

// shared/ sits beside the checkout (in CI too); TORUS_CORPUS_DIR points elsewhere.
export const CORPUS_DIR =
  process.env.TORUS_CORPUS_DIR ?? fileURLToPath(new URL('../../../shared/corpus', import.meta.url));

/** Directories `circleci orb pack` descends into; everything else under src/ is skipped. */
const PACKED_DIRS = new Set(['executors', 'jobs', 'commands', 'examples']);
/** Keys kept by the CLI's OrbSchema struct; unknown top-level keys are dropped. */
const ORB_KEYS = ['version', 'description', 'display', 'orbs', 'commands', 'executors', 'jobs', 'examples'];
const INCLUDE = /^<<\s*include\(([-\w/.]+)\)\s*>>$/;
const ANY_INCLUDE = /<<\s*include\(/;

type Plain = null | boolean | number | string | Plain[] | { [k: string]: Plain };

export class OrbPackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OrbPackError';
  }
}

function readYaml(file: string): Plain {
  // the compiler's own YAML 1.1 reading (SnakeYAML's booleans and floats: `default: .` stays a string)
  return parse(readFileSync(file, 'utf8'), { ...CONFIG_YAML_OPTIONS, uniqueKeys: false }) as Plain;
}

function isPlainMap(v: Plain | undefined): v is { [k: string]: Plain } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Builds the tree map of one directory (CircleCI's filetree.NewTree with the orb whitelist). */
function packTree(dir: string): { [k: string]: Plain } {
  const out: { [k: string]: Plain } = {};
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (!PACKED_DIRS.has(name)) continue;
      out[name] = { ...(isPlainMap(out[name]) ? out[name] : {}), ...packTree(path) };
      continue;
    }
    const ext = extname(name);
    if (ext !== '.yml' && ext !== '.yaml') continue;
    const content = readYaml(path);
    if (/^@.*\.(yml|yaml)$/.test(name)) {
      if (!isPlainMap(content)) throw new OrbPackError(`${path} must be a map`);
      Object.assign(out, content);
      continue;
    }
    if (!isPlainMap(content)) throw new OrbPackError(`${path} must be a map`);
    out[basename(name, ext)] = content;
  }
  return out;
}

/** Replaces `<<include(file)>>` scalars with the file's text, escaping `<<` inside it. */
function inlineIncludes(value: Plain, root: string): Plain {
  if (typeof value === 'string') {
    const m = INCLUDE.exec(value.trim());
    if (m) {
      const file = join(root, m[1]!);
      if (!existsSync(file)) throw new OrbPackError(`include file ${m[1]} not found`);
      return readFileSync(file, 'utf8').replace(/<</g, '\\<<');
    }
    if (ANY_INCLUDE.test(value))
      throw new OrbPackError(`include statements must be the entire value: ${value.slice(0, 80)}`);
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => inlineIncludes(v, root));
  if (isPlainMap(value)) {
    const out: { [k: string]: Plain } = {};
    for (const [k, v] of Object.entries(value)) out[k] = inlineIncludes(v, root);
    return out;
  }
  return value;
}

/** Packs an orb `src/` directory into the single YAML document `circleci orb pack` prints. */
export function packOrb(srcDir: string): string {
  if (!existsSync(join(srcDir, '@orb.yml')))
    throw new OrbPackError('@orb.yml file not found, are you sure this is the Orb root?');
  const tree = packTree(srcDir);
  const orb: { [k: string]: Plain } = {};
  for (const key of ORB_KEYS) {
    const v = tree[key];
    if (v === undefined) continue;
    orb[key] = key === 'jobs' || key === 'commands' || key === 'executors' ? inlineIncludes(v, srcDir) : v;
  }
  return stringify(orb, { version: '1.1', lineWidth: 0, aliasDuplicateObjects: false });
}

interface RefRow {
  version: string;
  savedAs: string;
}

function readRefs(orbsDir: string): Map<string, RefRow> {
  const refs = new Map<string, RefRow>();
  const lines = readFileSync(join(orbsDir, 'REFS.tsv'), 'utf8').trim().split('\n').slice(1);
  for (const line of lines) {
    const [ref, , , version, savedAs, status] = line.split('\t');
    if (ref && version && savedAs && savedAs !== '-' && status?.startsWith('saved'))
      refs.set(ref, { version, savedAs });
  }
  return refs;
}

/** Resolves `ns/orb@version` to the corpus orb REFS.tsv names for it; null for unsaved references. */
export function corpusOrbResolver(corpusDir = CORPUS_DIR): OrbResolver {
  const orbsDir = join(corpusDir, 'orbs');
  const refs = readRefs(orbsDir);
  const packed = new Map<string, string>();
  return {
    resolve(ref: string): Promise<{ version: string; source: string } | null> {
      const row = refs.get(ref);
      if (!row) return Promise.resolve(null);
      let source = packed.get(row.savedAs);
      if (source === undefined) {
        const dir = join(orbsDir, row.savedAs);
        source = existsSync(join(dir, 'orb.yml'))
          ? readFileSync(join(dir, 'orb.yml'), 'utf8')
          : packOrb(join(dir, 'src'));
        packed.set(row.savedAs, source);
      }
      return Promise.resolve({ version: row.version, source });
    },
  };
}

/** Whether every `alias=ref` of a config's orbs resolves in the corpus. */
export function corpusResolvesAll(orbRefs: string[], corpusDir = CORPUS_DIR): boolean {
  const refs = readRefs(join(corpusDir, 'orbs'));
  return orbRefs.every((r) => refs.has(r.slice(r.indexOf('=') + 1)));
}
