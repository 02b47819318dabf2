// add_ssh_keys: installs project SSH keys (spec.sshKeys, decrypted by the server at claim for jobs
// with this step) into the job as CircleCI does: each key at `~/.ssh/id_rsa_<MD5 fingerprint without
// colons>` (mode 0600), a `Host <hostname>` block (`Host *` for a key without hostname) with its
// IdentityFile appended to `~/.ssh/config`, and the key added to the job's ssh-agent when one runs
// (SSH_AUTH_SOCK; host-executor jobs have their own, ../ssh-agent.ts). `fingerprints` (MD5 `aa:bb:…` or `SHA256:…`) picks keys; without it every key of
// the project is installed. The checkout key is not one of them. Key material is never printed.
import type { TaskSshKey } from '../../scheduler/protocol.js';
import { addSshKeysFingerprints, normalizeFingerprint } from '../../secrets/ssh.js';
import { execCollect } from './artifacts.js';
import type { StepContext, StepHandler, StepResult } from './context.js';

const SUCCESS: StepResult = { status: 'success', exitCode: 0 };
const FAILED: StepResult = { status: 'failed', exitCode: null };

/** CircleCI's name for an installed key: the MD5 fingerprint's hex digits */
export function sshKeyFileName(fingerprint: string): string {
  return `id_rsa_${fingerprint.replace(/:/g, '').toLowerCase()}`;
}

/** The keys `requested` names (each requested fingerprint may match several hostnames of one key). */
export function selectSshKeys(
  available: readonly TaskSshKey[],
  requested: readonly string[],
): { keys: TaskSshKey[]; missing: string[] } {
  if (requested.length === 0) return { keys: [...available], missing: [] };
  const keys = new Set<TaskSshKey>();
  const missing: string[] = [];
  for (const raw of requested) {
    const fp = normalizeFingerprint(raw);
    const hits = fp
      ? available.filter((k) => (fp.kind === 'md5' ? k.fingerprint : k.fingerprintSha256) === fp.value)
      : [];
    if (hits.length === 0) missing.push(raw);
    for (const k of hits) keys.add(k);
  }
  return { keys: [...keys], missing };
}

/** The `~/.ssh/config` lines for the keys: one Host block per key and hostname, in the keys' order. */
export function sshConfigBlocks(keys: readonly TaskSshKey[], sshDir: string): string {
  return keys
    .map(
      (k) =>
        `Host ${k.hostname.trim() === '' ? '*' : k.hostname.trim()}\n` +
        // CircleCI's default: keys offered by the ssh-agent are tried too
        '  IdentitiesOnly no\n' +
        `  IdentityFile ${sshDir}/${sshKeyFileName(k.fingerprint)}\n`,
    )
    .join('\n');
}

function describeHost(hostname: string): string {
  return hostname.trim() === '' ? 'all hosts' : hostname.trim();
}

export const addSshKeys: StepHandler = async (step, ctx) => {
  const args = 'args' in step && step.args && typeof step.args === 'object' ? step.args : {};
  const requested = addSshKeysFingerprints(args);
  const { keys, missing } = selectSshKeys(ctx.spec.sshKeys ?? [], requested);
  const slug = ctx.spec.projectSlug;
  if (missing.length > 0) {
    ctx.print(
      `Error: project ${slug} has no SSH key with fingerprint ${missing.map((f) => `"${f}"`).join(', ')}.\n` +
        `Add the key in the project's settings (SSH Keys, Additional SSH Keys) or with ` +
        `POST /api/v1.1/project/${slug}/ssh-key, then rerun the job; or remove the fingerprint from add_ssh_keys. ` +
        `Fingerprints are MD5 (aa:bb:…) or SHA256 (SHA256:…), as GET /api/v1.1/project/${slug}/ssh-key lists them.\n`,
    );
    return FAILED;
  }
  if (keys.length === 0) {
    ctx.print(
      `Project ${slug} has no additional SSH keys: nothing to install. Add keys in the project's settings ` +
        `(SSH Keys) or with POST /api/v1.1/project/${slug}/ssh-key.\n`,
    );
    return SUCCESS;
  }
  return installSshKeys(keys, ctx);
};

async function installSshKeys(keys: TaskSshKey[], ctx: StepContext): Promise<StepResult> {
  const { environment } = ctx;
  const sshDir = `${environment.homeDirectory.replace(/\/+$/, '')}/.ssh`;
  // created by the job's own user (not the executor's file writer), so ssh accepts the directory
  const mk = await execCollect(environment, ctx.env, [
    '/bin/sh',
    '-c',
    'mkdir -p "$0" && chmod 700 "$0"',
    sshDir,
  ]);
  if (!mk.ok) {
    ctx.print(`Error: cannot create ${sshDir}: ${mk.err.trim() || `exit ${mk.exitCode}`}\n`);
    return FAILED;
  }
  const files = new Map<string, string>();
  for (const k of keys) {
    const file = `${sshDir}/${sshKeyFileName(k.fingerprint)}`;
    if (files.has(file)) continue;
    files.set(file, k.fingerprint);
    const body = k.privateKey.replace(/\r\n/g, '\n').trim() + '\n';
    await environment.writeFile(file, body, 0o600);
  }
  const fragment = `${environment.taskDirectory.replace(/\/+$/, '')}/ssh-config-${ctx.index}`;
  await environment.writeFile(fragment, `\n${sshConfigBlocks(keys, sshDir)}`, 0o600);
  const append = await execCollect(environment, ctx.env, [
    '/bin/sh',
    '-c',
    'cat "$1" >> "$0/config" && chmod 600 "$0/config" && rm -f "$1"',
    sshDir,
    fragment,
  ]);
  if (!append.ok) {
    ctx.print(`Error: cannot write ${sshDir}/config: ${append.err.trim() || `exit ${append.exitCode}`}\n`);
    return FAILED;
  }
  for (const k of keys) {
    ctx.print(
      `Added SSH key ${k.fingerprint} (${k.fingerprintSha256}) for ${describeHost(k.hostname)}: ` +
        `${sshDir}/${sshKeyFileName(k.fingerprint)}\n`,
    );
  }
  if (ctx.env.SSH_AUTH_SOCK) await addToAgent([...files.keys()], ctx);
  return SUCCESS;
}

/** ssh-add for each key file; the files and config are in place either way, so a failure only warns. */
async function addToAgent(files: string[], ctx: StepContext): Promise<void> {
  for (const file of files) {
    const r = await execCollect(ctx.environment, ctx.env, ['ssh-add', file]);
    if (r.ok) ctx.print(`Added ${file} to the ssh-agent at ${ctx.env.SSH_AUTH_SOCK}\n`);
    else
      ctx.print(
        `Warning: could not add ${file} to the ssh-agent (${(r.err.trim() || `exit ${r.exitCode}`).split('\n')[0]}); ` +
          'the key file and its ~/.ssh/config entry are installed\n',
      );
  }
}

export const SSH_STEP_HANDLERS: Record<string, StepHandler> = { add_ssh_keys: addSshKeys };
