// Settings: a project's environment variables (masked values, add, delete) and SSH keys (the
// keys `add_ssh_keys` installs); an organization's contexts and their variables; the signed-in
// user's personal API tokens (a new one is shown once). Addresses follow CircleCI's web app:
// /settings/project/{slug}, /settings/organization/{vcs}/{org}/contexts, /settings/user/tokens.
import { useState, type FormEvent, type ReactNode } from 'react';
import { useQuery, useQueryClient, type QueryKey } from '@tanstack/react-query';
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
import { ActionButton, Breadcrumbs, ErrorNote, Loading } from '../components';
import { timeAgo } from '../format';

/** A form that sends one change and then re-reads `refresh`; its error shown under it. */
function ChangeForm({
  label,
  submitLabel,
  busyLabel,
  send,
  refresh,
  children,
  onDone,
}: {
  label: string;
  submitLabel: string;
  busyLabel: string;
  send: () => Promise<unknown>;
  refresh: QueryKey;
  children: ReactNode;
  onDone?: () => void;
}) {
  const client = useQueryClient();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    send()
      .then(async () => {
        await client.invalidateQueries({ queryKey: refresh });
        onDone?.();
      })
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  return (
    <form className="settings-form" onSubmit={submit} aria-label={label}>
      {children}
      <div className="settings-form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? busyLabel : submitLabel}
        </button>
      </div>
      {error && (
        <p className="error-note" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

/** Delete, then a second click to confirm (or Keep): nothing goes on a single stray click. */
function DeleteButton({ what, run }: { what: string; run: () => Promise<unknown> }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button
        type="button"
        className="btn btn-secondary"
        aria-label={`Delete ${what}`}
        onClick={() => setAsking(true)}
      >
        Delete
      </button>
    );
  return (
    <span className="confirm" role="group" aria-label={`Confirm deleting ${what}`}>
      <ActionButton label="Confirm delete" busyLabel="Deleting…" variant="danger" run={run} />
      {/* the focus goes to the safe choice, so a keyboard user is not left on a vanished button */}
      <button type="button" className="btn btn-link" onClick={() => setAsking(false)} autoFocus>
        Keep
      </button>
    </span>
  );
}

function Field({ id, label, children }: { id: string; label: string; children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children}
    </div>
  );
}

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
        <section className="card settings-section" aria-labelledby="contexts-link-head">
          <h2 id="contexts-link-head">Contexts</h2>
          <p>
            Variables shared by the projects of {project.data.organization_name} live in its contexts; a
            workflow job names them with <code>context:</code>.{' '}
            <Link href={`/settings/organization/${slugPath(project.data.organization_slug)}/contexts`}>
              Organization contexts
            </Link>
          </p>
        </section>
      )}
    </>
  );
}

