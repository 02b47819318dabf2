// Reading config text: size and nesting guards, YAML parsing (the `yaml` library, YAML 1.1 like
// CircleCI's SnakeYAML: merge keys, yes/no booleans), and conversion to plain JS values that remember
// where in the file each map key and list item came from, so later stages can report locations.
import {
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
  type Alias,
  type Document,
  type Node,
  type ScalarTag,
  type Tags,
} from 'yaml';
import { ConfigAbort, configError, type Position } from './errors.js';

/** Plain data as it comes out of YAML. */
export type Value = string | number | boolean | null | Value[] | { [key: string]: Value };
export type MapValue = { [key: string]: Value };

export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;
/** Deeper than any real config; YAML's own recursive composer overflows the stack near 1,500. */
export const MAX_NESTING_DEPTH = 200;
/** Nodes that alias expansion may create in total (a billion-laughs document creates billions). */
export const MAX_ALIAS_NODES = 100_000;

/**
 * Where a map or list came from, as character offsets (turned into line/column only when a location
 * is asked for, which is when an error is reported).
 */
interface Location {
  pos: number;
  lines: LineCounter;
  /** the file the value came from, when not the config itself (orb sources) */
  file: string | undefined;
  /** a map's keys and the offsets of their key nodes (parallel; the last entry of a name wins) */
  keyNames?: string[];
  keyOffsets?: number[];
  /** a list's item offsets */
  items?: number[];
}

/** Remembers the source position of maps and lists (and of their keys and items). */
export class SourceMap {
  private readonly locations = new WeakMap<object, Location>();
  /** maps of shared, immutable trees (cached orbs) consulted when this one has no entry */
  private readonly fallbacks = new Set<SourceMap>();

  set(value: object, loc: Location): void {
    this.locations.set(value, loc);
  }

  /** Also look locations up in `other` (the map of a cached orb tree this compile uses). */
  addFallback(other: SourceMap): void {
    if (other !== this) this.fallbacks.add(other);
  }

  private get(value: object): Location | undefined {
    const own = this.locations.get(value);
    if (own !== undefined || this.fallbacks.size === 0) return own;
    for (const f of this.fallbacks) {
      const loc = f.locations.get(value);
      if (loc !== undefined) return loc;
    }
    return undefined;
  }

  /** Carries the location of `from` over to `to` (a copy made by a later stage). */
  copy(from: unknown, to: unknown): void {
    if (from === to || !isObject(from) || !isObject(to)) return;
    const loc = this.get(from);
    if (loc && !this.locations.has(to)) this.locations.set(to, loc);
  }

  /** The position of a container, of one of its keys, or of one of its items. */
  at(container: unknown, keyOrIndex?: string | number): (Position & { file?: string }) | undefined {
    if (!isObject(container)) return undefined;
    const loc = this.get(container);
    if (!loc) return undefined;
    const lp = loc.lines.linePos(offsetOf(loc, keyOrIndex));
    const pos: Position & { file?: string } = { line: lp.line, column: lp.col };
    if (loc.file !== undefined) pos.file = loc.file;
    return pos;
  }

  /** The offset of a container, key or item, in the source its LineCounter counts (merge keys). */
  offsetAt(container: object, key: string): { offset: number; lines: LineCounter } | undefined {
    const loc = this.get(container);
    return loc ? { offset: offsetOf(loc, key), lines: loc.lines } : undefined;
  }
}

function offsetOf(loc: Location, keyOrIndex: string | number | undefined): number {
  if (typeof keyOrIndex === 'string' && loc.keyNames) {
    const i = loc.keyNames.lastIndexOf(keyOrIndex);
    if (i >= 0) return loc.keyOffsets![i]!;
  }
  if (typeof keyOrIndex === 'number') return loc.items?.[keyOrIndex] ?? loc.pos;
  return loc.pos;
}

function isObject(v: unknown): v is object {
  return typeof v === 'object' && v !== null;
}

/**
 * YAML 1.1 booleans as SnakeYAML (CircleCI's parser) reads them: yes/no/on/off/true/false in three
 * capitalisations, but not the single letters y/n that the `yaml` library's 1.1 schema also accepts.
 */
