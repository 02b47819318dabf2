// A project SSH key added through the v1.1 API reaches real jobs through `add_ssh_keys`: a machine
// job (host executor) and, with Docker, a docker job running as a user who is not root install it
// at ~/.ssh/id_rsa_<md5 hex> and `ssh-keygen -y` prints the project's public key; the private key
// shows neither in the jobs' output nor in the server's log; a job naming an unknown fingerprint
// fails saying which one and where keys are added.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorusServer, api, makeGitRepo, type TorusProcess, jobOutput } from '../harness/torus.js';
import { waitFor } from '../harness/net.js';
import { requireDocker } from '../harness/docker.js';
import { SSH_IMAGE, ensureSshImage, generateSshKey, requireSshTools } from '../harness/ssh.js';
import { describeSshPrivateKey } from '../../src/secrets/index.js';

const hasSsh = requireSshTools('add_ssh_keys end to end');
const hasDocker = hasSsh && requireDocker('add_ssh_keys in a docker job end to end');

interface Job {
  name: string;
  status: string;
  job_number?: number;
}

function config(fingerprint: string, sha256: string): string {
  const file = `id_rsa_${fingerprint.replace(/:/g, '')}`;
  const use = `
      - add_ssh_keys:
          fingerprints:
            - "${fingerprint}"
      - run:
          name: Use the key
          command: |
            ls -l ~/.ssh
            ssh-keygen -y -f ~/.ssh/${file} | cut -d' ' -f1,2 | sed 's/^/public: /'
            grep -A2 '^Host deploy.example.com' ~/.ssh/config
            cat ~/.ssh/${file}`;
  return `version: 2.1
jobs:
  machine-job:
    machine: true
    steps:${use}
${
  hasDocker
    ? `  docker-job:
    docker:
      - image: ${SSH_IMAGE}
        user: circleci
    steps:${use}
      - add_ssh_keys:
          fingerprints: ["${sha256}"]
`
    : ''
}  unknown-key:
    machine: true
    steps:
      - add_ssh_keys:
          fingerprints: ["00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"]
      - run: echo should not run
workflows:
  w:
    jobs:
      - machine-job
${hasDocker ? '      - docker-job\n' : ''}      - unknown-key
`;
}

describe.skipIf(!hasSsh)('add_ssh_keys end to end', () => {
  let server: TorusProcess;
  beforeAll(async () => {
    if (hasDocker) ensureSshImage(process.env.TORUS_TEST_DOCKER_HOST!);
    server = await startTorusServer({
      localAgents: 2,
      env: hasDocker ? { DOCKER_HOST: process.env.TORUS_TEST_DOCKER_HOST! } : {},
    });
  }, 180_000);
  afterAll(async () => {
    await server?.kill('SIGTERM');
  });

  it('installs the project key in machine and docker jobs without ever printing it', async () => {
    const privateKey = generateSshKey(['-t', 'ed25519']);
    const key = describeSshPrivateKey(privateKey);
    const repo = makeGitRepo({ '.circleci/config.yml': config(key.fingerprint, key.fingerprintSha256) });
    const p = await api<{ slug: string }>(server.url, 'POST', '/api/v2/organization/keys/project', {
      name: 'app',
      vcs_url: repo,
    });
    const slug = p.body.slug;
    const added = await api<{ fingerprint: string }>(
      server.url,
      'POST',
      `/api/v1.1/project/${slug}/ssh-key`,
      { hostname: 'deploy.example.com', private_key: privateKey },
    );
    expect(added.status).toBe(201);
    expect(added.body.fingerprint).toBe(key.fingerprint);

    const trig = await api<{ id: string }>(server.url, 'POST', `/api/v2/project/${slug}/pipeline`, {});
    let last: Job[] = [];
    const jobs = await waitFor(async () => {
      const wf = (
        await api<{ items: Array<{ id: string }> }>(
          server.url,
          'GET',
          `/api/v2/pipeline/${trig.body.id}/workflow`,
        )
      ).body.items[0];
      if (!wf) return false;
      last = (await api<{ items: Job[] }>(server.url, 'GET', `/api/v2/workflow/${wf.id}/job`)).body.items;
      return last.every((j) => ['success', 'failed', 'infrastructure_fail'].includes(j.status))
        ? last
        : false;
    }, 150_000).catch((err: unknown) => {
      throw new Error(`jobs did not finish: ${JSON.stringify(last)}\n${server.output().slice(-3000)}`, {
        cause: err,
      });
    });

    const outputOf = (n: number) => jobOutput(server, slug, n);
    const secretLines = privateKey
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('-----'));
    const file = `id_rsa_${key.fingerprint.replace(/:/g, '')}`;

    for (const name of hasDocker ? ['machine-job', 'docker-job'] : ['machine-job']) {
      const job = jobs.find((j) => j.name === name)!;
      const log = await outputOf(job.job_number!);
      expect(job.status, log).toBe('success');
      expect(log).toContain(
        `Added SSH key ${key.fingerprint} (${key.fingerprintSha256}) for deploy.example.com`,
      );
      expect(log).toMatch(new RegExp(`-rw------- .* ${file}\\n`));
      expect(log).toContain(`public: ${key.publicKey}\n`);
      expect(log).toMatch(
        new RegExp(`Host deploy\\.example\\.com\\n  IdentitiesOnly no\\n  IdentityFile /\\S+/${file}`),
      );
      expect(log).toContain('********');
      for (const line of secretLines) expect(log).not.toContain(line);
    }

    const unknown = jobs.find((j) => j.name === 'unknown-key')!;
    const unknownLog = await outputOf(unknown.job_number!);
    expect(unknown.status).toBe('failed');
    expect(unknownLog).toContain(
      'no SSH key with fingerprint "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"',
    );
    expect(unknownLog).toContain(`POST /api/v1.1/project/${slug}/ssh-key`);
    expect(unknownLog).not.toContain('should not run\n');

    // nor in the server's output and log
    const serverLog =
      server.output() + readFileSync(`${server.dataDir}/torus.log`, { encoding: 'utf8', flag: 'a+' });
    for (const line of secretLines) expect(serverLog).not.toContain(line);
  }, 200_000);
});
