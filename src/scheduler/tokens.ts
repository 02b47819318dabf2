// Agent tokens: random secrets bound to a resource class or pattern, stored as sha256 hashes.
import { createHash, randomBytes } from 'node:crypto';
import type { SchedulerContext } from './context.js';
import type { AuthenticatedAgent } from './claim.js';
import { assertResourceClassPattern } from './resource-classes.js';

export const AGENT_TOKEN_PREFIX = 'torus_agent_';

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export async function createAgentToken(
  ctx: SchedulerContext,
  resourceClass: string,
  name: string,
): Promise<{ id: string; token: string }> {
  assertResourceClassPattern(resourceClass);
  const id = ctx.res.ids.uuid();
  const token = AGENT_TOKEN_PREFIX + randomBytes(32).toString('hex');
  await ctx.res.db.query(
    'INSERT INTO agent_tokens (id, resource_class, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)',
    [id, resourceClass, name, hashToken(token), ctx.res.clock.now()],
  );
  return { id, token };
}

/**
 * A token found valid is believed for this long without asking the database again: an agent
 * streaming output sends many requests a second. (A token revoked in the database stops working
 * within this time.)
 */
export const AGENT_TOKEN_CACHE_MS = 5_000;
const AGENT_TOKEN_CACHE_MAX = 1_000;
const tokenCaches = new WeakMap<
  SchedulerContext,
  Map<string, { agent: AuthenticatedAgent; until: number }>
>();

export async function authenticateAgent(
  ctx: SchedulerContext,
  token: string,
): Promise<AuthenticatedAgent | null> {
  if (!token.startsWith(AGENT_TOKEN_PREFIX)) return null;
  const hash = hashToken(token);
  let cache = tokenCaches.get(ctx);
  if (!cache) tokenCaches.set(ctx, (cache = new Map()));
  const now = Date.now();
  const hit = cache.get(hash);
  if (hit && hit.until > now) return hit.agent;
  const { rows } = await ctx.res.db.query<{ id: string; resource_class: string }>(
    'SELECT id, resource_class FROM agent_tokens WHERE token_hash = $1 AND revoked_at IS NULL',
    [hash],
  );
  const row = rows[0];
  if (!row) {
    cache.delete(hash);
    return null;
  }
  const agent = { tokenId: row.id, resourceClass: row.resource_class };
  if (cache.size >= AGENT_TOKEN_CACHE_MAX) cache.clear();
  cache.set(hash, { agent, until: now + AGENT_TOKEN_CACHE_MS });
  return agent;
}
