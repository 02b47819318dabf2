-- Torus schema, version 5 (owner: secrets/): project environment variables, contexts and their
-- environment variables, project SSH keys. Every secret value is stored sealed by a SecretCipher
-- ('tk1:<key id>:<base64 nonce|ciphertext|tag>'); the keys live outside the database.

CREATE TABLE project_env_vars (
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  name text NOT NULL,
  ciphertext text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, name)
);

-- CircleCI's contexts: owned by an organization, names unique within it.
CREATE TABLE contexts (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, name)
);

CREATE TABLE context_env_vars (
  context_id uuid NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
  name text NOT NULL,
  ciphertext text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (context_id, name)
);

-- Additional SSH keys of a project (the `add_ssh_keys` step), found by either fingerprint form.
CREATE TABLE project_ssh_keys (
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  -- MD5 of the public key blob, colon-separated hex, as CircleCI shows it
  fingerprint text NOT NULL,
  -- 'SHA256:<base64 without padding>', as ssh-keygen -l prints it
  fingerprint_sha256 text NOT NULL,
  -- '' for every host
  hostname text NOT NULL DEFAULT '',
  -- OpenSSH one-line public key ('ssh-ed25519 AAAA…'); not secret
  public_key text NOT NULL,
  private_key_ciphertext text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, fingerprint, hostname)
);
CREATE INDEX project_ssh_keys_sha256 ON project_ssh_keys (project_id, fingerprint_sha256);
