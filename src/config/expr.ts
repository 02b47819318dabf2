// CircleCI `<< … >>` expressions (CircleCI-Public/expr): and/or (returning operand values), not,
// ==, !=, starts-with, matches /re/, numeric comparisons, parentheses, literals and variables.
// A small recursive-descent parser; regexes are guarded against catastrophic backtracking.
import type { Value } from './source.js';

export class ExpressionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpressionError';
  }
}

type Token =
  | { kind: 'id'; text: string }
  | { kind: 'num'; value: number }
  | { kind: 'str'; value: string }
  | { kind: 'bool'; value: boolean }
  | { kind: 'op'; text: string }
  | { kind: 'regex'; source: string };

const MAX_EXPRESSION_LENGTH = 4096;
// sticky: each matches at `lastIndex` only, so the scanner never slices the rest of the text
const WS = /\s+/y;
const OP = /==|!=|>=|<=|>|<|\(|\)|!/y;
const NUM = /-?\d+/y;
const IDENT = /[a-zA-Z][\w-]*(\.[\w-]+)*\??/y;
const WORD_OPS = new Set(['and', 'or', 'not', 'AND', 'OR', 'NOT', 'starts-with', 'contains', 'matches']);

function matchAt(re: RegExp, src: string, i: number): string | undefined {
  re.lastIndex = i;
  return re.exec(src)?.[0];
}

/**
 * Splits `src` into tokens, or returns the reason it is not an expression (a string). Returning
 * instead of throwing matters: most `<< … >>` text in real configs is shell (heredocs) probed here.
 */
function scan(src: string): Token[] | string {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const ws = matchAt(WS, src, i);
    if (ws) {
      i += ws.length;
      continue;
    }
    const op = matchAt(OP, src, i);
    if (op) {
      tokens.push({ kind: 'op', text: op === '!' ? 'not' : op });
      i += op.length;
      continue;
    }
    const num = matchAt(NUM, src, i);
    if (num) {
      tokens.push({ kind: 'num', value: Number(num) });
      i += num.length;
      continue;
    }
    if (src[i] === '"') {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== '"') {
        if (src[j] === '\\' && j + 1 < src.length) {
          s += src[j + 1];
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) return 'unterminated string';
      tokens.push({ kind: 'str', value: s });
      i = j + 1;
      continue;
    }
    const last = tokens[tokens.length - 1];
    if (src[i] === '/' && last !== undefined && last.kind === 'op' && last.text === 'matches') {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== '/') {
        if (src[j] === '\\' && src[j + 1] === '/') {
          s += '/';
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) return 'unterminated regex';
      tokens.push({ kind: 'regex', source: s });
      i = j + 1;
      continue;
    }
    const text = matchAt(IDENT, src, i);
    if (text) {
      if (text === 'true' || text === 'false') tokens.push({ kind: 'bool', value: text === 'true' });
      else if (WORD_OPS.has(text)) tokens.push({ kind: 'op', text: text.toLowerCase() });
      else tokens.push({ kind: 'id', text });
      i += text.length;
      continue;
    }
    return `unexpected character ${JSON.stringify(src[i])}`;
  }
  return tokens;
}

function tokenize(src: string): Token[] {
  const tokens = scan(src);
  if (typeof tokens === 'string') throw new ExpressionError(tokens);
  return tokens;
}

/** True when `inner` tokenizes as an expression using a variable of `namespace` (and only of it or `alsoAllowed`). */
export function looksLikeExpression(
  inner: string,
  namespace: string,
  alsoAllowed: readonly string[] = [],
): boolean {
  if (inner.length > MAX_EXPRESSION_LENGTH) return false;
  // an expression must name a variable of the namespace: skip tokenizing text that cannot
  if (!inner.includes(`${namespace}.`)) return false;
  const tokens = scan(inner);
  // not an expression (shell text such as a heredoc): left as literal text, which is CircleCI's behaviour too
  if (typeof tokens === 'string') return false;
  const ids = tokens.filter((t): t is { kind: 'id'; text: string } => t.kind === 'id');
  return (
    ids.some((t) => t.text.startsWith(`${namespace}.`)) &&
    ids.every((t) => [namespace, ...alsoAllowed].some((ns) => t.text.startsWith(`${ns}.`))) &&
    tokens.some((t) => t.kind === 'op')
  );
}

/** `undefined` in the expr language: a variable present with a null value. */
const UNDEF = Symbol('undefined');
type ExprValue = Value | typeof UNDEF;

type Ast =
  | { kind: 'lit'; value: Value }
  | { kind: 'var'; name: string }
  | { kind: 'not'; arg: Ast }
  | { kind: 'and' | 'or'; left: Ast; right: Ast }
  | { kind: 'cmp'; op: string; left: Ast; right: Ast }
  | { kind: 'matches'; left: Ast; pattern: string };

const BINARY_OPS = new Set(['==', '!=', '>', '>=', '<', '<=', 'starts-with', 'contains']);
const MAX_EXPRESSION_DEPTH = 100;

