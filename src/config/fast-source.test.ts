// The fast reader must never disagree with source.ts: whenever it returns a value, the exact reader
// reads the same text without error and to an equal value. Checked on every corpus config and orb
// file, on YAML written to hit the corners where two parsers differ, and on mutated corpus texts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CORPUS_DIR } from './corpus-orbs.js';
import { compileConfig } from './index.js';
import { parseFast } from './fast-source.js';
import { parseSource } from './source.js';

function exactRead(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: parseSource(text, 'x.yml').root };
  } catch {
    return { ok: false };
  }
}

/** parseFast answers only what parseSource answers; returns whether the fast reader took the text */
function agree(text: string): boolean {
  const fast = parseFast(text);
  if (fast === undefined) return false;
  const exact = exactRead(text);
  expect(exact.ok, `the exact reader refuses what the fast one read:\n${text}`).toBe(true);
  if (exact.ok) expect(fast, text).toEqual(exact.value);
  return true;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(entry.name)) out.push(p);
  }
  return out;
}

const corpusFiles = [...yamlFiles(join(CORPUS_DIR, 'configs')), ...yamlFiles(join(CORPUS_DIR, 'orbs'))];

describe('fast reader', () => {
  it('reads every corpus config and orb file as the exact reader does', () => {
    let taken = 0;
    for (const file of corpusFiles) if (agree(readFileSync(file, 'utf8'))) taken++;
    // the fast path must carry the corpus, or it is no fast path: only texts with YAML errors
    // or explicit tags may fall back
    expect(taken).toBeGreaterThan(corpusFiles.length * 0.95);
  });

  it('agrees on the corners of YAML 1.1 as CircleCI reads it', () => {
    const cases = [
      'a: yes\nb: No\nc: ON\nd: off\ne: y\nf: n\ng: TRUE\nh: tRue',
      'a: ~\nb: null\nc: NULL\nd:\ne: Null\nf: nULL',
      'a: 010\nb: 0x1F\nc: 0b101\nd: 1_000\ne: +12\nf: -0\ng: 1:30\nh: 190:20:30.15',
      'a: 1.5\nb: .inf\nc: -.Inf\nd: .NaN\ne: 1e3\nf: 6.8523015e+5\ng: 1.\nh: .5',
      'a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\nc: 2001-12-14 21:59:43.10 -5',
      '2: two\ntrue: t\nyes: y\n1.0: f\n~: n\n"3": q\n0x10: h',
      'base: &b {x: 1, y: [1, 2]}\nm:\n  <<: *b\n  y: 3\nn:\n  <<: [*b, {z: 4}]\n  x: 0',
      'a: &a [1, 2]\nb: *a\nc: &a [3]\nd: *a',
      'a: |\n  one\n  two\n\nb: >\n  folded\n  text\n\n  para\nc: |-\n  kept\nd: |+\n  keep\n\ne: >2\n   indented\n',
      "a: \"esc \\t \\u00e9 \\x41 \\\\ \\\"\"\nb: 'it''s'\nc: plain # comment\nd: multi\n  line plain",
      '---\na: 1\n...\n',
      '%YAML 1.1\n---\na: 1',
      '\ufeffa: 1',
      'a: [1, {b: 2}, "c", d e]\nf: {g: , h: i}',
      'a: !!str 3\nb: !!int "4"',
      'a: 1\na: 2',
      'a:\n\tb: 1',
      '- a\n- - b\n  - c\n- d: e\n  f: g',
      'a: b: c',
      'key with spaces: v\n"quoted key": w\n? complex\n: x',
      '? [a, b]\n: c',
      'a: *unknown',
      'a: @reserved',
      'a: `tick',
      'a: "unterminated',
      'a: 12345678901234567890',
      'a: 0o17\nb: 0777\nc: 08',
      '<<: {a: 1}\nb: 2',
      'a:\n  <<: 1',
      'a: &x\n  b: *x',
    ];
    let taken = 0;
    for (const text of cases) if (agree(text)) taken++;
    expect(taken).toBeGreaterThan(cases.length / 2);
  });

  it('agrees on mutated corpus configs', () => {
    const texts = corpusFiles.slice(0, 60).map((f) => readFileSync(f, 'utf8'));
    const snippets = [
      ':',
      '-',
      ' ',
      '\n',
      '  ',
      '&a ',
      '*a',
      '<<: ',
      '"',
      "'",
      '|',
      '>',
      '#',
      '{',
      '[',
      '!!',
      '~',
      'yes',
      '\t',
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...texts),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 8 }), fc.constantFrom(...snippets)), {
          minLength: 1,
          maxLength: 4,
        }),
        (text, edits) => {
          let t = text;
          for (const [at, del, ins] of edits) {
            const i = at % (t.length + 1);
            t = t.slice(0, i) + ins + t.slice(i + del);
          }
          agree(t);
        },
      ),
      { numRuns: 300, seed: 4242 },
    );
  });

  it('leaves an alias bomb to the exact reader, which refuses it', async () => {
    let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i < 9; i++)
      text += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]\n`;
    expect(parseFast(text)).toBeUndefined();
    const r = await compileConfig(`version: 2.1\n${text}`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]!.code).toBe('TORUS_E_CONFIG_ALIAS_LIMIT');
  });

  it('gives each use of an alias its own copy', () => {
    const v = parseFast('a: &x {b: [1]}\nc: *x\n') as { a: { b: number[] }; c: { b: number[] } };
    expect(v.c).toEqual(v.a);
    expect(v.c).not.toBe(v.a);
    expect(v.c.b).not.toBe(v.a.b);
  });

  it('compiles every corpus config to what the exact reader gives, errors included', async () => {
    for (const file of yamlFiles(join(CORPUS_DIR, 'configs'))) {
      const text = readFileSync(file, 'utf8');
      const [fast, exact] = await Promise.all([
        compileConfig(text),
        compileConfig(text, { exactRead: true }),
      ]);
      expect(fast.ok, file).toBe(exact.ok);
      if (fast.ok && exact.ok) {
        expect(fast.processedYaml, file).toBe(exact.processedYaml);
        expect(fast.config, file).toEqual(exact.config);
      } else if (!fast.ok && !exact.ok) {
        expect(fast.errors, file).toEqual(exact.errors);
      }
    }
  });
});
