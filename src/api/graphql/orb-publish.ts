// What publishing an orb checks beyond the registry's own rules: the orb validated exactly as
// `orbConfig` (`circleci orb validate`) validates it, its own `orbs:` resolved from the registry as
// the publisher sees it, so an orb that imports an orb the registry lacks is refused naming it.
import type { OrbResolver } from '../../config/index.js';
import type { OrbRegistryOptions } from '../../orbs/index.js';
import { validateOrb } from './validate-config.js';

/** The registry's `validateSource` hook for one caller: the messages, none when the orb is valid. */
export function orbSourceValidator(
  orbResolver: OrbResolver | undefined,
): NonNullable<OrbRegistryOptions['validateSource']> {
  return async (source) => {
    const result = await validateOrb(source, { orbResolver });
    return result.valid ? [] : result.errors.map((e) => e.message);
  };
}
