// Operations: settings, the resources object, the error catalogue (metrics, health, support bundles,
// backup and proxy support come in later issues).
export { TorusError, isTorusError, ERROR_CODES, type ErrorCode } from './errors.js';
export { loadSettings, defaultSettings, SETTING_KEYS, type Settings } from './settings.js';
export {
  systemClock,
  randomIds,
  createLogger,
  type Resources,
  type Clock,
  type Ids,
  type Logger,
} from './resources.js';