function EnvVarsSection({ slug }: { slug: string }) {
  const key = ['envvars', slug];
  const client = useQueryClient();
  const vars = useQuery({
    queryKey: key,
    queryFn: () => allPages<EnvVar>(`/api/v2/project/${slugPath(slug)}/envvar`),
  });
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  return (
    <section className="card settings-section" aria-labelledby="envvars-head">
      <h2 id="envvars-head">Environment variables</h2>
      <p className="hint">
        Every job of this project gets them. Values are stored encrypted and never shown again: only their
        last four characters.
      </p>
      {vars.isPending ? (
        <Loading what="environment variables" />
      ) : vars.isError ? (
        <ErrorNote error={vars.error} />
      ) : vars.data.length === 0 ? (
        <p className="muted">No environment variables yet.</p>
      ) : (
        <table className="settings-table">
          <caption className="sr-only">Environment variables</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Value</th>
              <th scope="col">Added</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {vars.data.map((v) => (
              <tr key={v.name} data-envvar={v.name}>
                <th scope="row" className="mono">
                  {v.name}
                </th>
                <td className="mono masked">{v.value}</td>
                <td className="muted small">{v['created-at'] ? timeAgo(v['created-at'], Date.now()) : ''}</td>
                <td className="num">
                  <DeleteButton
                    what={v.name}
                    run={() =>
                      api(`/api/v2/project/${slugPath(slug)}/envvar/${encodeURIComponent(v.name)}`, {
                        method: 'DELETE',
                      }).then(() => client.invalidateQueries({ queryKey: key }))
                    }
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
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
        <Field id="envvar-name" label="Name">
          <input
            id="envvar-name"
            value={name}
            onChange={(e) => setName(e.target.value)}
            required
            pattern="[A-Za-z_][A-Za-z0-9_]*"
            title="Letters, digits and underscores, not starting with a digit"
            spellCheck={false}
            autoComplete="off"
          />
        </Field>
        <Field id="envvar-value" label="Value">
          <input
            id="envvar-value"
            type="password"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            required
            autoComplete="new-password"
          />
        </Field>
      </ChangeForm>
    </section>
  );
}

function SshKeysSection({ slug }: { slug: string }) {
  const key = ['ssh-keys', slug];
  const client = useQueryClient();
  const keys = useQuery({
    queryKey: key,
    queryFn: () => api<SshKey[]>(`/api/v1.1/project/${slugPath(slug)}/ssh-key`),
  });
  const [hostname, setHostname] = useState('');
  const [privateKey, setPrivateKey] = useState('');
  return (
    <section className="card settings-section" aria-labelledby="ssh-head">
      <h2 id="ssh-head">SSH keys</h2>
      <p className="hint">
        The <code>add_ssh_keys</code> step installs them in a job (all of them, or those its{' '}
        <code>fingerprints</code> name); a hostname limits a key to that host.
      </p>
      {keys.isPending ? (
        <Loading what="SSH keys" />
      ) : keys.isError ? (
        <ErrorNote error={keys.error} />
      ) : keys.data.length === 0 ? (
        <p className="muted">No SSH keys yet.</p>
      ) : (
        <table className="settings-table">
          <caption className="sr-only">SSH keys</caption>
          <thead>
            <tr>
              <th scope="col">Hostname</th>
              <th scope="col">Fingerprint</th>
              <th scope="col">Added</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.data.map((k) => (
              <tr key={`${k.fingerprint}-${k.hostname}`}>
                <th scope="row">{k.hostname || <span className="muted">any host</span>}</th>
                <td className="mono small" title={k.fingerprint_sha256}>
                  {k.fingerprint}
                </td>
                <td className="muted small">{timeAgo(k.created_at, Date.now())}</td>
                <td className="num">
                  <DeleteButton
                    what={`the key ${k.fingerprint}`}
                    run={() =>
                      api(`/api/v1.1/project/${slugPath(slug)}/ssh-key`, {
                        method: 'DELETE',
                        body: { fingerprint: k.fingerprint, hostname: k.hostname },
                      }).then(() => client.invalidateQueries({ queryKey: key }))
                    }
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
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
    </section>
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
      {contexts.isPending ? (
        <Loading what="contexts" />
      ) : contexts.isError ? (
        <ErrorNote error={contexts.error} />
      ) : contexts.data.length === 0 ? (
        <p className="card empty">No contexts yet.</p>
      ) : (
        contexts.data.map((c) => <ContextCard key={c.id} context={c} listKey={key} />)
      )}
      <section className="card settings-section" aria-labelledby="new-context-head">
        <h2 id="new-context-head">New context</h2>
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
      </section>
    </>
  );
}

function ContextCard({ context: c, listKey }: { context: Context; listKey: QueryKey }) {
  const client = useQueryClient();
  const key = ['context-vars', c.id];
  const vars = useQuery({
    queryKey: key,
    queryFn: () => allPages<ContextVariable>(`/api/v2/context/${c.id}/environment-variable`),
  });
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const headId = `context-${c.id}`;
  return (
    <section className="card settings-section" aria-labelledby={headId}>
      <div className="settings-head">
        <h2 id={headId}>{c.name}</h2>
        <DeleteButton
          what={`context ${c.name}`}
          run={() =>
            api(`/api/v2/context/${c.id}`, { method: 'DELETE' }).then(() =>
              client.invalidateQueries({ queryKey: listKey }),
            )
          }
        />
      </div>
      {vars.isPending ? (
        <Loading what="variables" />
      ) : vars.isError ? (
        <ErrorNote error={vars.error} />
      ) : vars.data.length === 0 ? (
        <p className="muted">No variables in this context yet.</p>
      ) : (
        <table className="settings-table">
          <caption className="sr-only">Variables of context {c.name}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Value</th>
              <th scope="col">Updated</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {vars.data.map((v) => (
              <tr key={v.variable}>
                <th scope="row" className="mono">
                  {v.variable}
                </th>
                <td className="mono masked" aria-label="hidden">
                  ••••••••
                </td>
                <td className="muted small">{timeAgo(v.updated_at, Date.now())}</td>
                <td className="num">
                  <DeleteButton
                    what={`${v.variable} from ${c.name}`}
                    run={() =>
                      api(`/api/v2/context/${c.id}/environment-variable/${encodeURIComponent(v.variable)}`, {
                        method: 'DELETE',
                      }).then(() => client.invalidateQueries({ queryKey: key }))
                    }
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
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
        <Field id={`${headId}-name`} label="Name">
          <input
            id={`${headId}-name`}
            value={name}
            onChange={(e) => setName(e.target.value)}
            required
            pattern="[A-Za-z_][A-Za-z0-9_]*"
            title="Letters, digits and underscores, not starting with a digit"
            spellCheck={false}
            autoComplete="off"
          />
        </Field>
        <Field id={`${headId}-value`} label="Value">
          <input
            id={`${headId}-value`}
            type="password"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            required
            autoComplete="new-password"
          />
        </Field>
      </ChangeForm>
    </section>
  );
}

// ---- the user's API tokens ----

export function TokensPage() {
  const key = ['tokens'];
  const client = useQueryClient();
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
      <section className="card settings-section" aria-labelledby="tokens-head">
        <h2 id="tokens-head">Tokens</h2>
        {tokens.isPending ? (
          <Loading what="tokens" />
        ) : tokens.isError ? (
          <ErrorNote error={tokens.error} />
        ) : tokens.data.length === 0 ? (
          <p className="muted">No tokens.</p>
        ) : (
          <table className="settings-table">
            <caption className="sr-only">Personal API tokens</caption>
            <thead>
              <tr>
                <th scope="col">Label</th>
                <th scope="col">Starts with</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => (
                <tr key={t.id}>
                  <th scope="row">{t.label || <span className="muted">no label</span>}</th>
                  <td className="mono">{t.hint}…</td>
                  <td className="muted small">{t.created_at ? timeAgo(t.created_at, Date.now()) : ''}</td>
                  <td className="muted small">
                    {t.last_used_at ? timeAgo(t.last_used_at, Date.now()) : 'never'}
                  </td>
                  <td className="num">
                    <DeleteButton
                      what={`token ${t.label || t.hint}`}
                      run={() =>
                        api(`/api/v2/torus/users/me/tokens/${t.id}`, { method: 'DELETE' }).then(() =>
                          client.invalidateQueries({ queryKey: key }),
                        )
                      }
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
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
      </section>
    </>
  );
}
