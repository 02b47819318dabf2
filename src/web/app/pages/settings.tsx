// Settings: a project's environment variables (masked values, add, delete) and SSH keys (the
// keys `add_ssh_keys` installs); an organization's contexts and their variables; the signed-in
// user's personal API tokens (a new one is shown once). Addresses follow CircleCI's web app:
// /settings/project/{slug}, /settings/organization/{vcs}/{org}/contexts, /settings/user/tokens.
import { useState } from 'react';
import { useQuery, type QueryKey } from '@tanstack/react-query';
import { Link, useParams } from 'wouter';
import {
  allPages,
  api,
  slugPath,
  type ApiToken,
  type Context,
  type ContextVariable,
  type EnvVar,
  type Project,
  type SshKey,
} from '../api';
import { Breadcrumbs, ErrorNote, QueryView } from '../components';
import { timeAgo } from '../format';
import {
  ChangeForm,
  DeleteButton,
  Field,
  SettingsSection,
  SettingsTable,
  VariableFields,
} from '../settings-parts';

// ---- project settings ----

export function ProjectSettingsPage() {
  const { vcs, org, repo } = useParams<{ vcs: string; org: string; repo: string }>();
  const slug = `${vcs}/${org}/${repo}`;
  const project = useQuery({
    queryKey: ['project', slug],
    queryFn: () => api<Project>(`/api/v2/project/${slugPath(slug)}`),
  });
  return (
    <>
      <Breadcrumbs
        items={[
          { label: 'Projects', href: '/' },
          { label: project.data?.name ?? repo, href: `/pipelines/${slugPath(slug)}` },
          { label: 'Project settings' },
        ]}
      />
      <div className="page-head">
        <h1>
          <span className="muted">{project.data?.name ?? repo} ·</span> Project settings
        </h1>
      </div>
      {project.isError && <ErrorNote error={project.error} />}
      <EnvVarsSection slug={slug} />
      <SshKeysSection slug={slug} />
      {project.data && (
        <SettingsSection id="contexts-link-head" title="Contexts">
          <p>
            Variables shared by the projects of {project.data.organization_name} live in its contexts; a
            workflow job names them with <code>context:</code>.{' '}
            <Link href={`/settings/organization/${slugPath(project.data.organization_slug)}/contexts`}>
              Organization contexts
            </Link>
          </p>
        </SettingsSection>
      )}
    </>
  );
}

function EnvVarsSection({ slug }: { slug: string }) {
  const key = ['envvars', slug];
  const vars = useQuery({
    queryKey: key,
    queryFn: () => allPages<EnvVar>(`/api/v2/project/${slugPath(slug)}/envvar`),
  });
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  return (
    <SettingsSection id="envvars-head" title="Environment variables">
      <p className="hint">
        Every job of this project gets them. Values are stored encrypted and never shown again: only their
        last four characters.
      </p>
      <SettingsTable
        query={vars}
        refresh={key}
        loading="environment variables"
        empty="No environment variables yet."
        caption="Environment variables"
        columns={['Name', 'Value', 'Added']}
        rowKey={(v) => v.name}
        rowData={(v) => ({ 'data-envvar': v.name })}
        cells={(v) => (
          <>
            <th scope="row" className="mono">
              {v.name}
            </th>
            <td className="mono masked">{v.value}</td>
            <td className="muted small">{v['created-at'] ? timeAgo(v['created-at'], Date.now()) : ''}</td>
          </>
        )}
        deleteWhat={(v) => v.name}
        sendDelete={(v) =>
          api(`/api/v2/project/${slugPath(slug)}/envvar/${encodeURIComponent(v.name)}`, { method: 'DELETE' })
        }
      />
      <ChangeForm
        label="Add an environment variable"
        submitLabel="Add variable"
        busyLabel="Adding…"
        refresh={key}
        send={() =>
          api(`/api/v2/project/${slugPath(slug)}/envvar`, {
            method: 'POST',
            body: { name: name.trim(), value },
          })
        }
        onDone={() => {
          setName('');
          setValue('');
        }}
      >
        <VariableFields idPrefix="envvar" name={name} setName={setName} value={value} setValue={setValue} />
      </ChangeForm>
    </SettingsSection>
  );
}

