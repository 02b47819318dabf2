// The REST API as the app uses it: same-origin fetches that carry the session cookie and the app's
// header (the server's CSRF check, src/api/http.ts), `{message}` errors as ApiError, and the
// CircleCI shapes the pages read.

/** sent with every request: the server accepts the session cookie for changes only with it */
export const WEB_APP_HEADER = 'x-torus-web';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    credentials: 'same-origin',
    headers: {
      accept: 'application/json',
      [WEB_APP_HEADER]: '1',
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined; // not JSON (a proxy's error page, say): the status line speaks for it below
  }
  if (!res.ok) {
    const message =
      typeof (json as { message?: unknown } | undefined)?.message === 'string'
        ? (json as { message: string }).message
        : `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, message);
  }
  return json as T;
}

/** a path segment per slug part: `circleci/acme/widget` stays readable in URLs */
export function slugPath(slug: string): string {
  return slug.split('/').map(encodeURIComponent).join('/');
}

export interface Page<T> {
  items: T[];
  next_page_token: string | null;
}

export interface User {
  id: string;
  login: string;
  name: string;
}

export interface Project {
  slug: string;
  name: string;
  id: string;
  organization_name: string;
  organization_slug: string;
  vcs_info: { vcs_url: string; provider: string; default_branch: string };
}

export interface Pipeline {
  id: string;
  number: number;
  project_slug: string;
  state: string;
  created_at: string;
  updated_at: string;
  errors: Array<{ type: string; message: string }>;
  trigger: { type: string; received_at: string; actor: { login: string } };
  vcs: {
    revision: string;
    branch?: string;
    tag?: string;
    commit?: { subject: string; body: string | null };
  };
}

export interface Workflow {
  id: string;
  name: string;
  pipeline_id: string;
  pipeline_number: number;
  project_slug: string;
  status: string;
  created_at: string;
  stopped_at: string | null;
}

export interface WorkflowJob {
  id: string;
  name: string;
  type: 'build' | 'approval';
  status: string;
  job_number?: number;
  dependencies: string[];
  started_at: string | null;
  stopped_at: string | null;
  approval_request_id?: string;
}

export interface JobDetails {
  name: string;
  number: number;
  status: string;
  web_url: string;
  parallelism: number;
  parallel_runs: Array<{ index: number; status: string }>;
  started_at: string | null;
  stopped_at: string | null;
  queued_at: string | null;
  created_at: string;
  duration: number | null;
  executor: { type: string; resource_class: string };
  latest_workflow: { id: string; name: string };
  pipeline: { id: string };
  messages: Array<{ type: string; message: string; reason?: string }>;
}

export interface StepAction {
  index: number;
  step: number;
  name: string;
  status: string;
  exit_code: number | null;
  start_time: string | null;
  end_time: string | null;
  run_time_millis: number | null;
  bash_command: string | null;
  has_output: boolean;
  background: boolean;
}

export interface JobSteps {
  steps: Array<{ name: string; actions: StepAction[] }>;
}

/** every page of a paginated list (a job's tests, a project's variables): lists here are short */
export async function allPages<T>(path: string, maxPages = 50): Promise<T[]> {
  const items: T[] = [];
  let token: string | null = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page: Page<T> = await api<Page<T>>(
      token ? `${path}${sep}page-token=${encodeURIComponent(token)}` : path,
    );
    items.push(...page.items);
    token = page.next_page_token;
    if (!token) break;
  }
  return items;
}

/** `GET /api/v2/project/{slug}/{job-number}/tests` */
export interface TestResult {
  message: string | null;
  source: string;
  run_time: number;
  file: string;
  result: string;
  name: string;
  classname: string;
}

/** `GET /api/v2/project/{slug}/{job-number}/artifacts` */
export interface Artifact {
  path: string;
  node_index: number;
  url: string;
}

/** `GET /api/v2/pipeline/{id}/config` */
export interface PipelineConfig {
  source: string;
  compiled: string;
  'setup-config'?: string;
  'compiled-setup-config'?: string;
}

/** `GET /api/v2/project/{slug}/envvar`: the value comes masked (`xxxx` and its last four characters) */
export interface EnvVar {
  name: string;
  value: string;
  'created-at': string | null;
}

/** `GET /api/v1.1/project/{slug}/ssh-key` */
export interface SshKey {
  fingerprint: string;
  fingerprint_sha256: string;
  hostname: string;
  public_key: string;
  created_at: string;
}

/** `GET /api/v2/torus/users/me/tokens`: the secret itself is shown once, when it is made */
export interface ApiToken {
  id: string;
  label: string;
  hint: string;
  created_at: string | null;
  last_used_at: string | null;
}

export interface Context {
  id: string;
  name: string;
  created_at: string;
}

/** a context's variable: names and dates only, values never come back */
export interface ContextVariable {
  variable: string;
  created_at: string;
  updated_at: string;
  context_id: string;
}