function snakeYamlBooleans(tags: Tags): Tags {
  const bool = (value: boolean, test: RegExp): ScalarTag => ({
    identify: (v: unknown) => v === value,
    default: true,
    tag: 'tag:yaml.org,2002:bool',
    test,
    resolve: () => value,
  });
  const rest = tags
    .filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:bool')
    .map(snakeYamlFloat);
  return [
    bool(true, /^(?:[Yy]es|YES|[Tt]rue|TRUE|[Oo]n|ON)$/),
    bool(false, /^(?:[Nn]o|NO|[Ff]alse|FALSE|[Oo]ff|OFF)$/),
    ...rest,
  ];
}

/**
 * SnakeYAML's 1.1 floats need a digit in the mantissa: `.`, `-.`, `e3` and `.e3` are strings there
 * (`persist_to_workspace: {root: .}` is common), but the `yaml` library's 1.1 patterns read them as NaN.
 */
function snakeYamlFloat(t: Tags[number]): Tags[number] {
  if (typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:float') return t;
  const scalar = t as ScalarTag;
  if (!(scalar.test instanceof RegExp) || scalar.test.test('.inf')) return t;
  const test = new RegExp(`(?=[-+]?(?:[0-9]|\\.[0-9]))${scalar.test.source}`, scalar.test.flags);
  return { ...scalar, test };
}

/** The `yaml` parse options the compiler reads configs with (the benchmark's baseline uses them too). */
export const CONFIG_YAML_OPTIONS = {
  version: '1.1',
  merge: true,
  uniqueKeys: true,
  prettyErrors: false,
  keepSourceTokens: false,
  customTags: snakeYamlBooleans,
} as const;

export interface ParsedSource {
  root: Value;
  sourceMap: SourceMap;
}

/**
 * Refuses nesting deeper than MAX_NESTING_DEPTH before the YAML parser sees it: the parser recurses
 * per level and would take seconds (or overflow the stack) on a hostile 10,000-level document.
 * Counts indentation levels of block lines plus open flow brackets, skipping block scalar text;
 * a bracket inside a quoted string still counts, which is harmless at this limit.
 */
function checkNestingDepth(source: string, file: string): void {
  const indents: number[] = [];
  let flowDepth = 0;
  let lineNo = 0;
  /** indentation of the line that opened a block scalar (`|`, `>-`, …), whose content is text */
  let blockScalarParent = -1;
  for (let start = 0; start <= source.length;) {
    const nl = source.indexOf('\n', start);
    const end = nl === -1 ? source.length : nl;
    const line = source.slice(start, end);
    start = end + 1;
    lineNo++;
    const trimmed = line.trimStart();
    const indent = line.length - trimmed.length;
    if (blockScalarParent >= 0) {
      if (trimmed === '' || indent > blockScalarParent) continue;
      blockScalarParent = -1;
    }
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (/(^|[:\s-])[|>][-+0-9]*\s*(#.*)?$/.test(trimmed)) blockScalarParent = indent;
    while (indents.length > 0 && indents[indents.length - 1]! > indent) indents.pop();
    if (indents.length === 0 || indents[indents.length - 1]! < indent) indents.push(indent);
    // compact sequences (`- - - x`) nest on one line
    const compact = trimmed.startsWith('-')
      ? (/^(?:-\s+)+/.exec(trimmed)?.[0].replace(/\s+/g, '').length ?? 0)
      : 0;
    // closing brackets outside any flow collection change nothing, so most lines need no scan
    if (flowDepth > 0 || trimmed.includes('[') || trimmed.includes('{')) {
      for (const ch of trimmed) {
        if (ch === '[' || ch === '{') flowDepth++;
        else if ((ch === ']' || ch === '}') && flowDepth > 0) flowDepth--;
      }
    }
    if (indents.length + compact + flowDepth > MAX_NESTING_DEPTH) {
      throw new ConfigAbort([
        configError(
          'TORUS_E_CONFIG_TOO_DEEP',
          `config is nested more than ${MAX_NESTING_DEPTH} levels deep`,
          file,
          { line: lineNo, column: indent + 1 },
          'flatten the structure; real configs are rarely more than 20 levels deep',
        ),
      ]);
    }
  }
}

/** The guards that run before either reader sees the text: size cap, then nesting depth. */
export function checkSource(source: string, file: string, maxBytes = DEFAULT_MAX_BYTES): void {
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > maxBytes) {
    throw new ConfigAbort([
      configError(
        'TORUS_E_CONFIG_TOO_LARGE',
        `config is ${bytes} bytes, more than the limit of ${maxBytes} bytes`,
        file,
        undefined,
        'split the configuration (dynamic config) or raise the limit',
      ),
    ]);
  }
  checkNestingDepth(source, file);
}

/** Parses config text into plain values with a source map, or throws ConfigAbort with located errors. */
export function parseSource(
  source: string,
  file: string,
  maxBytes = DEFAULT_MAX_BYTES,
  sourceMap = new SourceMap(),
  /** record `file` on every location (sources other than the config itself) */
  tagFile = false,
  /** checkSource already ran on this text */
  checked = false,
): ParsedSource {
  if (!checked) checkSource(source, file, maxBytes);
  const lineCounter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(source, { ...CONFIG_YAML_OPTIONS, lineCounter });
  } catch (err) {
    // The parser reports most problems as doc.errors; a throw is unexpected but must not escape.
    throw new ConfigAbort([
      configError('TORUS_E_CONFIG_YAML', `cannot parse YAML: ${(err as Error).message}`, file, undefined),
    ]);
  }
  if (doc.errors.length > 0) {
    throw new ConfigAbort(
      doc.errors.slice(0, 10).map((e) => {
        const lp = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        const pos = { line: lp.line, column: lp.col };
        const overflow = /call stack/i.test(e.message);
        const text = overflow
          ? 'config is nested too deeply'
          : e.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
        return configError(overflow ? 'TORUS_E_CONFIG_TOO_DEEP' : 'TORUS_E_CONFIG_YAML', text, file, pos);
      }),
    );
  }
  const converter = new Converter(doc, lineCounter, sourceMap, file, tagFile);
  const root = converter.convert(doc.contents as Node | null, 0);
  return { root, sourceMap };
}

class Converter {
  /** `file` when locations must name it (orb sources), else undefined */
  private readonly fileTag: string | undefined;
  private aliasNodes = 0;
  private expandingAlias = 0;
  /** each alias node's anchored node, found in one pass (Alias.resolve walks the document per call) */
  private aliasTargets: Map<object, Node> | undefined;

  private aliasTarget(alias: Alias): Node | undefined {
    if (!this.aliasTargets) {
      const targets = new Map<object, Node>();
      const anchors = new Map<string, Node>();
      // document order: an alias refers to the latest anchor of that name before it
      visit(this.doc, {
        Node(_key, node) {
          if (isAlias(node)) {
            const t = anchors.get(node.source);
            if (t) targets.set(node, t);
          } else if (node.anchor) anchors.set(node.anchor, node);
        },
      });
      this.aliasTargets = targets;
    }
    return this.aliasTargets.get(alias);
  }

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
    private readonly sourceMap: SourceMap,
    private readonly file: string,
    tagFile: boolean,
  ) {
    this.fileTag = tagFile ? file : undefined;
  }

  private offset(node: { range?: [number, number, number] | null } | null | undefined): number {
    return node?.range?.[0] ?? 0;
  }

  private position(node: { range?: [number, number, number] | null } | null | undefined): Position {
    const lp = this.lines.linePos(this.offset(node));
    return { line: lp.line, column: lp.col };
  }

  private count(node: unknown): void {
    if (this.expandingAlias > 0 && ++this.aliasNodes > MAX_ALIAS_NODES) {
      throw new ConfigAbort([
        configError(
          'TORUS_E_CONFIG_ALIAS_LIMIT',
          `YAML aliases expand to more than ${MAX_ALIAS_NODES} nodes; refusing (possible alias bomb)`,
          this.file,
          this.position(node as Node),
        ),
      ]);
    }
  }

  convert(node: Node | null | undefined, depth: number): Value {
    if (depth > MAX_NESTING_DEPTH) {
      throw new ConfigAbort([
        configError(
          'TORUS_E_CONFIG_TOO_DEEP',
          `config is nested more than ${MAX_NESTING_DEPTH} levels deep`,
          this.file,
          this.position(node),
        ),
      ]);
    }
    if (node === null || node === undefined) return null;
    this.count(node);
    if (isAlias(node)) {
      const target = this.aliasTarget(node);
      if (!target) {
        throw new ConfigAbort([
          configError('TORUS_E_CONFIG_YAML', `unknown alias *${node.source}`, this.file, this.position(node)),
        ]);
      }
      this.expandingAlias++;
      try {
        return this.convert(target as Node, depth + 1);
      } finally {
        this.expandingAlias--;
      }
    }
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || v === undefined) return null;
      if (typeof v === 'string' || typeof v === 'boolean') return v;
      if (typeof v === 'number') return v;
      if (typeof v === 'bigint') return Number(v);
      if (v instanceof Date) return node.source ?? v.toISOString();
      return String(v);
    }
    if (isSeq(node)) {
      const out: Value[] = [];
      const items: number[] = [];
      for (const item of node.items) {
        items.push(this.offset(item as Node));
        out.push(this.convert(item as Node, depth + 1));
      }
      this.sourceMap.set(out, { pos: this.offset(node), lines: this.lines, file: this.fileTag, items });
      return out;
    }
    if (isMap(node)) {
      const out: MapValue = {};
      const keyNames: string[] = [];
      const keyOffsets: number[] = [];
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyNode = pair.key as Node | null;
        if (
          isScalar(keyNode) &&
          (keyNode.source === '<<' || String(keyNode.value) === '<<') &&
          !keyNode.type?.startsWith('QUOTE')
        ) {
          // YAML 1.1 merge key: `<<: *a` or `<<: [*a, *b]`; explicit keys win, earlier sources win,
          // and merged keys take the place of the `<<` in the key order (as SnakeYAML and js-yaml do)
          const src = this.convert(pair.value as Node, depth + 1);
          const list = Array.isArray(src) ? src : [src];
          for (const m of list) {
            if (m && typeof m === 'object' && !Array.isArray(m)) this.mergeInto(out, m, keyNames, keyOffsets);
            else {
              throw new ConfigAbort([
                configError(
                  'TORUS_E_CONFIG_YAML',
                  'merge key `<<` needs a map or a list of maps',
                  this.file,
                  this.position(pair.value as Node),
                ),
              ]);
            }
          }
          continue;
        }
        const key = this.keyString(keyNode, depth);
        keyNames.push(key);
        keyOffsets.push(this.offset(keyNode));
        out[key] = this.convert(pair.value as Node, depth + 1);
      }
      this.sourceMap.set(out, {
        pos: this.offset(node),
        lines: this.lines,
        file: this.fileTag,
        keyNames,
        keyOffsets,
      });
      return out;
    }
    return null;
  }

  /** Adds the keys of a merged map that `out` has not got yet. */
  private mergeInto(out: MapValue, m: MapValue, keyNames: string[], keyOffsets: number[]): void {
    for (const [k, v] of Object.entries(m)) {
      if (Object.hasOwn(out, k)) continue;
      out[k] = v;
      // merged maps come from this document, so their offsets count in the same lines
      const p = this.sourceMap.offsetAt(m, k);
      if (p) {
        keyNames.push(k);
        keyOffsets.push(p.offset);
      }
    }
  }

  private keyString(keyNode: Node | null, depth: number): string {
    if (keyNode === null) return '';
    if (isScalar(keyNode)) {
      const v = keyNode.value;
      if (v === null || v === undefined) return '';
      // CircleCI reads `2:` as the key "2" and `true:` as "true"
      if (typeof v === 'string') return v;
      return keyNode.source ?? String(v);
    }
    return JSON.stringify(this.convert(keyNode, depth + 1));
  }
}
