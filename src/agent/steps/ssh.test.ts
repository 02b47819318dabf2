// add_ssh_keys through runTask on real environments: the host executor (in the sandbox when there is
// one) and a container running as a user who is not root, whose image has ssh-keygen. The keys the
// step names land in ~/.ssh as id_rsa_<md5 hex> (0600, owned by the job's user) with Host blocks in
// ~/.ssh/config, `ssh-keygen -y` turns them back into the project's public keys, and the private key
// never shows in the output; an unknown fingerprint fails the step naming it; with an ssh-agent in the
// job the keys are added to it. A machine job has its own ssh-agent (gone when the task ends) and, in
// the sandbox, a passwd home that is its HOME: against a real sshd, plain `ssh user@host` and
// `git clone ssh://…` log in with the added key, through the agent and through ~/.ssh/config.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDocker } from '../../../test/harness/docker.js';
import { requirePart } from '../../../test/harness/parts.js';
import {
  SSH_IMAGE,
  ensureSshImage,
  generateSshKey,
  requireSshTools,
  requireSshd,
  sshAgentsUnder,
  startSshd,
  type TestSshd,
} from '../../../test/harness/ssh.js';
import { waitFor } from '../../../test/harness/net.js';
import type { Step } from '../../config/model.js';
import type { TaskSpec, TaskSshKey } from '../../scheduler/protocol.js';
import { describeSshPrivateKey } from '../../secrets/ssh.js';
import { DockerExecutor, HostExecutor } from '../executors/index.js';
import type { Executor } from '../executor.js';
import { FIRST_CONFIG_STEP_INDEX, runTask } from '../task.js';
import { MemorySink, createRepo, runStep, taskSpec } from '../testing.js';
import { selectSshKeys, sshConfigBlocks, sshKeyFileName } from './ssh.js';

const hasSsh = requireSshTools('add_ssh_keys in jobs');
const hasBwrap = requirePart('bwrap', 'add_ssh_keys on the host executor in the sandbox');
const hasDocker = requireDocker('add_ssh_keys in a container');
const hasSshd = hasSsh && requireSshd('ssh and git over ssh with added keys in a machine job');

interface Key {
  task: TaskSshKey;
  publicKey: string;
}

let base: string;
const keys: Record<'deploy' | 'any' | 'other' | 'local', Key> = {} as never;

function makeKey(type: string[], hostname: string): Key {
  const privateKey = generateSshKey(type);
  const d = describeSshPrivateKey(privateKey);
  return {
    task: { fingerprint: d.fingerprint, fingerprintSha256: d.fingerprintSha256, hostname, privateKey },
    publicKey: d.publicKey,
  };
}

function addSshKeysStep(fingerprints?: string[] | string): Step {
  return {
    type: 'add_ssh_keys',
    name: 'Add SSH keys',
    when: 'on_success',
    args: fingerprints === undefined ? {} : { fingerprints },
  };
}

interface Kind {
  name: string;
  executor: () => Executor;
  spec: (steps: Step[], overrides?: Partial<TaskSpec>) => TaskSpec;
  user: string;
}

const kinds: Kind[] = [
  {
    name: 'host',
    executor: () =>
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: hasBwrap ? 'bwrap' : 'none' }),
    spec: (steps, overrides) => taskSpec(steps, overrides),
    user: spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim(),
  },
  {
    name: 'docker',
    executor: () => new DockerExecutor({ docker: new Docker() }),
    spec: (steps, overrides) =>
      taskSpec(steps, {
        executor: { type: 'docker', images: [{ image: SSH_IMAGE, user: 'circleci', environment: {} }] },
        resourceClass: 'small',
        ...overrides,
      }),
    user: 'circleci',
  },
];

