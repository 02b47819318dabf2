// The compiler's resource guards: hostile configs are refused quickly with a typed error, never a
// crash, hang or stack overflow.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { compileConfig } from './index.js';

async function errorCodes(source: string, opts = {}): Promise<string[]> {
  const r = await compileConfig(source, opts);
  expect(r.ok).toBe(false);
  return r.ok ? [] : r.errors.map((e) => e.code);
}

describe('guards', () => {
  it('refuses a source larger than maxBytes before parsing it', async () => {
    // invalid YAML on purpose: a size refusal proves it was never parsed
    const big = `version: 2.1\n${'x: [\n'.repeat(300)}`;
    expect(await errorCodes(big, { maxBytes: 1000 })).toEqual(['TORUS_E_CONFIG_TOO_LARGE']);
    const r = await compileConfig('#'.repeat(4 * 1024 * 1024 + 1));
    expect(r.ok === false && r.errors[0]!.code).toBe('TORUS_E_CONFIG_TOO_LARGE');
    expect(r.ok === false && r.errors[0]!.message).toMatch(/more than the limit of 4194304 bytes/);
  });

  it('refuses a YAML alias bomb quickly', async () => {
    const lines = ['version: 2.1', 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i <= 9; i++)
      lines.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(',')}]`);
    lines.push('jobs: *a9');
    const started = Date.now();
    expect(await errorCodes(lines.join('\n'))).toEqual(['TORUS_E_CONFIG_ALIAS_LIMIT']);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('refuses 10,000 levels of nesting with a typed error', async () => {
    const flow = `version: 2.1\njobs: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`;
    expect(await errorCodes(flow)).toEqual(['TORUS_E_CONFIG_TOO_DEEP']);
    const block = `version: 2.1\n${Array.from({ length: 10_000 }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n')}\n`;
    expect(await errorCodes(block, { maxBytes: 100 * 1024 * 1024 })).toEqual(['TORUS_E_CONFIG_TOO_DEEP']);
    const seq = `version: 2.1\njobs:\n  ${'- '.repeat(10_000)}x\n`;
    expect(await errorCodes(seq)).toEqual(['TORUS_E_CONFIG_TOO_DEEP']);
  });

  it('does not mistake brackets or indentation inside scripts for nesting', async () => {
    const script = Array.from({ length: 300 }, (_, i) => `${' '.repeat(10 + (i % 40))}echo "[{" ${i}`).join(
      '\n',
    );
    const r = await compileConfig(
      `version: 2.1\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps:\n      - run: |\n${script}\n`,
    );
    expect(r.ok).toBe(true);
  });

  it('refuses a command that invokes itself, directly or through another', async () => {
    const direct = `version: 2.1\ncommands:\n  loop:\n    steps: [loop]\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [loop]\n`;
    const codes = await errorCodes(direct);
    expect(codes).toContain('TORUS_E_CONFIG_RECURSION');
    const r = await compileConfig(
      `version: 2.1\ncommands:\n  ping:\n    steps: [pong]\n  pong:\n    steps: [ping]\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps: [ping]\n`,
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]!.message).toMatch(/ping → pong → ping/);
  });

  it('never throws, whatever it is given', async () => {
    const inputs: unknown[] = [
      null,
      42,
      '',
      '\u0000\u0001binary\uffff',
      '- just\n- a list',
      'version: 2.1\njobs: 7',
      'version: 2.1\nworkflows: [1]',
      '{{{{',
    ];
    for (const input of inputs) {
      const r = await compileConfig(input as string);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.errors[0]!.code).toMatch(/^TORUS_E_CONFIG_/);
    }
  });

  it('returns a result (never throws) for arbitrary config-shaped documents', async () => {
    const scalar = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constantFrom('<< parameters.x >>', '<< pipeline.git.branch >>', 'checkout', 'build'),
    );
    const key = fc.constantFrom(
      'version',
      'jobs',
      'workflows',
      'steps',
      'docker',
      'run',
      'build',
      'requires',
      'matrix',
      'parameters',
      'commands',
      'executor',
      'when',
      'x',
    );
    const value = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        scalar,
        fc.array(tie('node'), { maxLength: 3 }),
        fc.dictionary(key, tie('node'), { maxKeys: 4 }),
      ),
    })).node;
    await fc.assert(
      fc.asyncProperty(value, fc.constantFrom(2, 2.1, '2.0'), async (doc, version) => {
        const body =
          typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? { version, ...doc } : doc;
        const r = await compileConfig(stringify(body));
        if (!r.ok) for (const e of r.errors) expect(e.code).toMatch(/^TORUS_E_CONFIG_(?!INTERNAL)/);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses regex patterns prone to catastrophic backtracking', async () => {
    const src = `version: 2.1\njobs:\n  build:\n    docker: [{image: alpine}]\n    steps:\n      - when:\n          condition: {matches: {pattern: "(a+)+$", value: "${'a'.repeat(40)}b"}}\n          steps: [checkout]\n`;
    const started = Date.now();
    expect(await errorCodes(src)).toContain('TORUS_E_CONFIG_LOGIC');
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
