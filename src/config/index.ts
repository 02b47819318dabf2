// The CircleCI config compiler: `.circleci/config.yml` text (2.0/2.1, orbs through a resolver) in,
// a typed CompiledConfig plus the processed 2.0 YAML out. Pure; see README.md for its stages.
export { compileConfig } from './compile.js';
export { DEFAULT_NO_OUTPUT_TIMEOUT_MS, parseDuration } from './normalize.js';
export { CONFIG_ERROR_CODES, type ConfigErrorCode } from './errors.js';
export { CONFIG_YAML_OPTIONS } from './source.js';
export type * from './model.js';
export { CronError, nextCronTime, parseCron, type CronSchedule } from './cron.js';