function parseExpression(src: string): Ast {
  if (src.length > MAX_EXPRESSION_LENGTH) throw new ExpressionError('expression is too long');
  const tokens = tokenize(src);
  let pos = 0;
  let depth = 0;
  const isOp = (text: string): boolean => {
    const t = tokens[pos];
    return t !== undefined && t.kind === 'op' && t.text === text;
  };
  const primary = (): Ast => {
    if (++depth > MAX_EXPRESSION_DEPTH) throw new ExpressionError('expression is nested too deeply');
    try {
      const t = tokens[pos++];
      if (!t) throw new ExpressionError('unexpected end of expression');
      switch (t.kind) {
        case 'num':
        case 'str':
        case 'bool':
          return { kind: 'lit', value: t.value };
        case 'id':
          return { kind: 'var', name: t.text };
        case 'op':
          if (t.text === '(') {
            const inner = orExpr();
            if (!isOp(')')) throw new ExpressionError('missing )');
            pos++;
            return inner;
          }
          if (t.text === 'not') return { kind: 'not', arg: primary() };
          throw new ExpressionError(`unexpected ${t.text}`);
        case 'regex':
          throw new ExpressionError('a /pattern/ can only follow matches');
      }
    } finally {
      depth--;
    }
  };
  const comparison = (): Ast => {
    const left = primary();
    const t = tokens[pos];
    if (t?.kind !== 'op') return left;
    if (BINARY_OPS.has(t.text)) {
      pos++;
      return { kind: 'cmp', op: t.text, left, right: primary() };
    }
    if (t.text === 'matches') {
      pos++;
      const re = tokens[pos++];
      if (re?.kind !== 'regex') throw new ExpressionError('matches needs a /pattern/');
      return { kind: 'matches', left, pattern: re.source };
    }
    return left;
  };
  const andExpr = (): Ast => {
    let left = comparison();
    while (isOp('and')) {
      pos++;
      left = { kind: 'and', left, right: comparison() };
    }
    return left;
  };
  const orExpr = (): Ast => {
    let left = andExpr();
    while (isOp('or')) {
      pos++;
      left = { kind: 'or', left, right: andExpr() };
    }
    return left;
  };
  const ast = orExpr();
  if (pos !== tokens.length) throw new ExpressionError('unexpected text after expression');
  return ast;
}

function evaluateAst(ast: Ast, resolve: (name: string) => Value): ExprValue {
  switch (ast.kind) {
    case 'lit':
      return ast.value;
    case 'var': {
      const v = resolve(ast.name);
      return v === null ? UNDEF : v;
    }
    case 'not':
      return !truthyExpr(evaluateAst(ast.arg, resolve));
    case 'and': {
      // short-circuits and returns an operand, so `cond and "a" or "b"` is if-then-else
      const l = evaluateAst(ast.left, resolve);
      return truthyExpr(l) ? evaluateAst(ast.right, resolve) : l;
    }
    case 'or': {
      const l = evaluateAst(ast.left, resolve);
      return truthyExpr(l) ? l : evaluateAst(ast.right, resolve);
    }
    case 'matches': {
      const l = evaluateAst(ast.left, resolve);
      if (l === UNDEF) return UNDEF;
      if (typeof l !== 'string') throw new ExpressionError('matches needs a string on its left');
      return safeFullMatch(ast.pattern, l);
    }
    case 'cmp': {
      const l = evaluateAst(ast.left, resolve);
      const r = evaluateAst(ast.right, resolve);
      if (l === UNDEF || r === UNDEF) return UNDEF;
      switch (ast.op) {
        case '==':
        case '!=': {
          // values of different types are never equal
          const eq = typeof l === typeof r && JSON.stringify(l) === JSON.stringify(r);
          return ast.op === '==' ? eq : !eq;
        }
        case 'starts-with':
        case 'contains':
          if (typeof l !== 'string' || typeof r !== 'string')
            throw new ExpressionError(`${ast.op} needs strings on both sides`);
          return ast.op === 'contains' ? l.includes(r) : l.startsWith(r);
        default:
          if (typeof l !== 'number' || typeof r !== 'number')
            throw new ExpressionError(`${ast.op} compares numbers only`);
          return ast.op === '>' ? l > r : ast.op === '>=' ? l >= r : ast.op === '<' ? l < r : l <= r;
      }
    }
  }
}

/** Evaluates an expression; variables come from `resolve` (null = present but undefined). */
export function evaluateExpression(src: string, resolve: (name: string) => Value): Value {
  const result = evaluateAst(parseExpression(src), resolve);
  return result === UNDEF ? false : result;
}

function truthyExpr(v: ExprValue): boolean {
  return !(
    v === UNDEF ||
    v === null ||
    v === false ||
    v === '' ||
    v === 0 ||
    (typeof v === 'number' && Number.isNaN(v))
  );
}

/** Refuses nested quantifiers (`(a+)+`), the shape behind catastrophic backtracking in JS regexes. */
export function safeFullMatch(pattern: string, value: string): boolean {
  if (pattern.length > 1000 || /\([^)]*[+*][^)]*\)[+*{]/.test(pattern)) {
    throw new ExpressionError(
      `pattern /${pattern}/ is refused: nested quantifiers can take exponential time`,
    );
  }
  let re: RegExp;
  // Java-style leading inline flags, e.g. (?i), which JS regexes do not accept
  const inline = /^\(\?([ims]+)\)/.exec(pattern);
  const flags = inline ? [...new Set(inline[1]!)].join('') : '';
  const body = inline ? pattern.slice(inline[0].length) : pattern;
  try {
    re = new RegExp(`^(?:${body})$`, `u${flags}`);
  } catch (err) {
    throw new ExpressionError(`invalid regex /${pattern}/: ${(err as Error).message}`);
  }
  return re.test(value.slice(0, 10_000));
}
