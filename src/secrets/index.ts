// Secrets: encryption at rest (the SecretCipher interface and its AES-256-GCM keyring), the store
// of project environment variables, contexts and project SSH keys, the environment a job receives
// (CircleCI's precedence), and key rotation (`torus admin rotate-key`).
export {
  KeyringCipher,
  openKeyring,
  KEYRING_FILE_NAME,
  type SecretCipher,
  type KeyringDocument,
  type KeyringSource,
} from './keyring.js';
export {
  createSecretStore,
  rotateKey,
  countSecretsByKey,
  maskEnvVarValue,
  validateEnvVarName,
  validateEnvVarValue,
  validateContextName,
  MAX_ENV_VAR_NAME_CHARS,
  MAX_ENV_VAR_VALUE_CHARS,
  MAX_CONTEXT_NAME_CHARS,
  MAX_VARS_PER_CONTEXT,
  MAX_CONTEXTS_PER_ORG,
  type SecretStore,
  type ProjectEnvVar,
  type Context,
  type ContextEnvVar,
  type SshKey,
  type JobSshKey,
  type JobEnvironment,
  type ListOptions,
} from './store.js';
export {
  describeSshPrivateKey,
  normalizeFingerprint,
  addSshKeysFingerprints,
  type SshPublicKey,
} from './ssh.js';
export { rotateKeyCommand, type RotateKeyOptions, type RotateKeyResult } from './rotate.js';
