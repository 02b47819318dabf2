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

export async function authenticateAgent(
  ctx: SchedulerContext,
  token: string,
): Promise<AuthenticatedAgent | null> {
  if (!token.startsWith(AGENT_TOKEN_PREFIX)) return null;
  const { rows } = await ctx.res.db.query<{ id: string; resource_class: string }>(
    'SELECT id, resource_class FROM agent_tokens WHERE token_hash = $1 AND revoked_at IS NULL',
    [hashToken(token)],
  );
  const row = rows[0];
  return row ? { tokenId: row.id, resourceClass: row.resource_class } : null;
}