async function runSteps(
  kind: Kind,
  steps: Step[],
  sshKeys: TaskSshKey[],
  environment: Record<string, string> = {},
  executor = kind.executor(),
): Promise<{ result: Awaited<ReturnType<typeof runTask>>; sink: MemorySink; spec: TaskSpec }> {
  const sink = new MemorySink();
  const spec = kind.spec(steps, {
    sshKeys,
    // as the server's claim hook does: the private keys are secrets to mask
    secrets: sshKeys.map((k) => k.privateKey),
    projectSlug: 'gh/acme/app',
  });
  spec.environment = { ...spec.environment, ...environment };
  const result = await runTask(spec, sink, {
    workRoot: path.join(base, 'work'),
    sandbox: 'none',
    signal: new AbortController().signal,
    executor,
  });
  return { result, sink, spec };
}

function bodyLines(privateKey: string): string[] {
  return privateKey
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('-----'));
}

beforeAll(() => {
  base = mkdtempSync(path.join(tmpdir(), 'torus-ssh-'));
  if (!hasSsh) return;
  keys.deploy = makeKey(['-t', 'ed25519'], 'git.example.com');
  keys.any = makeKey(['-t', 'rsa', '-b', '2048', '-m', 'PEM'], '');
  keys.other = makeKey(['-t', 'ecdsa', '-b', '256'], 'other.example.com');
  keys.local = makeKey(['-t', 'ed25519'], 'localhost');
  if (hasDocker) ensureSshImage(process.env.TORUS_TEST_DOCKER_HOST ?? '');
}, 120_000);
afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('add_ssh_keys helpers', () => {
  const k = (fingerprint: string, sha: string, hostname: string): TaskSshKey => ({
    fingerprint,
    fingerprintSha256: sha,
    hostname,
    privateKey: 'x',
  });
  const a = k('aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99', `SHA256:${'A'.repeat(43)}`, 'one.example');
  const a2 = { ...a, hostname: 'two.example' };
  const b = k('00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff', `SHA256:${'B'.repeat(43)}`, '');

  it('selects by MD5 (with or without colons, any case) or SHA256, every hostname of a key, and reports the rest', () => {
    expect(selectSshKeys([a, a2, b], []).keys).toEqual([a, a2, b]);
    expect(selectSshKeys([a, a2, b], ['AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99'])).toEqual({
      keys: [a, a2],
      missing: [],
    });
    expect(selectSshKeys([a, a2, b], [`SHA256:${'B'.repeat(43)}`, 'no:pe'])).toEqual({
      keys: [b],
      missing: ['no:pe'],
    });
    expect(selectSshKeys([a], ['00112233445566778899aabbccddeeff']).missing).toEqual([
      '00112233445566778899aabbccddeeff',
    ]);
  });

  it('names files by the MD5 hex digits and writes one Host block per key and hostname (* without one)', () => {
    expect(sshKeyFileName(a.fingerprint)).toBe('id_rsa_aabbccddeeff00112233445566778899');
    expect(sshConfigBlocks([a, b], '/home/u/.ssh')).toBe(
      'Host one.example\n  IdentitiesOnly no\n  IdentityFile /home/u/.ssh/id_rsa_aabbccddeeff00112233445566778899\n' +
        '\nHost *\n  IdentitiesOnly no\n  IdentityFile /home/u/.ssh/id_rsa_00112233445566778899aabbccddeeff\n',
    );
  });
});

