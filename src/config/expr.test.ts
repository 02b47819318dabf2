// The `<< >>` expression language, checked against the semantics of CircleCI-Public/expr.
import { describe, expect, it } from 'vitest';
import { evaluateExpression, ExpressionError, looksLikeExpression } from './expr.js';
import type { Value } from './source.js';

function run(src: string, env: Record<string, Value> = {}): Value {
  return evaluateExpression(src, (name) => {
    if (!(name in env)) throw new ExpressionError(`unknown variable ${name}`);
    return env[name] ?? null;
  });
}

describe('expressions', () => {
  it.each<[string, Record<string, Value>, Value]>([
    ['1', {}, 1],
    ['"str\\"ing"', {}, 'str"ing'],
    ['ident', { ident: 5 }, 5],
    ['ident?', { 'ident?': 5 }, 5],
    ['true and false', {}, false],
    ['true AND false', {}, false],
    ['false OR true', {}, true],
    ['true and foo', { foo: 14 }, 14],
    ['false or foo', { foo: 14 }, 14],
    ['!true', {}, false],
    ['not false', {}, true],
    ['1 == 1', {}, true],
    ['true == 12', {}, false],
    ['"5" != 5', {}, true],
    ['5 >= 5', {}, true],
    ['foo < 5', { foo: 1 }, true],
    ['"hello world" contains "lo wo"', {}, true],
    ['"hello world" starts-with "api"', {}, false],
    ['"hello world" matches /\\w+ world/', {}, true],
    ['"hello world" matches /world/', {}, false],
    ['bar matches /(?i)FO+D/', { bar: 'food' }, true],
    ['pipeline.git.branch == "main" and "prod" or "dev"', { 'pipeline.git.branch': 'main' }, 'prod'],
    ['pipeline.git.branch == "main" and "prod" or "dev"', { 'pipeline.git.branch': 'x' }, 'dev'],
    ['not (1 == 2) and (2 > 1)', {}, true],
  ])('%s', (src, env, expected) => {
    expect(run(src, env)).toEqual(expected);
  });

  it('short-circuits: the unused side is never looked up', () => {
    expect(run('false and foo')).toBe(false);
    expect(run('true or foo')).toBe(true);
    expect(() => run('true and foo')).toThrow(/unknown variable foo/);
  });

  it('treats a present-but-null variable as undefined', () => {
    expect(run('foo == 2', { foo: null })).toBe(false);
    expect(run('foo or 12', { foo: null })).toBe(12);
    expect(run('foo', { foo: null })).toBe(false);
  });

  it('rejects ill-typed operands and malformed input', () => {
    expect(() => run('5 > true')).toThrow(/numbers/);
    expect(() => run('55 starts-with 5')).toThrow(/strings/);
    expect(() => run('"a" matches "b"')).toThrow(/pattern/);
    expect(() => run('(1 == 1')).toThrow(/\)/);
    expect(() => run('"open')).toThrow(/unterminated/);
    expect(() => run('1 ==')).toThrow(/end of expression/);
  });

  it('refuses catastrophic-backtracking patterns quickly', () => {
    const started = Date.now();
    expect(() => run(`x matches /(a+)+b/`, { x: `${'a'.repeat(50)}c` })).toThrow(/refused/);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('refuses absurd nesting without overflowing the stack', () => {
    expect(() => run(`${'('.repeat(5000)}1${')'.repeat(5000)}`)).toThrow(ExpressionError);
  });

  it('recognizes expressions only over the namespace being substituted', () => {
    expect(looksLikeExpression('parameters.x == "a"', 'parameters')).toBe(true);
    expect(looksLikeExpression('EOF', 'parameters')).toBe(false);
    expect(looksLikeExpression('parameters.x == pipeline.git.branch', 'parameters')).toBe(false);
    expect(looksLikeExpression('parameters.x == pipeline.git.branch', 'parameters', ['pipeline'])).toBe(true);
    expect(looksLikeExpression('pipeline.git.branch == "x"', 'parameters', ['pipeline'])).toBe(false);
  });

  it('treats shell text as literal without failing, while the evaluator still reports why', () => {
    // heredoc-like text that names the namespace but does not tokenize
    expect(looksLikeExpression('EOF > $HOME/parameters.x', 'parameters')).toBe(false);
    expect(looksLikeExpression('parameters.x == "unterminated', 'parameters')).toBe(false);
    expect(looksLikeExpression('parameters.x matches /unterminated', 'parameters')).toBe(false);
    expect(() => run('parameters.x == $y')).toThrow('unexpected character "$"');
    expect(() => run('"unterminated')).toThrow('unterminated string');
  });
});
