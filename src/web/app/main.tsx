// The web app's entry: one TanStack Query client for the API (a 401 anywhere means the session is
// gone: the sign-in page comes back), then the app.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { ApiError } from './api';
import { App } from './app';
import { ME_KEY, sessionLost } from './session';
import './styles.css';

const onError = (err: unknown, key?: readonly unknown[]) => {
  if (err instanceof ApiError && err.status === 401 && key?.[0] !== ME_KEY[0]) sessionLost(client);
};

const client: QueryClient = new QueryClient({
  queryCache: new QueryCache({ onError: (err, query) => onError(err, query.queryKey) }),
  mutationCache: new MutationCache({ onError: (err) => onError(err) }),
  defaultOptions: {
    queries: {
      // 4xx answers do not get better by asking again
      retry: (count, err) => !(err instanceof ApiError && err.status < 500) && count < 2,
      refetchOnWindowFocus: true,
      staleTime: 2_000,
    },
  },
});

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={client}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