function SshKeysSection({ slug }: { slug: string }) {
  const key = ['ssh-keys', slug];
  const keys = useQuery({
    queryKey: key,
    queryFn: () => api<SshKey[]>(`/api/v1.1/project/${slugPath(slug)}/ssh-key`),
  });
  const [hostname, setHostname] = useState('');
  const [privateKey, setPrivateKey] = useState('');
  return (
    <SettingsSection id="ssh-head" title="SSH keys">
      <p className="hint">
        The <code>add_ssh_keys</code> step installs them in a job (all of them, or those its{' '}
        <code>fingerprints</code> name); a hostname limits a key to that host.
      </p>
      <SettingsTable
        query={keys}
        refresh={key}
        loading="SSH keys"
        empty="No SSH keys yet."
        caption="SSH keys"
        columns={['Hostname', 'Fingerprint', 'Added']}
        rowKey={(k) => `${k.fingerprint}-${k.hostname}`}
        cells={(k) => (
          <>
            <th scope="row">{k.hostname || <span className="muted">any host</span>}</th>
            <td className="mono small" title={k.fingerprint_sha256}>
              {k.fingerprint}
            </td>
            <td className="muted small">{timeAgo(k.created_at, Date.now())}</td>
          </>
        )}
        deleteWhat={(k) => `the key ${k.fingerprint}`}
        sendDelete={(k) =>
          api(`/api/v1.1/project/${slugPath(slug)}/ssh-key`, {
            method: 'DELETE',
            body: { fingerprint: k.fingerprint, hostname: k.hostname },
          })
        }
      />
      <ChangeForm
        label="Add an SSH key"
        submitLabel="Add SSH key"
        busyLabel="Adding…"
        refresh={key}
        send={() =>
          api(`/api/v1.1/project/${slugPath(slug)}/ssh-key`, {
            method: 'POST',
            body: { hostname: hostname.trim(), private_key: privateKey },
          })
        }
        onDone={() => {
          setHostname('');
          setPrivateKey('');
        }}
      >
        <Field id="ssh-hostname" label="Hostname (optional)">
          <input
            id="ssh-hostname"
            value={hostname}
            onChange={(e) => setHostname(e.target.value)}
            placeholder="github.com"
            spellCheck={false}
          />
        </Field>
        <Field id="ssh-private-key" label="Private key">
          <textarea
            id="ssh-private-key"
            value={privateKey}
            onChange={(e) => setPrivateKey(e.target.value)}
            required
            rows={4}
            placeholder="-----BEGIN OPENSSH PRIVATE KEY-----"
            spellCheck={false}
          />
        </Field>
      </ChangeForm>
    </SettingsSection>
  );
}

// ---- organization contexts ----

export function ContextsPage() {
  const { vcs, org } = useParams<{ vcs: string; org: string }>();
  const ownerSlug = `${vcs}/${org}`;
  const key = ['contexts', ownerSlug];
  const contexts = useQuery({
    queryKey: key,
    queryFn: () => allPages<Context>(`/api/v2/context?owner-slug=${encodeURIComponent(ownerSlug)}`),
  });
  const [name, setName] = useState('');
  return (
    <>
      <Breadcrumbs items={[{ label: 'Projects', href: '/' }, { label: `${org} · Contexts` }]} />
      <div className="page-head">
        <h1>
          <span className="muted">{org} ·</span> Contexts
        </h1>
      </div>
      <p className="hint">
        A context holds variables for the jobs that name it (<code>context: [name]</code>); values are stored
        encrypted and never shown again.
      </p>
      <QueryView query={contexts} what="contexts" empty={<p className="card empty">No contexts yet.</p>}>
        {(list) => list.map((c) => <ContextCard key={c.id} context={c} listKey={key} />)}
      </QueryView>
      <SettingsSection id="new-context-head" title="New context">
        <ChangeForm
          label="Create a context"
          submitLabel="Create context"
          busyLabel="Creating…"
          refresh={key}
          send={() =>
            api('/api/v2/context', {
              method: 'POST',
              body: { name: name.trim(), owner: { slug: ownerSlug } },
            })
          }
          onDone={() => setName('')}
        >
          <Field id="context-name" label="Context name">
            <input
              id="context-name"
              value={name}
              onChange={(e) => setName(e.target.value)}
              required
              spellCheck={false}
            />
          </Field>
        </ChangeForm>
      </SettingsSection>
    </>
  );
}

