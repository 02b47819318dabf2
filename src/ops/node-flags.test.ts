import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from './node-flags.js';

const root = new URL('../../', import.meta.url);

describe('NODE_FLAGS', () => {
  it('are on bin/torus.js’s first line and in npm start, which cannot import them', () => {
    const shebang = readFileSync(new URL('bin/torus.js', root), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
      scripts: { start: string };
    };
    expect(pkg.scripts.start).toBe(`node ${NODE_FLAGS.join(' ')} bin/torus.js server --demo`);
  });
});
