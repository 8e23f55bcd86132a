// Which services to tell when a Kiwi ID session ends other than by the
// user's own logout (which oidc-provider handles at the end_session endpoint):
// when it expires, when an admin revokes it (`kiwi-id session revoke`), or
// when the session stops belonging to its person (the login method found the
// account invalid at the source, or another person signed in in that browser).
//
// Every signed-in session is mirrored into a small "SessionWatch" record
// (account, sid per client, grants, end time). The session record itself
// vanishes when it expires, so the watch outlives it by a grace period; the
// issuer's timer finds watches whose end has passed and sends the logout
// tokens. consumeOnce makes one node (of a cluster) send them, once.
import type { Logger } from 'pino';
import type { AdapterPayload } from '../../state/oidc-adapter.js';
import type { StateStore } from '../../state/store.js';
import type { LogoutReason } from './backchannel.js';

export const SESSION_WATCH_MODEL = 'SessionWatch';
/** How long after its end a session's logout is still sent (e.g. after downtime). */
export const WATCH_GRACE_S = 24 * 3600;

export interface WatchPayload {
  accountId: string;
  /** client_id → sid of this session at that client. */
  clients: Record<string, string>;
  grants: string[];
  /** Epoch ms at which the session ends. */
  endsAt: number;
  /** Set when an admin ended the session. */
  ended?: 'admin';
}

type Notify = (clientId: string, sub: string, sid: string | undefined, reason: LogoutReason) => void;

interface SessionPayload {
  accountId?: string;
  exp?: number;
  authorizations?: Record<string, { sid?: string; grantId?: string }>;
}

export class SessionWatch {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly store: StateStore,
    private readonly notify: Notify,
    private readonly log: Logger,
  ) {}

  /** Mirrors a saved Session record; sessions without a signed-in user are not watched. */
  async track(sessionId: string, payload: AdapterPayload, expiresInS: number | undefined): Promise<void> {
    const s = payload as SessionPayload;
    const previous = await this.store.find(SESSION_WATCH_MODEL, sessionId);
    const prev = previous && previous.consumedAt === null ? (previous.payload as unknown as WatchPayload) : undefined;
    if (prev && prev.accountId !== s.accountId) {
      // Same browser session, no longer that person: their services are told now.
      for (const [clientId, sid] of Object.entries(prev.clients)) this.notify(clientId, prev.accountId, sid, 'invalidated');
    }
    if (!s.accountId || !s.authorizations || Object.keys(s.authorizations).length === 0) {
      await this.store.destroy(SESSION_WATCH_MODEL, sessionId);
      return;
    }
    const endsAt = typeof s.exp === 'number' ? s.exp * 1000 : Date.now() + (expiresInS ?? 0) * 1000;
    const clients: Record<string, string> = {};
    const grants: string[] = [];
    for (const [clientId, a] of Object.entries(s.authorizations)) {
      if (a.sid) clients[clientId] = a.sid;
      if (a.grantId) grants.push(a.grantId);
    }
    const watch: WatchPayload = { accountId: s.accountId, clients, grants, endsAt };
    const ttl = Math.max(0, Math.ceil((endsAt - Date.now()) / 1000)) + WATCH_GRACE_S;
    await this.store.upsert(SESSION_WATCH_MODEL, sessionId, watch as unknown as Record<string, unknown>, ttl);
  }

  /** The session record was deleted by oidc-provider (logout, new identifier): nothing left to watch. */
  async untrack(sessionId: string): Promise<void> {
    await this.store.destroy(SESSION_WATCH_MODEL, sessionId);
  }

  /** Sends the logout tokens of every session that has ended; resolves to how many sessions. */
  check(now = Date.now()): Promise<number> {
    // One pass at a time: the timer and tests may ask at once.
    this.running ??= this.checkOnce(now).finally(() => (this.running = undefined));
    return this.running;
  }

  private async checkOnce(now: number): Promise<number> {
    let ended = 0;
    for (const rec of await this.store.list(SESSION_WATCH_MODEL)) {
      const w = rec.payload as unknown as WatchPayload;
      if (rec.consumedAt !== null || !(w.endsAt <= now)) continue;
      if ((await this.store.consumeOnce(SESSION_WATCH_MODEL, rec.id)) !== 'consumed') continue; // another node has it
      const reason: LogoutReason = w.ended === 'admin' ? 'admin' : 'expired';
      for (const [clientId, sid] of Object.entries(w.clients)) this.notify(clientId, w.accountId, sid, reason);
      await this.store.destroy(SESSION_WATCH_MODEL, rec.id);
      ended++;
    }
    if (ended) this.log.info({ sessions: ended }, 'sessions ended: back-channel logout queued');
    return ended;
  }

  start(intervalMs: number): void {
    this.timer ??= setInterval(() => {
      this.check().catch((err) => this.log.error({ err_message: (err as Error).message }, 'session watch failed'));
    }, intervalMs).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export interface RevokedSession {
  sessionId: string;
  accountId: string;
  clients: string[];
}

/**
 * Admin revocation: ends the matching sessions now (session record and the
 * session's grants, so refresh tokens and introspection stop too) and marks
 * their watches ended, so the running issuer sends the logout tokens at its
 * next check. Works from another process (the CLI) on the same state store.
 */
export async function revokeSessions(store: StateStore, accountIds: ReadonlySet<string>): Promise<RevokedSession[]> {
  const out: RevokedSession[] = [];
  for (const rec of await store.list(SESSION_WATCH_MODEL)) {
    const w = rec.payload as unknown as WatchPayload;
    if (!accountIds.has(w.accountId) || rec.consumedAt !== null || w.ended === 'admin') continue;
    await store.destroy('Session', rec.id);
    for (const grantId of w.grants) await store.revokeByGrantId(grantId);
    const ended: WatchPayload = { ...w, endsAt: 0, ended: 'admin' };
    await store.upsert(SESSION_WATCH_MODEL, rec.id, ended as unknown as Record<string, unknown>, WATCH_GRACE_S);
    out.push({ sessionId: rec.id, accountId: w.accountId, clients: Object.keys(w.clients) });
  }
  return out;
}

/** Live sessions per the watches (for `kiwi-id session list`). */
export async function listSessions(store: StateStore): Promise<Array<{ sessionId: string; accountId: string; clients: string[]; endsAt: number }>> {
  const now = Date.now();
  const recs = await store.list(SESSION_WATCH_MODEL);
  return recs
    .map((r) => ({ rec: r, w: r.payload as unknown as WatchPayload }))
    .filter(({ rec, w }) => rec.consumedAt === null && w.endsAt > now)
    .map(({ rec, w }) => ({ sessionId: rec.id, accountId: w.accountId, clients: Object.keys(w.clients), endsAt: w.endsAt }));
}
