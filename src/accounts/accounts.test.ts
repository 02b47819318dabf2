import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAccounts, hashToken, type Accounts } from './index.js';
import { databaseKinds } from '../../test/harness/db.js';
import { openTestResources, truncateAll, type TestResources } from '../../test/api/resources.js';

describe.each(databaseKinds())('accounts on %s', (kind) => {
  let res: TestResources;
  let accounts: Accounts;

  beforeAll(async () => {
    res = await openTestResources(kind);
    accounts = createAccounts(res);
  });
  afterAll(async () => res?.close());
  beforeEach(async () => {
    res.setNow(null);
    await truncateAll(res);
  });

  it('bootstraps an admin with a generated token once, then never again', async () => {
    const first = await accounts.bootstrapAdmin();
    expect(first.user).toMatchObject({ login: 'admin', role: 'admin', suspended: false });
    expect(first.token).toMatch(/^[0-9a-f]{40}$/);
    expect((await accounts.authenticate(first.token!))?.id).toBe(first.user.id);

    const second = await accounts.bootstrapAdmin();
    expect(second.user.id).toBe(first.user.id);
    expect(second.token).toBeUndefined();
    expect(await accounts.authenticate(first.token!)).not.toBeNull();
  });

  it('stores tokens hashed, never in clear', async () => {
    const { token } = await accounts.bootstrapAdmin();
    const rows = await res.db.query<{ token_hash: string; token_hint: string }>(
      'SELECT token_hash, token_hint FROM api_tokens',
    );
    expect(rows.rows).toEqual([{ token_hash: hashToken(token!), token_hint: token!.slice(0, 4) }]);
  });

  it('replaces the bootstrap token with TORUS_ADMIN_TOKEN at every start', async () => {
    const generated = (await accounts.bootstrapAdmin()).token!;
    const a = await accounts.bootstrapAdmin('first-admin-token');
    expect(a.token).toBeUndefined();
    expect(await accounts.authenticate(generated)).toBeNull();
    expect((await accounts.authenticate('first-admin-token'))?.login).toBe('admin');

    // An extra token the admin made keeps working across restarts.
    const extra = await accounts.createToken(a.user.id, 'laptop');
    await accounts.bootstrapAdmin('second-admin-token');
    expect(await accounts.authenticate('first-admin-token')).toBeNull();
    expect((await accounts.authenticate('second-admin-token'))?.login).toBe('admin');
    expect(await accounts.authenticate(extra.token)).not.toBeNull();
    // same token again: nothing changes
    await accounts.bootstrapAdmin('second-admin-token');
    expect((await accounts.listTokens(a.user.id)).map((t) => t.label).sort()).toEqual([
      'bootstrap',
      'laptop',
    ]);
  });

  it('concurrent bootstraps create one admin', async () => {
    const results = await Promise.all([accounts.bootstrapAdmin(), accounts.bootstrapAdmin()]);
    expect(results[0].user.id).toBe(results[1].user.id);
    expect(results.filter((r) => r.token).length).toBe(1);
    expect((await accounts.listUsers()).length).toBe(1);
  });

  it('creates users, rejects duplicate and malformed logins', async () => {
    const u = await accounts.createUser({ login: 'alice', name: 'Alice' });
    expect(u).toMatchObject({
      login: 'alice',
      name: 'Alice',
      role: 'member',
      suspended: false,
      githubId: null,
    });
    await expect(accounts.createUser({ login: 'alice' })).rejects.toMatchObject({ code: 'TORUS_E_CONFLICT' });
    await expect(accounts.createUser({ login: 'no spaces' })).rejects.toMatchObject({
      code: 'TORUS_E_BAD_REQUEST',
    });
    expect((await accounts.getUser('alice'))?.id).toBe(u.id);
    expect((await accounts.getUser(u.id))?.login).toBe('alice');
  });

  it('suspension stops every token of the user; unsuspension restores them', async () => {
    const u = await accounts.createUser({ login: 'bob' });
    const t = await accounts.createToken(u.id, 'ci');
    expect(await accounts.authenticate(t.token)).not.toBeNull();
    await accounts.setSuspended(u.id, true);
    expect(await accounts.authenticate(t.token)).toBeNull();
    expect((await accounts.getUser(u.id))?.suspended).toBe(true);
    await accounts.setSuspended(u.id, false);
    expect((await accounts.authenticate(t.token))?.login).toBe('bob');
  });

  it('lists tokens with label, hint and last use; revoked tokens stop working and disappear', async () => {
    const u = await accounts.createUser({ login: 'carol' });
    const t1 = await accounts.createToken(u.id, 'one');
    const t2 = await accounts.createToken(u.id, 'two');
    expect(t1.token).not.toBe(t2.token);
    res.setNow(new Date('2030-01-01T00:00:00Z'));
    await accounts.authenticate(t1.token);
    const list = await accounts.listTokens(u.id);
    expect(list.map((t) => t.label).sort()).toEqual(['one', 'two']);
    const one = list.find((t) => t.label === 'one')!;
    expect(one.hint).toBe(t1.token.slice(0, 4));
    expect(one.lastUsedAt?.toISOString()).toBe('2030-01-01T00:00:00.000Z');
    expect(list.find((t) => t.label === 'two')!.lastUsedAt).toBeNull();

    await accounts.revokeToken(u.id, t1.id);
    expect(await accounts.authenticate(t1.token)).toBeNull();
    expect((await accounts.listTokens(u.id)).map((t) => t.label)).toEqual(['two']);
    await expect(accounts.revokeToken(u.id, t1.id)).rejects.toMatchObject({ code: 'TORUS_E_NOT_FOUND' });
    // another user cannot revoke carol's token through their own id
    const dave = await accounts.createUser({ login: 'dave' });
    await expect(accounts.revokeToken(dave.id, t2.id)).rejects.toMatchObject({ code: 'TORUS_E_NOT_FOUND' });
    expect(await accounts.authenticate(t2.token)).not.toBeNull();
  });

  it('unknown tokens do not authenticate', async () => {
    await accounts.bootstrapAdmin();
    expect(await accounts.authenticate('0'.repeat(40))).toBeNull();
    expect(await accounts.authenticate('')).toBeNull();
  });

  it('organizations have circleci/<name> slugs and members with roles', async () => {
    const org = await accounts.createOrg('acme');
    expect(org).toMatchObject({ name: 'acme', slug: 'circleci/acme', vcsType: 'circleci' });
    await expect(accounts.createOrg('acme')).rejects.toMatchObject({ code: 'TORUS_E_CONFLICT' });
    await expect(accounts.createOrg('a/b')).rejects.toMatchObject({ code: 'TORUS_E_BAD_REQUEST' });
    expect((await accounts.getOrg('acme'))?.id).toBe(org.id);
    expect((await accounts.getOrg('circleci/acme'))?.id).toBe(org.id);
    expect((await accounts.getOrg(org.id))?.name).toBe('acme');

    const u = await accounts.createUser({ login: 'erin' });
    await accounts.addMember(org.id, u.id, 'member');
    expect(await accounts.memberRole(org.id, u.id)).toBe('member');
    await accounts.addMember(org.id, u.id, 'admin');
    expect(await accounts.listMembers(org.id)).toMatchObject([{ login: 'erin', role: 'admin' }]);
    expect((await accounts.listOrgsOf(u.id)).map((o) => o.slug)).toEqual(['circleci/acme']);
    await accounts.removeMember(org.id, u.id);
    expect(await accounts.memberRole(org.id, u.id)).toBeNull();
    await expect(accounts.removeMember(org.id, u.id)).rejects.toMatchObject({ code: 'TORUS_E_NOT_FOUND' });
    expect((await accounts.listOrgs()).map((o) => o.name)).toEqual(['acme']);
  });
});
