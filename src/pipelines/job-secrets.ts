// The scheduler's prepareTask hook: a claimed task's spec gets its project and context variables
// (decrypted at claim, never stored in the queue) under its built-in and job variables, as
// CircleCI layers them (project < contexts < built-in < job < step), and their values for masking.
// A job with `add_ssh_keys` steps also gets the project SSH keys those steps name (all of them when
// a step names none), their private keys masked like any secret; a job of a "rerun failed tests"
// workflow gets the tests that failed in its previous run (failed-tests.ts).
// A job naming a context its organization lacks fails without reaching an agent, as on CircleCI.
import type { Database } from '../storage/index.js';
import type { TaskSpec } from '../scheduler/index.js';
import { addSshKeysFingerprints, type SecretStore } from '../secrets/index.js';
import { failedTestsOfPreviousRun } from './failed-tests.js';

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
    const prepared: TaskSpec = {
      ...spec,
      environment: { ...env.environment, ...spec.environment },
      secrets: [...spec.secrets, ...env.secrets],
    };
    const sshKeys = await sshKeysFor(secrets, row.project_id, spec);
    if (sshKeys) {
      prepared.sshKeys = sshKeys;
      // trimmed: the line break after the key stays in the output when the whole key is masked
      prepared.secrets.push(...sshKeys.map((k) => k.privateKey.trim()));
    }
    const failedTests = await failedTestsOfPreviousRun(db, jobId);
    if (failedTests) prepared.rerunFailedTests = failedTests;
    return prepared;
  };
}

/**
 * The keys the job's `add_ssh_keys` steps install: the fingerprints they name, or every key when one
 * of them names none. Fingerprints matching no key are left for the step to report (it fails).
 */
async function sshKeysFor(
  secrets: SecretStore,
  projectId: string,
  spec: TaskSpec,
): Promise<TaskSpec['sshKeys']> {
  const steps = spec.steps.filter((s) => s.type === 'add_ssh_keys');
  if (steps.length === 0) return undefined;
  const wanted = new Set<string>();
  for (const step of steps) {
    const fingerprints = 'args' in step ? addSshKeysFingerprints(step.args) : [];
    if (fingerprints.length === 0) {
      wanted.clear();
      break;
    }
    for (const f of fingerprints) wanted.add(f);
  }
  const { keys } = await secrets.sshKeysForJob(projectId, wanted.size > 0 ? [...wanted] : undefined);
  return keys.map((k) => ({
    fingerprint: k.fingerprint,
    fingerprintSha256: k.fingerprintSha256,
    hostname: k.hostname,
    privateKey: k.privateKey,
  }));
}
