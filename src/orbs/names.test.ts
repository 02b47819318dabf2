import { describe, expect, it } from 'vitest';
import {
  checkName,
  nextVersion,
  parseOrbVersionRef,
  parsePublishedVersion,
  parseVersionSelector,
} from './names.js';

describe('orb names and versions', () => {
  it('accepts CircleCI names and refuses others, saying the rule', () => {
    for (const ok of ['circleci', 'aws-cli', 'cypress-io', 'my_orb', 'a1'])
      expect(() => checkName('orb', ok)).not.toThrow();
    for (const bad of ['', 'Node', '1password', '-x', 'a/b', 'a.b', 'a b', 'x'.repeat(101)]) {
      expect(() => checkName('namespace', bad)).toThrow(/namespace name|lowercase letters a-z/);
    }
  });

  it('parses published versions: semver, or dev:<label>', () => {
    expect(parsePublishedVersion('1.2.3')).toEqual({
      kind: 'semver',
      text: '1.2.3',
      semver: { major: 1, minor: 2, patch: 3 },
    });
    expect(parsePublishedVersion('dev:alpha.1')).toEqual({ kind: 'dev', text: 'dev:alpha.1' });
    for (const bad of [
      '1.2',
      '01.2.3',
      '1.2.3-rc.1',
      'v1.2.3',
      'dev:',
      'dev:a b',
      'volatile',
      '9999999999.0.0',
    ]) {
      expect(() => parsePublishedVersion(bad)).toThrow(/not a valid orb version/);
    }
  });

  it('parses what a reference asks for', () => {
    expect(parseVersionSelector('1')).toEqual({ kind: 'major', major: 1 });
    expect(parseVersionSelector('1.2')).toEqual({ kind: 'minor', major: 1, minor: 2 });
    expect(parseVersionSelector('1.2.3')).toEqual({
      kind: 'exact',
      semver: { major: 1, minor: 2, patch: 3 },
    });
    expect(parseVersionSelector('volatile')).toEqual({ kind: 'volatile' });
    expect(parseVersionSelector('dev:x')).toEqual({ kind: 'dev', version: 'dev:x' });
    expect(parseVersionSelector('1.2.3.4')).toBeNull();
    expect(parseVersionSelector('latest')).toBeNull();
    expect(parseOrbVersionRef('circleci/node@5')).toEqual({
      namespace: 'circleci',
      orb: 'node',
      version: '5',
    });
    expect(parseOrbVersionRef('circleci/node')).toBeNull();
  });

  it('computes the next version as `orb publish increment` does', () => {
    expect(nextVersion(null, 'patch')).toEqual({ major: 0, minor: 0, patch: 1 });
    expect(nextVersion(null, 'major')).toEqual({ major: 1, minor: 0, patch: 0 });
    expect(nextVersion({ major: 1, minor: 4, patch: 2 }, 'minor')).toEqual({ major: 1, minor: 5, patch: 0 });
    expect(nextVersion({ major: 1, minor: 4, patch: 2 }, 'major')).toEqual({ major: 2, minor: 0, patch: 0 });
  });
});
