// Packing orbs (`circleci orb pack`): the rules themselves live beside the config compiler's corpus
// resolver (config/corpus-orbs.ts), which packs the corpus' orb trees for the compiler's tests. The
// compiler's folder depends on nothing outside itself, so the registry re-exports the packer rather
// than config importing the registry (see README.md). Here: reading an orb from disk either way it
// is kept — a `src/` tree to pack, or one packed `orb.yml`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { OrbPackError, packOrb } from '../config/corpus-orbs.js';

export { OrbPackError, packOrb };

/**
 * The packed source of the orb at `path`: a packed YAML file, a directory holding `@orb.yml` (an orb
 * `src/` tree), a directory holding `src/@orb.yml` (an orb project), or one holding `orb.yml`.
 */
export function readOrbSource(path: string): string {
  if (!existsSync(path)) throw new OrbPackError(`${path} does not exist`);
  if (!statSync(path).isDirectory()) return readFileSync(path, 'utf8');
  if (existsSync(join(path, '@orb.yml'))) return packOrb(path);
  if (existsSync(join(path, 'src', '@orb.yml'))) return packOrb(join(path, 'src'));
  if (existsSync(join(path, 'orb.yml'))) return readFileSync(join(path, 'orb.yml'), 'utf8');
  throw new OrbPackError(
    `${path} holds no orb: expected @orb.yml (an orb src/ tree), src/@orb.yml or orb.yml`,
  );
}