describe.each(kinds.filter((k) => hasSsh && (k.name === 'host' || hasDocker)))(
  'add_ssh_keys on the $name executor',
  (kind) => {
    it('installs the named keys, usable by ssh-keygen and ssh, and never prints them', async () => {
      const deployFile = sshKeyFileName(keys.deploy.task.fingerprint);
      const anyFile = sshKeyFileName(keys.any.task.fingerprint);
      const { result, sink } = await runSteps(
        kind,
        [
          addSshKeysStep([keys.deploy.task.fingerprint, keys.any.task.fingerprintSha256]),
          runStep(
            [
              'cd ~/.ssh',
              'ls -1 | sort',
              `stat -c '%a %U %n' . config ${deployFile} ${anyFile}`,
              'cat config',
              `ssh-keygen -y -f ~/.ssh/${deployFile} | cut -d' ' -f1,2 | sed 's/^/public deploy: /'`,
              `ssh-keygen -y -f ~/.ssh/${anyFile} | cut -d' ' -f1,2 | sed 's/^/public any: /'`,
              `cat ~/.ssh/${deployFile}`,
              // what OpenSSH itself makes of the config (the image has no ssh client)
              'if command -v ssh >/dev/null; then ssh -F ~/.ssh/config -G git.example.com | grep "^identityfile" | sed "s/^/resolved /"; fi',
            ].join('\n'),
            { name: 'use the keys' },
          ),
        ],
        [keys.deploy.task, keys.any.task, keys.other.task],
      );
      const add = sink.step(FIRST_CONFIG_STEP_INDEX);
      const use = sink.step(FIRST_CONFIG_STEP_INDEX + 1);
      expect(add.status, add.out).toBe('success');
      expect(use.status, use.out + use.err).toBe('success');
      expect(result.status).toBe('success');
      expect(add.out).toContain(`Added SSH key ${keys.deploy.task.fingerprint}`);
      expect(add.out).toContain('for git.example.com');
      expect(add.out).toContain('for all hosts');

      // only the two keys asked for, private to the job's user
      expect(use.out).toContain(['config', anyFile, deployFile].sort().join('\n') + '\n');
      expect(use.out).not.toContain(sshKeyFileName(keys.other.task.fingerprint));
      expect(use.out).toContain(`700 ${kind.user} .\n`);
      expect(use.out).toContain(`600 ${kind.user} config\n`);
      expect(use.out).toContain(`600 ${kind.user} ${deployFile}\n`);
      expect(use.out).toContain(`600 ${kind.user} ${anyFile}\n`);
      expect(use.out).toMatch(
        new RegExp(
          `Host git\\.example\\.com\\n  IdentitiesOnly no\\n  IdentityFile /\\S+/\\.ssh/${deployFile}\\n`,
        ),
      );
      expect(use.out).toMatch(
        new RegExp(`Host \\*\\n  IdentitiesOnly no\\n  IdentityFile /\\S+/\\.ssh/${anyFile}\\n`),
      );
      expect(use.out).toContain(`public deploy: ${keys.deploy.publicKey}\n`);
      expect(use.out).toContain(`public any: ${keys.any.publicKey}\n`);
      if (kind.name === 'host') {
        expect(use.out).toMatch(new RegExp(`resolved identityfile /\\S+/\\.ssh/${deployFile}\n`));
        expect(use.out).toMatch(new RegExp(`resolved identityfile /\\S+/\\.ssh/${anyFile}\n`));
      }

      // `cat` of the key printed nothing of it: the output is masked
      const all = [...sink.steps.values()].map((s) => s.out + s.err).join('');
      for (const line of bodyLines(keys.deploy.task.privateKey)) expect(all).not.toContain(line);
      for (const line of bodyLines(keys.any.task.privateKey)) expect(all).not.toContain(line);
      expect(use.out).toContain('********');
    }, 120_000);

    it('fails naming an unknown fingerprint and saying where keys are added; installs nothing', async () => {
      const { result, sink } = await runSteps(
        kind,
        [
          addSshKeysStep([keys.deploy.task.fingerprint, 'de:ad:be:ef:de:ad:be:ef:de:ad:be:ef:de:ad:be:ef']),
          runStep('ls -a ~/.ssh || echo "no .ssh"', { name: 'look', when: 'always' }),
        ],
        [keys.deploy.task],
      );
      const add = sink.step(FIRST_CONFIG_STEP_INDEX);
      expect(result.status).toBe('failed');
      expect(add.status).toBe('failed');
      expect(add.out).toContain('"de:ad:be:ef:de:ad:be:ef:de:ad:be:ef:de:ad:be:ef"');
      expect(add.out).not.toContain(`"${keys.deploy.task.fingerprint}"`);
      expect(add.out).toContain("project's settings (SSH Keys");
      expect(add.out).toContain('POST /api/v1.1/project/gh/acme/app/ssh-key');
      expect(sink.step(FIRST_CONFIG_STEP_INDEX + 1).out).toContain('no .ssh');
    }, 120_000);

    it('installs every key of the project when no fingerprint is given (a single string works too)', async () => {
      const { sink } = await runSteps(
        kind,
        [
          addSshKeysStep(),
          addSshKeysStep(keys.other.task.fingerprintSha256),
          runStep('ls -1 ~/.ssh | sort; grep -c "^Host " ~/.ssh/config', { name: 'look' }),
        ],
        [keys.deploy.task, keys.any.task, keys.other.task],
      );
      const out = sink.step(FIRST_CONFIG_STEP_INDEX + 2).out;
      for (const k of [keys.deploy, keys.any, keys.other])
        expect(out).toContain(sshKeyFileName(k.task.fingerprint));
      // three blocks from the first step, one more from the second
      expect(out).toContain('\n4\n');
    }, 120_000);
  },
);

