// Who is signed in: `GET /api/v2/torus/session` (null: nobody, the sign-in page shows).
// Signing in trades an API token for the cookie (POST /api/v2/torus/session); signing out ends it.
import { useQuery, type QueryClient } from '@tanstack/react-query';
import { api, type User } from './api';

export const ME_KEY = ['me'] as const;

async function fetchMe(): Promise<User | null> {
  return (await api<{ user: User | null }>('/api/v2/torus/session')).user;
}

export function useMe() {
  return useQuery({ queryKey: ME_KEY, queryFn: fetchMe, staleTime: Infinity, retry: 1 });
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
