// The scheduler's prepareTask hook: a claimed task's spec gets its project and context variables
// (decrypted at claim, never stored in the queue) under its built-in and job variables, as
// CircleCI layers them (project < contexts < built-in < job < step), and their values for masking.
// A job naming a context its organization lacks fails without reaching an agent, as on CircleCI.
import type { Database } from '../storage/index.js';
import type { TaskSpec } from '../scheduler/index.js';
import type { SecretStore } from '../secrets/index.js';

export function secretsPreparer(
  db: Database,
  secrets: SecretStore,
): (jobId: string, spec: TaskSpec) => Promise<TaskSpec | { refuse: string }> {
  return async (jobId, spec) => {
    const { rows } = await db.query<{
      contexts: string[];
      project_id: string;
      org_id: string;
      org_name: string;
    }>(
      `SELECT j.contexts, p.id AS project_id, p.org_id, o.name AS org_name
         FROM jobs j JOIN projects p ON p.id = j.project_id JOIN organizations o ON o.id = p.org_id
        WHERE j.id = $1`,
      [jobId],
    );
    const row = rows[0];
    if (!row) return spec;
    const env = await secrets.jobEnvironment(row.project_id, row.org_id, row.contexts ?? []);
    if (env.missingContexts.length > 0) {
      const names = env.missingContexts.map((n) => `"${n}"`).join(', ');
      return {
        refuse:
          `Could not find context ${names} in organization "${row.org_name}": create it ` +
          `(POST /api/v2/context, or the organization's settings) or remove it from the workflow job's \`context\``,
      };
    }
    return {
      ...spec,
      environment: { ...env.environment, ...spec.environment },
      secrets: [...spec.secrets, ...env.secrets],
    };
  };
}