describe.runIf(hasSsh)('add_ssh_keys with an ssh-agent in the job', () => {
  let agent: ChildProcess | undefined;
  let socket: string;
  beforeAll(async () => {
    socket = path.join(base, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    await waitFor(() => existsSync(socket), 10_000);
  });
  afterAll(() => {
    if (agent?.pid) process.kill(agent.pid, 'SIGTERM');
  });

  it('adds the keys to the agent named by SSH_AUTH_SOCK', async () => {
    // no sandbox: the agent's socket lives outside the task directory
    const host = kinds[0]!;
    const { sink } = await runSteps(
      host,
      [addSshKeysStep([keys.any.task.fingerprint]), runStep('ssh-add -l -E md5', { name: 'list' })],
      [keys.any.task],
      { SSH_AUTH_SOCK: socket },
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: 'none' }),
    );
    expect(sink.step(FIRST_CONFIG_STEP_INDEX).out).toContain('to the ssh-agent at');
    expect(sink.step(FIRST_CONFIG_STEP_INDEX + 1).out).toContain(`MD5:${keys.any.task.fingerprint}`);
  }, 60_000);
});

const sandboxes = [...(hasBwrap ? ['bwrap' as const] : []), 'none' as const];

describe.runIf(hasSsh).each(sandboxes)('a machine job with sandbox %s', (sandbox) => {
  const host = kinds[0]!;
  const executor = () => new HostExecutor({ workRoot: path.join(base, 'work'), sandbox });

  it('has its own ssh-agent holding the added keys, gone when the task ends', async () => {
    const hex = sshKeyFileName(keys.deploy.task.fingerprint);
    const { result, sink, spec } = await runSteps(
      host,
      [
        runStep(
          'echo "sock=$SSH_AUTH_SOCK"; if ssh-add -l; then echo "listed: 0"; else echo "listed: $?"; fi',
          {
            name: 'before',
          },
        ),
        addSshKeysStep([keys.deploy.task.fingerprint]),
        runStep(
          [
            'ssh-add -l -E md5',
            // without -F: what OpenSSH itself finds in ~/.ssh/config
            'ssh -G git.example.com | grep "^identityfile" | sed "s/^/resolved /"',
            'echo "passwd home=$(getent passwd "$(id -u)" | cut -d: -f6)"',
            'echo "HOME=$HOME"',
          ].join('\n'),
          { name: 'use' },
        ),
      ],
      [keys.deploy.task],
      {},
      executor(),
    );
    const taskRoot = path.join(base, 'work', spec.taskId);
    const before = sink.step(FIRST_CONFIG_STEP_INDEX);
    const add = sink.step(FIRST_CONFIG_STEP_INDEX + 1);
    const use = sink.step(FIRST_CONFIG_STEP_INDEX + 2);
    expect(result.status, before.out + add.out + use.out + use.err).toBe('success');
    expect(sink.step(0).out).toContain(`SSH agent: SSH_AUTH_SOCK=${taskRoot}/ssh-agent.sock`);
    // an empty agent answers "no identities" with exit 1
    expect(before.out).toContain(`sock=${taskRoot}/ssh-agent.sock\n`);
    expect(before.out).toContain('listed: 1\n');
    expect(add.out).toContain(`to the ssh-agent at ${taskRoot}/ssh-agent.sock`);
    expect(use.out).toContain(`MD5:${keys.deploy.task.fingerprint}`);
    const home = /^HOME=(.*)$/m.exec(use.out)?.[1];
    expect(home).toBe(path.join(taskRoot, 'home'));
    if (sandbox === 'bwrap') {
      // OpenSSH's ~ is the passwd entry's home: in the sandbox that is the job's HOME
      expect(use.out).toContain(`passwd home=${home}\n`);
      expect(use.out).toContain(`resolved identityfile ${home}/.ssh/${hex}\n`);
    }
    expect(sshAgentsUnder(taskRoot)).toEqual([]);
  }, 60_000);

  it('leaves SSH_AUTH_SOCK alone when the job sets it', async () => {
    const { sink } = await runSteps(
      host,
      [runStep('echo "sock=$SSH_AUTH_SOCK"')],
      [],
      { SSH_AUTH_SOCK: '/nonexistent/agent.sock' },
      executor(),
    );
    expect(sink.step(FIRST_CONFIG_STEP_INDEX).out).toBe('sock=/nonexistent/agent.sock\n');
    expect(sink.step(0).out).not.toContain('SSH agent:');
  }, 60_000);
});

