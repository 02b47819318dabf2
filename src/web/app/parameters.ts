// Pipeline parameters as the trigger form takes them (rows of name, type and text) and as the API
// wants them (`parameters` of POST /api/v2/project/{slug}/pipeline: strings, integers, booleans).

export type ParamType = 'string' | 'boolean' | 'integer';

export interface ParamRow {
  name: string;
  type: ParamType;
  value: string;
}

/** the body's `parameters`: each row's value read as its type; a clear error for what is not */
export function readParameters(rows: ParamRow[]): Record<string, string | number | boolean> {
  // a Map, then an object with own keys: a parameter named `constructor` or `__proto__` stays one
  const out = new Map<string, string | number | boolean>();
  for (const r of rows) {
    const name = r.name.trim();
    if (!name && !r.value) continue;
    if (!name) throw new Error('Give every parameter a name (or remove the row).');
    if (out.has(name)) throw new Error(`Parameter ${name} is given twice.`);
    if (r.type === 'boolean') out.set(name, r.value === 'true');
    else if (r.type === 'integer') {
      if (!/^-?\d+$/.test(r.value.trim())) throw new Error(`Parameter ${name} must be a whole number.`);
      out.set(name, Number(r.value.trim()));
    } else out.set(name, r.value);
  }
  return Object.fromEntries(out);
}
