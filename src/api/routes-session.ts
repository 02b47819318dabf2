// The web app's sign-in and sign-out: `POST /api/v2/torus/session` takes a personal API token and
// answers with an HttpOnly, SameSite=Strict session cookie; `DELETE` ends the session; `GET` says
// who is signed in (`{user: null}` when nobody is). The cookie holds a token made for the session
// alone (label `web session`), never the one the user typed, so signing out revokes exactly what
// the browser held. Every API route then accepts the cookie in place of a token (http.ts
// `requestToken`, with its cross-site request forgery check).
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Accounts } from '../accounts/index.js';
import { isTorusError, TorusError, type Resources } from '../ops/index.js';
import {
  bodyObject,
  isFromWebApp,
  optionalString,
  SESSION_COOKIE,
  sessionCookie,
  WEB_APP_HEADER,
} from './http.js';
import { userJson } from './routes-torus.js';

export interface SessionRouteDeps {
  res: Resources;
  accounts: Accounts;
}

/** how long a browser keeps its session; signing out ends it sooner */
export const SESSION_MAX_AGE_S = 30 * 24 * 60 * 60;
export const SESSION_TOKEN_LABEL = 'web session';

/** Sign-in and sign-out come from the web app only: its header proves the page is Torus' own. */
function requireWebApp(req: FastifyRequest): void {
  if (!isFromWebApp(req)) {
    throw new TorusError(
      'TORUS_E_FORBIDDEN',
      `Sessions are for the Torus web app (requests with its ${WEB_APP_HEADER} header, from its own origin); scripts send an API token in the Circle-Token header instead.`,
    );
  }
}

/** `Secure` when the browser reached Torus over HTTPS (directly, or as its configured URL says) */
function cookieAttributes(req: FastifyRequest, res: Resources, maxAgeS: number): string {
  const secure = req.protocol === 'https' || res.settings.url.startsWith('https:');
  return `Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure ? '; Secure' : ''}`;
}

function clearCookie(req: FastifyRequest, reply: FastifyReply, res: Resources): void {
  void reply.header('set-cookie', `${SESSION_COOKIE}=; ${cookieAttributes(req, res, 0)}`);
}

/** `GET /api/v2/torus/session`'s answer: who the request's session cookie is, if anyone */
export async function sessionAnswer(
  accounts: SessionRouteDeps['accounts'],
  req: FastifyRequest,
): Promise<{ user: ReturnType<typeof userJson> | null }> {
  const session = sessionCookie(req);
  const user = session ? await accounts.authenticate(session.token) : null;
  return { user: user ? userJson(user) : null };
}

export function sessionRoutes(deps: SessionRouteDeps): FastifyPluginAsync {
  const { res, accounts } = deps;
  const S = '/api/v2/torus/session';

  return async (app: FastifyInstance) => {
    // who the session is: the app asks at start, and a signed-out browser is no error here
    app.get(S, async (req) => sessionAnswer(accounts, req));

    app.post(S, async (req, reply) => {
      requireWebApp(req);
      const token = optionalString(bodyObject(req), 'token')?.trim();
      if (!token)
        throw new TorusError('TORUS_E_BAD_REQUEST', 'token is required: paste a personal API token');
      const user = await accounts.authenticate(token);
      if (!user) throw new TorusError('TORUS_E_UNAUTHORIZED', 'Invalid token provided.');
      const session = await accounts.createToken(user.id, SESSION_TOKEN_LABEL);
      void reply.header(
        'set-cookie',
        `${SESSION_COOKIE}=${session.id}.${session.token}; ${cookieAttributes(req, res, SESSION_MAX_AGE_S)}`,
      );
      return reply.status(201).send(userJson(user));
    });

    app.delete(S, async (req, reply) => {
      requireWebApp(req);
      const session = sessionCookie(req);
      clearCookie(req, reply, res);
      if (!session) return { message: 'Signed out.' };
      const user = await accounts.authenticate(session.token);
      // the cookie's id must name this very session token: a tampered one revokes nothing else
      const held = user
        ? (await accounts.listTokens(user.id)).find(
            (t) =>
              t.id === session.tokenId && t.label === SESSION_TOKEN_LABEL && session.token.startsWith(t.hint),
          )
        : undefined;
      if (user && held) {
        try {
          await accounts.revokeToken(user.id, held.id);
        } catch (err) {
          // signed out twice at once: the other request revoked it already
          if (!(isTorusError(err) && err.code === 'TORUS_E_NOT_FOUND')) throw err;
        }
      }
      return { message: 'Signed out.' };
    });
  };
}