function ContextCard({ context: c, listKey }: { context: Context; listKey: QueryKey }) {
  const key = ['context-vars', c.id];
  const vars = useQuery({
    queryKey: key,
    queryFn: () => allPages<ContextVariable>(`/api/v2/context/${c.id}/environment-variable`),
  });
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const headId = `context-${c.id}`;
  return (
    <SettingsSection
      id={headId}
      title={c.name}
      action={
        <DeleteButton
          what={`context ${c.name}`}
          send={() => api(`/api/v2/context/${c.id}`, { method: 'DELETE' })}
          refresh={listKey}
        />
      }
    >
      <SettingsTable
        query={vars}
        refresh={key}
        loading="variables"
        empty="No variables in this context yet."
        caption={<>Variables of context {c.name}</>}
        columns={['Name', 'Value', 'Updated']}
        rowKey={(v) => v.variable}
        cells={(v) => (
          <>
            <th scope="row" className="mono">
              {v.variable}
            </th>
            <td className="mono masked" aria-label="hidden">
              ••••••••
            </td>
            <td className="muted small">{timeAgo(v.updated_at, Date.now())}</td>
          </>
        )}
        deleteWhat={(v) => `${v.variable} from ${c.name}`}
        sendDelete={(v) =>
          api(`/api/v2/context/${c.id}/environment-variable/${encodeURIComponent(v.variable)}`, {
            method: 'DELETE',
          })
        }
      />
      <ChangeForm
        label={`Add a variable to ${c.name}`}
        submitLabel="Add variable"
        busyLabel="Adding…"
        refresh={key}
        send={() =>
          api(`/api/v2/context/${c.id}/environment-variable/${encodeURIComponent(name.trim())}`, {
            method: 'PUT',
            body: { value },
          })
        }
        onDone={() => {
          setName('');
          setValue('');
        }}
      >
        <VariableFields idPrefix={headId} name={name} setName={setName} value={value} setValue={setValue} />
      </ChangeForm>
    </SettingsSection>
  );
}

// ---- the user's API tokens ----

export function TokensPage() {
  const key = ['tokens'];
  const tokens = useQuery({
    queryKey: key,
    queryFn: () => allPages<ApiToken>('/api/v2/torus/users/me/tokens'),
  });
  const [label, setLabel] = useState('');
  const [made, setMade] = useState<string | undefined>();
  return (
    <>
      <Breadcrumbs items={[{ label: 'Projects', href: '/' }, { label: 'API tokens' }]} />
      <div className="page-head">
        <h1>Personal API tokens</h1>
      </div>
      <p className="hint">
        A token acts as you: send it as <code>Circle-Token</code> to the API, or give it to the{' '}
        <code>circleci</code> CLI. This browser's session has one of its own, revoked at sign-out.
      </p>
      {made && (
        <div className="card new-token" role="status">
          <p>
            <strong>Your new token.</strong> Copy it now: it is not shown again.
          </p>
          <input
            className="mono"
            readOnly
            value={made}
            aria-label="New API token"
            onFocus={(e) => e.target.select()}
          />
        </div>
      )}
      <SettingsSection id="tokens-head" title="Tokens">
        <SettingsTable
          query={tokens}
          refresh={key}
          loading="tokens"
          empty="No tokens."
          caption="Personal API tokens"
          columns={['Label', 'Starts with', 'Created', 'Last used']}
          rowKey={(t) => t.id}
          cells={(t) => (
            <>
              <th scope="row">{t.label || <span className="muted">no label</span>}</th>
              <td className="mono">{t.hint}…</td>
              <td className="muted small">{t.created_at ? timeAgo(t.created_at, Date.now()) : ''}</td>
              <td className="muted small">
                {t.last_used_at ? timeAgo(t.last_used_at, Date.now()) : 'never'}
              </td>
            </>
          )}
          deleteWhat={(t) => `token ${t.label || t.hint}`}
          sendDelete={(t) => api(`/api/v2/torus/users/me/tokens/${t.id}`, { method: 'DELETE' })}
        />
        <ChangeForm
          label="Create a token"
          submitLabel="Create token"
          busyLabel="Creating…"
          refresh={key}
          send={() =>
            api<{ token: string }>('/api/v2/torus/users/me/tokens', {
              method: 'POST',
              body: { label: label.trim() },
            }).then((t) => setMade(t.token))
          }
          onDone={() => setLabel('')}
        >
          <Field id="token-label" label="Label">
            <input
              id="token-label"
              value={label}
              onChange={(e) => setLabel(e.target.value)}
              placeholder="laptop CLI"
              maxLength={200}
            />
          </Field>
        </ChangeForm>
      </SettingsSection>
    </>
  );
}
