// Operations: settings, the resources object, the error catalogue, outbound HTTP(S) through a proxy
// (metrics, health, support bundles and backup come in later issues).
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
export {
  createProxiedFetch,
  envProxiedFetch,
  proxiedFetch,
  proxySettingsFromEnv,
  shouldBypassProxy,
  parseNoProxy,
  parseProxyUrl,
  redactProxyUrl,
  ProxyError,
  type ProxiedFetch,
  type ProxiedFetchOptions,
  type ProxySettings,
  type NoProxyList,
  type ProxyEndpoint,
} from './proxy.js';
