// Continuation keys: the secret CIRCLE_CONTINUATION_KEY a setup workflow's job receives to call
// POST /api/v2/pipeline/continue. One key per queued job, given in clear only to the job's tasks
// (and masked in their output); the database keeps its sha256.
import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../storage/index.js';
import type { EngineCore } from './core.js';

export const CONTINUATION_KEY_ENV = 'CIRCLE_CONTINUATION_KEY';

export function hashContinuationKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A fresh key for a job of a setup workflow, stored (hashed) in the caller's transaction. */
export async function issueContinuationKey(
  core: EngineCore,
  tx: Queryable,
  pipelineId: string,
  jobId: string,
): Promise<string> {
  const key = randomBytes(32).toString('hex');
  await tx.query(
    'INSERT INTO continuation_keys (key_hash, pipeline_id, job_id, created_at) VALUES ($1, $2, $3, $4)',
    [hashContinuationKey(key), pipelineId, jobId, core.res.clock.now()],
  );
  return key;
}
