// The app's frame: the sign-in page until someone is signed in, then the top bar (brand, who, sign
// out) and the page for the address. Addresses follow CircleCI's web app, so the `web_url`s the
// API hands out open here: /pipelines/{slug}[/{number}[/workflows/{id}[/jobs/{number}]]]; settings
// at /settings/project/{slug}, /settings/organization/{vcs}/{org}/contexts, /settings/user/tokens.
import { useQueryClient } from '@tanstack/react-query';
import { Link, Route, Switch } from 'wouter';
import type { User } from './api';
import { ActionButton, ErrorNote, Loading, Logo } from './components';
import { JobPage } from './pages/job';
import { PipelinePage } from './pages/pipeline';
import { PipelinesPage } from './pages/pipelines';
import { ProjectsPage } from './pages/projects';
import { ContextsPage, ProjectSettingsPage, TokensPage } from './pages/settings';
import { SignInPage } from './pages/sign-in';
import { signOut, useMe } from './session';

export function App() {
  const me = useMe();
  if (me.isPending) return <Loading what="Torus" />;
  if (me.isError) return <ErrorNote error={me.error} />;
  if (me.data === null) return <SignInPage />;
  return <Shell user={me.data} />;
}

function Shell({ user }: { user: User }) {
  const client = useQueryClient();
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/" className="brand" aria-label="Torus: projects">
          <Logo /> Torus
        </Link>
        <div className="topbar-user">
          <span className="user-login" title={user.name}>
            {user.login}
          </span>
          <Link href="/settings/user/tokens" className="topbar-link">
            API tokens
          </Link>
          <ActionButton label="Sign out" busyLabel="Signing out…" run={() => signOut(client)} />
        </div>
      </header>
      <main id="main" className="page" tabIndex={-1}>
        <Switch>
          <Route path="/" component={ProjectsPage} />
          <Route path="/pipelines/:vcs/:org/:repo" component={PipelinesPage} />
          <Route path="/pipelines/:vcs/:org/:repo/:number" component={PipelinePage} />
          <Route path="/pipelines/:vcs/:org/:repo/:number/workflows/:workflowId" component={PipelinePage} />
          <Route
            path="/pipelines/:vcs/:org/:repo/:number/workflows/:workflowId/jobs/:job"
            component={JobPage}
          />
          <Route path="/settings/project/:vcs/:org/:repo" component={ProjectSettingsPage} />
          <Route path="/settings/organization/:vcs/:org/contexts" component={ContextsPage} />
          <Route path="/settings/user/tokens" component={TokensPage} />
          <Route>
            <h1>Page not found</h1>
            <p>
              Nothing lives at this address. <Link href="/">See the projects</Link>.
            </p>
          </Route>
        </Switch>
      </main>
    </>
  );
}
