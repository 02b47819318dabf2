// CircleCI API v2 scheduled pipelines (schedule triggers): `GET|POST /project/{slug}/schedule` and
// `GET|PATCH|DELETE /schedule/{id}`, in the reference spec's shapes. Any member of the project's
// organization may manage its schedules (CircleCI: write access to the project); the saver becomes
// the schedule's actor. A self-contained plugin with its own token check, like routes-secrets.ts.
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Accounts, User } from '../accounts/index.js';
import { TorusError, type Resources } from '../ops/index.js';
import {
  createPipelineSchedule,
  deletePipelineSchedule,
  getPipelineSchedule,
  listPipelineSchedules,
  updatePipelineSchedule,
  type PipelineSchedule,
  type ScheduleInput,
} from '../pipelines/index.js';
import { bodyObject, currentUser, iso, pageOf, paginate, tokenAuthHook, uuidParam } from './http.js';
import { canAccessOrg, findProject } from './reads.js';

export interface ScheduleRouteDeps {
  res: Resources;
  accounts: Accounts;
}

type SlugParams = { vcs: string; org: string; repo: string };
type IdParams = { id: string };

const NOT_FOUND = 'Schedule not found.';
/** who pipelines of a schedule with attribution "system" are attributed to */
const SYSTEM_ACTOR = {
  id: '00000000-0000-0000-0000-000000000000',
  login: 'system-actor',
  name: 'Scheduled',
  avatar_url: null,
};

export function scheduleRoutes(deps: ScheduleRouteDeps): FastifyPluginAsync {
  const { res, accounts } = deps;
  const db = res.db;
  const P = '/api/v2';

  return async (app: FastifyInstance) => {
    app.addHook('onRequest', tokenAuthHook(accounts));

    const slugs = new Map<string, string>();
    async function projectSlug(projectId: string): Promise<string> {
      let slug = slugs.get(projectId);
      if (!slug) {
        const r = await db.query<{ slug: string }>('SELECT slug FROM projects WHERE id = $1', [projectId]);
        slug = r.rows[0]?.slug ?? '';
        slugs.set(projectId, slug);
      }
      return slug;
    }

    async function json(s: PipelineSchedule) {
      const user = s.attributionActor === 'current' && s.actorId ? await accounts.getUser(s.actorId) : null;
      return {
        id: s.id,
        name: s.name,
        description: s.description,
        timetable: s.timetable,
        'attribution-actor': s.attributionActor,
        parameters: s.parameters,
        'project-slug': await projectSlug(s.projectId),
        actor: user ? { id: user.id, login: user.login, name: user.name, avatar_url: null } : SYSTEM_ACTOR,
        'created-at': iso(s.createdAt),
        'updated-at': iso(s.updatedAt),
      };
    }

    /** the schedule, if its project's organization is the user's (admins: any); else the same 404 */
    async function visibleSchedule(
      req: FastifyRequest<{ Params: IdParams }>,
      user: User,
    ): Promise<PipelineSchedule> {
      const s = await getPipelineSchedule(db, uuidParam(req.params.id, 'Schedule'));
      if (!s) throw new TorusError('TORUS_E_NOT_FOUND', NOT_FOUND);
      const org = await db.query<{ org_id: string }>('SELECT org_id FROM projects WHERE id = $1', [
        s.projectId,
      ]);
      if (!org.rows[0] || !(await canAccessOrg(db, user, org.rows[0].org_id)))
        throw new TorusError('TORUS_E_NOT_FOUND', NOT_FOUND);
      return s;
    }

    app.get<{ Params: SlugParams }>(`${P}/project/:vcs/:org/:repo/schedule`, async (req) => {
      const { vcs, org, repo } = req.params;
      const p = await findProject(db, currentUser(req), `${vcs}/${org}/${repo}`);
      const page = pageOf(req);
      const rows = await listPipelineSchedules(db, p.id, { offset: page.offset, limit: page.limit + 1 });
      const out = paginate(rows, page, (r) => r);
      return { items: await Promise.all(out.items.map(json)), next_page_token: out.next_page_token };
    });

    app.post<{ Params: SlugParams }>(`${P}/project/:vcs/:org/:repo/schedule`, async (req, reply) => {
      const { vcs, org, repo } = req.params;
      const user = currentUser(req);
      const p = await findProject(db, user, `${vcs}/${org}/${repo}`);
      const s = await createPipelineSchedule(res, p.id, user.id, bodyObject(req) as ScheduleInput);
      req.log.info({ project: p.slug, schedule: s.name, user: user.login }, 'schedule created');
      return reply.status(201).send(await json(s));
    });

    app.get<{ Params: IdParams }>(`${P}/schedule/:id`, async (req) =>
      json(await visibleSchedule(req, currentUser(req))),
    );

    app.patch<{ Params: IdParams }>(`${P}/schedule/:id`, async (req) => {
      const user = currentUser(req);
      const s = await visibleSchedule(req, user);
      const updated = await updatePipelineSchedule(res, s.id, user.id, bodyObject(req) as ScheduleInput);
      if (!updated) throw new TorusError('TORUS_E_NOT_FOUND', NOT_FOUND);
      req.log.info({ schedule: updated.name, user: user.login }, 'schedule updated');
      return json(updated);
    });

    app.delete<{ Params: IdParams }>(`${P}/schedule/:id`, async (req) => {
      const user = currentUser(req);
      const s = await visibleSchedule(req, user);
      if (!(await deletePipelineSchedule(db, s.id))) throw new TorusError('TORUS_E_NOT_FOUND', NOT_FOUND);
      req.log.info({ schedule: s.name, user: user.login }, 'schedule deleted');
      return { message: 'Schedule deleted.' };
    });
  };
}
