-- Torus schema, version 11 (owners: orbs/ for the orb registry, audit/ for audit_events): the local
-- orb registry of CircleCI Server — namespaces owned by organizations, orbs (public or private,
-- listed or unlisted, created here or imported from an upstream registry), their versions
-- (immutable semver, or `dev:<label>` that can be overwritten and expire), categories — and the
-- audit log every change to it writes, in the same transaction.

CREATE TABLE orb_namespaces (
  id uuid PRIMARY KEY,
  -- unique across current names and aliases (orb_namespace_aliases): orbs/registry.ts checks both
  -- under an advisory lock
  name text NOT NULL UNIQUE,
  -- the owning organization; null for a namespace imported from an upstream registry
  org_id uuid REFERENCES organizations (id),
  imported boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by uuid REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX orb_namespaces_org ON orb_namespaces (org_id);

-- CircleCI's renameNamespace keeps the old name working (configs referencing it still resolve)
-- until deleteNamespaceAlias removes it.
CREATE TABLE orb_namespace_aliases (
  name text PRIMARY KEY,
  namespace_id uuid NOT NULL REFERENCES orb_namespaces (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orb_namespace_aliases_namespace ON orb_namespace_aliases (namespace_id);

CREATE TABLE orbs (
  id uuid PRIMARY KEY,
  namespace_id uuid NOT NULL REFERENCES orb_namespaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  -- a private orb resolves and is listed only for members of its namespace's organization
  is_private boolean NOT NULL DEFAULT false,
  -- an unlisted orb still resolves; it is left out of listings
  listed boolean NOT NULL DEFAULT true,
  imported boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by uuid REFERENCES users (id) ON DELETE SET NULL,
  UNIQUE (namespace_id, name)
);

CREATE TABLE orb_versions (
  id uuid PRIMARY KEY,
  orb_id uuid NOT NULL REFERENCES orbs (id) ON DELETE CASCADE,
  -- 'X.Y.Z' or 'dev:<label>'
  version text NOT NULL,
  -- the semver parts (null for dev versions): resolution of `@1`, `@1.2`, `@volatile` orders by them
  major integer,
  minor integer,
  patch integer,
  -- the packed orb YAML
  source text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- last publish (differs from created_at only for an overwritten dev version)
  published_at timestamptz NOT NULL DEFAULT now(),
  published_by uuid REFERENCES users (id) ON DELETE SET NULL,
  -- dev versions: 90 days after their last publish they no longer resolve (and are swept)
  expires_at timestamptz,
  imported boolean NOT NULL DEFAULT false,
  UNIQUE (orb_id, version),
  CHECK ((major IS NULL) = (version LIKE 'dev:%')),
  CHECK ((expires_at IS NULL) = (major IS NOT NULL))
);
CREATE INDEX orb_versions_semver ON orb_versions (orb_id, major DESC, minor DESC, patch DESC)
  WHERE major IS NOT NULL;
CREATE INDEX orb_versions_expiry ON orb_versions (expires_at) WHERE expires_at IS NOT NULL;

-- The orb registry's categories (`circleci orb add-to-category`): the categories themselves are a
-- fixed list in orbs/categories.ts, so category_id has no table to reference.
CREATE TABLE orb_categorizations (
  orb_id uuid NOT NULL REFERENCES orbs (id) ON DELETE CASCADE,
  category_id uuid NOT NULL,
  PRIMARY KEY (orb_id, category_id)
);

-- The audit log (owner: audit/): who did what to which target, when. actor_id is null for the
-- system (the server itself, `torus admin` on the server's own database).
CREATE TABLE audit_events (
  id uuid PRIMARY KEY,
  -- the order events were written in (events of one transaction share occurred_at)
  seq bigint GENERATED ALWAYS AS IDENTITY,
  actor_id uuid REFERENCES users (id) ON DELETE SET NULL,
  -- '<subject>.<verb>', e.g. 'orb.publish', 'namespace.rename'
  action text NOT NULL,
  -- what was changed, in the domain's words: 'circleci/node@5.1.0' (orb.*), 'circleci' (namespace.*)
  target text NOT NULL,
  details jsonb NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL
);
CREATE INDEX audit_events_occurred ON audit_events (occurred_at, seq);
CREATE INDEX audit_events_actor ON audit_events (actor_id, occurred_at);