describe.runIf(hasSshd)('ssh and git over ssh in a machine job, against a real sshd', () => {
  let sshd: TestSshd;
  let repo: string;
  beforeAll(async () => {
    sshd = await startSshd([keys.local.publicKey]);
    repo = path.join(base, 'repo');
    createRepo(repo);
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  const insecure = '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null';
  const login = () => `-o BatchMode=yes -p ${sshd.port} ${sshd.user}@localhost`;

  it.runIf(hasBwrap)(
    'logs in and clones with the added key without -i: through the agent, and through ~/.ssh/config and known_hosts',
    async () => {
      const { result, sink } = await runSteps(
        kinds[0]!,
        [
          // the test can fail: no key of the job's lets it in yet
          runStep(`if ssh ${insecure} ${login()} true; then echo let-in; else echo denied-before; fi`, {
            name: 'before',
          }),
          addSshKeysStep([keys.local.task.fingerprint]),
          runStep(
            [
              `ssh-keyscan -p ${sshd.port} localhost 2>/dev/null >> ~/.ssh/known_hosts`,
              // no config file: the key comes from the job's ssh-agent; known_hosts from the passwd home
              `ssh -F /dev/null ${login()} echo via-agent`,
              // no agent: ~/.ssh/config names the key for localhost
              `SSH_AUTH_SOCK= ssh ${login()} echo via-config`,
              `git clone -q ssh://${sshd.user}@localhost:${sshd.port}${repo} cloned`,
              'cat cloned/version.txt',
            ].join('\n'),
            { name: 'use' },
          ),
        ],
        [keys.local.task],
        {},
        new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: 'bwrap' }),
      );
      const before = sink.step(FIRST_CONFIG_STEP_INDEX);
      const use = sink.step(FIRST_CONFIG_STEP_INDEX + 2);
      expect(before.out, before.err).toBe('denied-before\n');
      expect(use.status, use.out + use.err).toBe('success');
      expect(use.out).toBe('via-agent\nvia-config\nv2\n');
      expect(result.status).toBe('success');
    },
    60_000,
  );

  it("logs in and clones through the job's ssh-agent without the sandbox", async () => {
    const { result, sink } = await runSteps(
      kinds[0]!,
      [
        addSshKeysStep([keys.local.task.fingerprint]),
        runStep(
          [
            `ssh ${insecure} ${login()} echo via-agent`,
            `GIT_SSH_COMMAND="ssh ${insecure}" git clone -q ssh://${sshd.user}@localhost:${sshd.port}${repo} cloned`,
            'cat cloned/version.txt',
          ].join('\n'),
          { name: 'use' },
        ),
      ],
      [keys.local.task],
      {},
      new HostExecutor({ workRoot: path.join(base, 'work'), sandbox: 'none' }),
    );
    const use = sink.step(FIRST_CONFIG_STEP_INDEX + 1);
    expect(use.out, use.err).toBe('via-agent\nv2\n');
    expect(result.status).toBe('success');
  }, 60_000);
});
