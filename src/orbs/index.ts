// The orb registry: namespaces, orbs and versions (semver and expiring dev versions), promotion,
// categories, import primitives for the upstream importer, the compiler's OrbResolver over it with
// a warm cache, and packing. The public face of src/orbs/ (see README.md).
export {
  createOrbRegistry,
  MAX_ORB_SOURCE_BYTES,
  type Actor,
  type Viewer,
  type VisibilityScope,
  type Namespace,
  type Orb,
  type OrbVersion,
  type OrbVersionInfo,
  type OrbListItem,
  type OrbPage,
  type ListOrbsOptions,
  type ImportItem,
  type ImportSummary,
  type OrbRegistry,
  type OrbRegistryOptions,
} from './registry.js';
export {
  registryOrbResolver,
  RESOLVER_SHORT_TTL_MS,
  RESOLVER_LONG_TTL_MS,
  type RegistryOrbResolver,
  type RegistryResolverOptions,
} from './resolver.js';
export {
  checkName,
  parsePublishedVersion,
  parseVersionSelector,
  parseOrbVersionRef,
  parseOrbName,
  nextVersion,
  DEV_VERSION_TTL_DAYS,
  type Segment,
  type Semver,
  type VersionSelector,
} from './names.js';
export { ORB_CATEGORIES, type OrbCategory } from './categories.js';
export { packOrb, readOrbSource, OrbPackError } from './pack.js';
export {
  createUpstreamRegistry,
  DEFAULT_UPSTREAM_URL,
  isUpstreamError,
  UPSTREAM_TIMEOUT_MS,
  upstreamGraphqlUrl,
  UpstreamError,
  type UpstreamErrorKind,
  type UpstreamFetch,
  type UpstreamNamespaceOrb,
  type UpstreamOrb,
  type UpstreamOrbVersion,
  type UpstreamRegistry,
  type UpstreamRegistryOptions,
  type UpstreamVersionEntry,
} from './upstream.js';
export { DevVersionSweepLoop } from './sweep.js';
export {
  exportOrbs,
  formatImportTarget,
  importFromDisk,
  importFromUpstream,
  parseImportTarget,
  updateImportedOrbs,
  OrbImportError,
  EXPORT_FORMAT,
  EXPORT_FORMAT_VERSION,
  type ExportManifest,
  type ImportTarget,
  type OrbExportReport,
  type OrbImportDeps,
  type OrbImportReport,
  type UpstreamImportDeps,
} from './import.js';
