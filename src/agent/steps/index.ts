// The built-in steps the agent runs itself (not as shell scripts): caches, workspaces, artifacts and
// test results. runTask dispatches a config step whose type is a key of STEP_HANDLERS to its handler.
import { ARTIFACT_STEP_HANDLERS } from './artifacts.js';
import { CACHE_STEP_HANDLERS } from './cache.js';
import type { StepHandler } from './context.js';
import { REMOTE_DOCKER_STEP_HANDLERS } from './remote-docker.js';
import { SSH_STEP_HANDLERS } from './ssh.js';
import { WORKSPACE_STEP_HANDLERS } from './workspace.js';

export const STEP_HANDLERS: Record<string, StepHandler> = {
  ...ARTIFACT_STEP_HANDLERS,
  ...CACHE_STEP_HANDLERS,
  ...WORKSPACE_STEP_HANDLERS,
  ...REMOTE_DOCKER_STEP_HANDLERS,
  ...SSH_STEP_HANDLERS,
};

export type { BlobClient, BlobEncoding, StepContext, StepHandler, StepResult } from './context.js';
export { renderCacheKey, cacheArch, MAX_CACHE_KEY } from './cache.js';
export { prepareJobTools, haltRequested } from './tools.js';
export { checkoutInto } from './checkout.js';
