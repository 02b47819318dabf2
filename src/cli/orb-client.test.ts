// `torus orb …` and `torus namespace create` as a user runs them: the real `torus` command in child
// processes against a running server's `POST /graphql-unstable` (an in-process server on the embedded
// database), with organization members' personal tokens.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTorus, type TorusRun } from '../../test/harness/torus.js';
import { loadSettings } from '../ops/index.js';
import { packOrb } from '../orbs/index.js';
import { startServer, type RunningServer } from './server.js';

describe('torus orb / namespace against a server', () => {
  let server: RunningServer;
  let dir: string;
  let devToken: string;
  let outsiderToken: string;
  let orgId: string;

  /** `torus <args>` against the server, with `token` as TORUS_TOKEN when there is one */
  function torus(args: string[], token: string | undefined): Promise<TorusRun> {
    return runTorus(args, { TORUS_SERVER: server.url, ...(token ? { TORUS_TOKEN: token } : {}) }, 120_000);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'torus-orb-client-'));
    server = await startServer(
      loadSettings({
        TORUS_DATA_DIR: join(dir, 'data'),
        TORUS_PORT: '0',
        TORUS_LOG_LEVEL: 'warn',
        TORUS_LOCAL_AGENTS: '0',
      }),
    );
    const { accounts } = server;
    const org = await accounts.createOrg('acme');
    orgId = org.id;
    const dev = await accounts.createUser({ login: 'dev' });
    await accounts.addMember(org.id, dev.id, 'admin');
    devToken = (await accounts.createToken(dev.id, 'cli')).token;
    const outsider = await accounts.createUser({ login: 'outsider' });
    outsiderToken = (await accounts.createToken(outsider.id, 'cli')).token;
    // an orb source tree, as `circleci orb init` lays it out
    mkdirSync(join(dir, 'tools', 'src', 'commands'), { recursive: true });
    writeFileSync(join(dir, 'tools', 'src', '@orb.yml'), 'version: 2.1\ndescription: Tools for acme\n');
    writeFileSync(
      join(dir, 'tools', 'src', 'commands', 'greet.yml'),
      'description: Greets\nparameters:\n  to:\n    type: string\n    default: World\nsteps:\n  - run: echo "Hello, << parameters.to >>"\n',
    );
  }, 300_000);
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a namespace and orbs, publishes, lists, shows source and info', async () => {
    const ns = await torus(['namespace', 'create', 'acme-ns', 'acme'], devToken);
    expect(ns.stderr).toBe('');
    expect(ns.stdout).toContain('Namespace `acme-ns` created.');
    const [tools, secret] = await Promise.all([
      torus(['orb', 'create', 'acme-ns/tools'], devToken),
      torus(['orb', 'create', 'acme-ns/secret', '--private'], devToken),
    ]);
    expect(tools.stdout).toContain('Orb `acme-ns/tools` created.');
    expect(secret.stdout).toContain('It is private');

    const packed = packOrb(join(dir, 'tools', 'src'));
    writeFileSync(join(dir, 'packed.yml'), packed);
    const [v1, dev, priv] = await Promise.all([
      // a source folder is packed first
      torus(['orb', 'publish', join(dir, 'tools', 'src'), 'acme-ns/tools@1.0.0'], devToken),
      torus(['orb', 'publish', join(dir, 'packed.yml'), 'acme-ns/tools@dev:alpha'], devToken),
      torus(['orb', 'publish', join(dir, 'packed.yml'), 'acme-ns/secret@0.1.0'], devToken),
    ]);
    expect(v1.stderr).toBe('');
    expect(v1.stdout).toContain('Orb `acme-ns/tools@1.0.0` was published.');
    expect(dev.stdout).toContain('Orb `acme-ns/tools@dev:alpha` was published.');
    expect(dev.stdout).toContain('expires 90 days');
    expect(priv.code).toBe(0);

    const [listNs, listPrivate, listPrivateOutsider, listAll, source, info] = await Promise.all([
      torus(['orb', 'list', 'acme-ns'], undefined),
      torus(['orb', 'list', 'acme-ns', '--private'], devToken),
      torus(['orb', 'list', 'acme-ns', '--private'], outsiderToken),
      torus(['orb', 'list'], undefined),
      torus(['orb', 'source', 'acme-ns/tools@1.0.0'], undefined),
      torus(['orb', 'info', 'acme-ns/tools'], undefined),
    ]);
    expect(listNs.stdout).toBe('acme-ns/tools (1.0.0)\n');
    expect(listPrivate.stdout).toBe('acme-ns/secret (0.1.0)\n');
    expect(listPrivateOutsider.stdout).toBe('No private orbs found in acme-ns.\n');
    expect(listAll.stdout).toContain('acme-ns/tools (1.0.0)\n');
    expect(listAll.stdout).not.toContain('acme-ns/secret');
    expect(source.stdout).toBe(packed.endsWith('\n') ? packed : `${packed}\n`);
    expect(info.stdout).toContain('Latest: acme-ns/tools@1.0.0');
    expect(info.stdout).toContain('Total-revisions: 1');
    expect(info.stdout).toContain('Total-commands: 1');
    expect(info.stdout).toContain('Total-jobs: 0');
    // the private orb's source: its organization only
    const [mine, theirs] = await Promise.all([
      torus(['orb', 'source', 'acme-ns/secret@0.1.0'], devToken),
      torus(['orb', 'source', 'acme-ns/secret@0.1.0'], outsiderToken),
    ]);
    expect(mine.code).toBe(0);
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain('no orb acme-ns/secret@0.1.0 here');
  }, 600_000);

  it('refuses clearly: taken names, existing versions, bad YAML, strangers, no token', async () => {
    // its own namespace, so that it does not lean on the test above
    expect((await torus(['namespace', 'create', 'acme-two', orgId], devToken)).code).toBe(0);
    expect((await torus(['orb', 'create', 'acme-two/tools'], devToken)).code).toBe(0);
    writeFileSync(join(dir, 'packed.yml'), packOrb(join(dir, 'tools', 'src')));
    expect(
      (await torus(['orb', 'publish', join(dir, 'packed.yml'), 'acme-two/tools@1.0.0'], devToken)).code,
    ).toBe(0);
    const runs = await Promise.all([
      torus(['namespace', 'create', 'acme-two', orgId], devToken),
      torus(['orb', 'publish', join(dir, 'packed.yml'), 'acme-two/tools@1.0.0'], devToken),
      (() => {
        writeFileSync(join(dir, 'bad.yml'), 'version: 2.1\ncommands: [unclosed\n');
        return torus(['orb', 'publish', join(dir, 'bad.yml'), 'acme-two/tools@1.1.0'], devToken);
      })(),
      torus(['orb', 'publish', join(dir, 'packed.yml'), 'acme-two/tools@1.2.0'], outsiderToken),
      torus(['orb', 'create', 'acme-two/other'], undefined),
      torus(['orb', 'create', 'nope-ns/other'], devToken),
      torus(['orb', 'publish', join(dir, 'packed.yml'), 'acme-two/tools@latest'], devToken),
      torus(['namespace', 'create', 'other-ns', 'no-such-org'], devToken),
    ]);
    for (const r of runs) expect(r.code, r.stdout + r.stderr).toBe(1);
    console.log(runs.map((r) => r.stderr).join(''));
    const [taken, exists, badYaml, stranger, anonymous, noNs, badRef, noOrg] = runs.map((r) => r.stderr);
    expect(taken).toContain('cannot create namespace acme-two: namespace name "acme-two" is taken');
    expect(exists).toMatch(/cannot publish acme-two\/tools@1.0.0: .*already exists/);
    expect(badYaml).toMatch(/cannot publish acme-two\/tools@1.1.0: .*is not valid YAML/);
    expect(stranger).toMatch(
      /cannot publish acme-two\/tools@1.2.0: only a member of the namespace's organization/,
    );
    expect(anonymous).toMatch(/must log in/i);
    expect(anonymous).toContain('hint: pass a personal API token');
    expect(noNs).toContain('namespace nope-ns does not exist');
    expect(badRef).toContain('is not something to publish to');
    expect(noOrg).toContain('no organization "no-such-org" among yours (acme)');
    // nothing of it was stored
    const list = await torus(['orb', 'info', 'acme-two/tools'], undefined);
    expect(list.stdout).toContain('Total-revisions: 1');
  }, 600_000);
});
