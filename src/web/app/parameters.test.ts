import { describe, expect, it } from 'vitest';
import { readParameters } from './parameters';

describe('trigger parameters', () => {
  it('reads each row as its type and skips empty rows', () => {
    expect(
      readParameters([
        { name: ' greeting ', type: 'string', value: 'bonjour le monde' },
        { name: 'deploy', type: 'boolean', value: 'false' },
        { name: 'retries', type: 'integer', value: ' -3 ' },
        { name: '', type: 'string', value: '' },
      ]),
    ).toEqual({ greeting: 'bonjour le monde', deploy: false, retries: -3 });
    expect(readParameters([{ name: 'constructor', type: 'string', value: 'x' }])).toEqual({
      constructor: 'x',
    });
  });

  it('refuses a value without a name, a name given twice and a number that is not whole', () => {
    expect(() => readParameters([{ name: '', type: 'string', value: 'x' }])).toThrow(/a name/);
    expect(() =>
      readParameters([
        { name: 'a', type: 'string', value: '1' },
        { name: 'a', type: 'integer', value: '2' },
      ]),
    ).toThrow('Parameter a is given twice.');
    expect(() => readParameters([{ name: 'n', type: 'integer', value: '1.5' }])).toThrow(/whole number/);
  });
});
