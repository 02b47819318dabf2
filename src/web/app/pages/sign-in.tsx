// Sign-in with a personal API token (the one `npm start` prints at the first start, or one made
// with the tokens API). The token is exchanged for an HttpOnly session cookie and not kept here.
import { useState, type FormEvent } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { signIn } from '../session';
import { FormError, Logo, useSubmit } from '../components';

export function SignInPage() {
  const client = useQueryClient();
  const [token, setToken] = useState('');
  // on success the app shows its pages in place of this one
  const { busy, error, submit } = useSubmit({ leavesPage: true });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit(() => signIn(client, token));
  };

  return (
    <main className="sign-in" id="main">
      <form className="card sign-in-card" onSubmit={onSubmit} aria-labelledby="sign-in-title">
        <div className="sign-in-brand">
          <Logo /> Torus
        </div>
        <h1 id="sign-in-title">Sign in</h1>
        <label htmlFor="token">Personal API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="current-password"
          autoFocus
          required
          spellCheck={false}
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-describedby="token-help"
          aria-invalid={error ? true : undefined}
        />
        <p id="token-help" className="hint">
          The admin token <code>npm start</code> printed at its first start, or any token of yours. It is
          traded for a session cookie and not stored in the browser.
        </p>
        <FormError error={error} />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy || !token.trim()}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
