// Who is signed in: `GET /api/v2/torus/session` (null: nobody, the sign-in page shows).
// Signing in trades an API token for the cookie (POST /api/v2/torus/session); signing out ends it.
import { useQuery, type QueryClient } from '@tanstack/react-query';
import { api, type User } from './api';

export const ME_KEY = ['me'] as const;

async function fetchMe(): Promise<User | null> {
  return (await api<{ user: User | null }>('/api/v2/torus/session')).user;
}

/**
 * Who the server said is signed in, in the page it served (src/api/web-routes.ts): read once, at
 * start; undefined when the page holds no answer (the app then asks).
 */
function sessionInPage(): User | null | undefined {
  const el = document.getElementById('torus-session');
  if (!el?.textContent) return undefined;
  try {
    const { user } = JSON.parse(el.textContent) as { user?: User | null };
    return user === undefined ? undefined : user;
  } catch {
    return undefined;
  } finally {
    el.remove();
  }
}

const initialMe = sessionInPage();

export function useMe() {
  return useQuery({
    queryKey: ME_KEY,
    queryFn: fetchMe,
    staleTime: Infinity,
    retry: 1,
    ...(initialMe !== undefined ? { initialData: initialMe } : {}),
  });
}

/** forgets everything read under the previous session and shows who is signed in now */
function switchUser(client: QueryClient, user: User | null): void {
  client.removeQueries({ predicate: (q) => q.queryKey[0] !== ME_KEY[0] });
  client.setQueryData(ME_KEY, user);
}

export async function signIn(client: QueryClient, token: string): Promise<void> {
  const user = await api<User>('/api/v2/torus/session', { method: 'POST', body: { token } });
  switchUser(client, user);
}

export async function signOut(client: QueryClient): Promise<void> {
  await api('/api/v2/torus/session', { method: 'DELETE' });
  switchUser(client, null);
}

/** a request answered 401 (the session ended elsewhere): back to the sign-in page */
export function sessionLost(client: QueryClient): void {
  switchUser(client, null);
}
