// Projects and their organizations: a plain-git project is `circleci/<org>/<project>`, its
// organization `circleci/<org>`, created on first use.
import { TorusError } from '../ops/index.js';
import { type EngineCore, type ProjectRecord, PROJECT_COLUMNS, isUuid } from './core.js';
import { classifyVcsUrl, vcsUrlProblem } from './vcs.js';
import { existsSync } from 'node:fs';

export interface ProjectRow {
  id: string;
  orgId: string;
  orgName: string;
  name: string;
  slug: string;
  vcsUrl: string;
  defaultBranch: string;
  createdAt: Date;
}

export interface CreateProjectInput {
  orgName: string;
  /** default: the repository's base name */
  name?: string;
  vcsUrl: string;
  defaultBranch?: string;
}

/** Names that are safe in a slug and a URL path segment. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function toProjectRow(r: ProjectRecord): ProjectRow {
  return {
    id: r.id,
    orgId: r.org_id,
    orgName: r.org_name,
    name: r.name,
    slug: r.slug,
    vcsUrl: r.vcs_url,
    defaultBranch: r.default_branch,
    createdAt: r.created_at,
  };
}

/** `…/org/repo.git` → `repo`; `git@host:org/repo.git` → `repo`. */
export function repoBaseName(vcsUrl: string): string {
  const trimmed = vcsUrl.replace(/[/\\]+$/, '');
  const last = trimmed.split(/[/:\\]/).pop() ?? '';
  return last.replace(/\.git$/, '');
}

export async function createProject(core: EngineCore, input: CreateProjectInput): Promise<ProjectRow> {
  const given = input.vcsUrl.trim();
  if (!given)
    throw new TorusError('TORUS_E_BAD_REQUEST', 'vcs_url is required: a git URL or a path to a repository.');
  const problem = vcsUrlProblem(given);
  if (problem) throw new TorusError('TORUS_E_VCS', `Cannot use ${given}: ${problem}.`);
  const where = classifyVcsUrl(given);
  // a relative path means the server's working directory now: store where it really is
  const vcsUrl = where.local && !given.startsWith('file://') ? where.path : given;
  const name = input.name ?? repoBaseName(vcsUrl);
  for (const [what, value] of [
    ['organization name', input.orgName],
    ['project name', name],
  ] as const) {
    if (!NAME_RE.test(value)) {
      throw new TorusError(
        'TORUS_E_BAD_REQUEST',
        `Invalid ${what} ${JSON.stringify(value)}: use letters, digits, '.', '_' and '-' (at most 100, starting with a letter or digit).`,
      );
    }
  }
  if (where.local && !existsSync(where.path)) {
    throw new TorusError(
      'TORUS_E_VCS',
      `No repository at ${where.path}: give a path or URL the server can read.`,
    );
  }
  let defaultBranch = input.defaultBranch?.trim();
  if (!defaultBranch) {
    defaultBranch = (await core.vcs.defaultBranch(vcsUrl)) ?? 'main';
  }
  const orgSlug = `circleci/${input.orgName}`;
  const slug = `${orgSlug}/${name}`;
  const row = await core.res.db.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO organizations (id, name, vcs_type, slug) VALUES ($1, $2, 'circleci', $3) ON CONFLICT (slug) DO NOTHING`,
      [core.res.ids.uuid(), input.orgName, orgSlug],
    );
    const org = await tx.query<{ id: string; name: string }>(
      'SELECT id, name FROM organizations WHERE slug = $1',
      [orgSlug],
    );
    const orgRow = org.rows[0];
    if (!orgRow) throw new Error(`internal: organization ${orgSlug} vanished`);
    const ins = await tx.query<{ id: string; created_at: Date }>(
      `INSERT INTO projects (id, org_id, name, slug, vcs_url, default_branch, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (slug) DO NOTHING RETURNING id, created_at`,
      [core.res.ids.uuid(), orgRow.id, name, slug, vcsUrl, defaultBranch, core.res.clock.now()],
    );
    const created = ins.rows[0];
    if (!created) throw new TorusError('TORUS_E_CONFLICT', `Project ${slug} already exists.`);
    return {
      id: created.id,
      orgId: orgRow.id,
      orgName: orgRow.name,
      name,
      slug,
      vcsUrl,
      defaultBranch,
      createdAt: created.created_at,
    };
  });
  return row;
}

export async function getProject(core: EngineCore, slugOrId: string): Promise<ProjectRow | null> {
  const byId = isUuid(slugOrId);
  const { rows } = await core.res.db.query<ProjectRecord>(
    `SELECT ${PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id WHERE ${byId ? 'p.id' : 'p.slug'} = $1`,
    [slugOrId],
  );
  return rows[0] ? toProjectRow(rows[0]) : null;
}

export async function listProjects(core: EngineCore): Promise<ProjectRow[]> {
  const { rows } = await core.res.db.query<ProjectRecord>(
    `SELECT ${PROJECT_COLUMNS} FROM projects p JOIN organizations o ON o.id = p.org_id ORDER BY p.slug`,
  );
  return rows.map(toProjectRow);
}
