// OIDC Back-Channel Logout 1.0: when a user's Kiwi ID session ends, every
// service of that session with a `backchannel_logout_uri` gets a signed
// logout token (typ logout+jwt, sub, sid, events) POSTed to it.
//
// Delivery never holds up the logout: `notify` queues and returns. Each token
// gets a bounded number of attempts with exponential backoff; every failure
// is logged (client, attempt, status or error; never the token) and a token
// given up is logged as an error. Requests go through undici with normal TLS
// verification (the system roots, or only `[backchannel_logout] ca_file`).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import { Agent, request, type Dispatcher } from 'undici';
import { redactUrl } from '../../telemetry/log.js';

export interface BackchannelOptions {
  provider: Provider;
  log: Logger;
  /** undici dispatcher carrying the trusted CAs; default: undici's global one (system roots). */
  dispatcher?: Dispatcher;
  /** Bound on one attempt. */
  timeoutMs: number;
  maxAttempts: number;
  /** First retry delay, doubled per attempt (capped at 5 minutes). Default 1 s. */
  firstRetryMs?: number;
  countEvent?: (event: string) => void;
}

/** Why a session ended, as logged. */
export type LogoutReason = 'logout' | 'admin' | 'expired' | 'invalidated';

const MAX_BACKOFF_MS = 5 * 60_000;
const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

type LogoutClient = { clientId: string; backchannelLogoutUri?: string };
type Outcome = { ok: true; status: number } | { ok: false; retry: boolean; status?: number; error?: string };

export class BackchannelLogout {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly waits = new Set<{ timer: NodeJS.Timeout; done: () => void }>();
  private closed = false;

  constructor(private readonly o: BackchannelOptions) {}

  /** Queues the logout token for `clientId`; returns at once. */
  notify(clientId: string, sub: string, sid: string | undefined, reason: LogoutReason): void {
    if (this.closed) return;
    const p = this.deliver(clientId, sub, sid, reason)
      .catch((err) => this.o.log.error({ client_id: clientId, err_message: (err as Error).message }, 'back-channel logout failed'))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Resolves when every queued delivery has finished (delivered or given up). */
  async idle(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  /** Stops retrying; deliveries under way end at their next step. */
  close(): void {
    this.closed = true;
    for (const w of this.waits) {
      clearTimeout(w.timer);
      w.done();
    }
    this.waits.clear();
  }

  private async deliver(clientId: string, sub: string, sid: string | undefined, reason: LogoutReason): Promise<void> {
    const { log, maxAttempts } = this.o;
    let lastProblem = '';
    for (let attempt = 1; attempt <= maxAttempts && !this.closed; attempt++) {
      // Looked up per attempt: a client removed meanwhile is not called any more.
      const client = (await this.o.provider.Client.find(clientId)) as unknown as LogoutClient | undefined;
      const uri = client?.backchannelLogoutUri;
      if (!client || !uri) {
        log.info({ client_id: clientId, reason }, 'back-channel logout skipped: client gone or without backchannel_logout_uri');
        return;
      }
      // A fresh token per attempt: its lifetime (2 minutes) may be shorter than the retries.
      const outcome = await this.post(uri, await this.logoutToken(client, sub, sid));
      const fields = { client_id: clientId, uri: redactUrl(uri), attempt, max_attempts: maxAttempts, reason };
      if (outcome.ok) {
        log.info({ ...fields, status: outcome.status }, 'back-channel logout delivered');
        this.o.countEvent?.('backchannel.delivered');
        return;
      }
      lastProblem = outcome.status ? `HTTP ${outcome.status}` : outcome.error ?? 'failed';
      log.warn({ ...fields, status: outcome.status, error: outcome.error }, 'back-channel logout delivery failed');
      if (!outcome.retry) break;
      if (attempt < maxAttempts) await this.wait(Math.min(MAX_BACKOFF_MS, (this.o.firstRetryMs ?? 1000) * 2 ** (attempt - 1)));
    }
    if (this.closed) return;
    log.error({ client_id: clientId, reason, last_problem: lastProblem }, 'back-channel logout given up; the service keeps its session until it expires');
    this.o.countEvent?.('backchannel.failed');
  }

  /** Signed like id_tokens (jwt_private_key), audience the client, 2 minutes. */
  private async logoutToken(client: LogoutClient, sub: string, sid: string | undefined): Promise<string> {
    const IdToken = this.o.provider.IdToken as unknown as new (claims: object, o: object) => {
      mask: object;
      set(k: string, v: unknown): void;
      issue(o: { use: string }): Promise<string>;
    };
    const token = new IdToken({ sub }, { client, ctx: undefined });
    token.mask = { sub: null };
    token.set('events', { [LOGOUT_EVENT]: {} });
    token.set('jti', randomBytes(16).toString('base64url'));
    if (sid) token.set('sid', sid);
    return token.issue({ use: 'logout' });
  }

  private async post(uri: string, logoutToken: string): Promise<Outcome> {
    try {
      const res = await request(uri, {
        method: 'POST',
        dispatcher: this.o.dispatcher,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'cache-control': 'no-store' },
        body: new URLSearchParams({ logout_token: logoutToken }).toString(),
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      await res.body.dump();
      const status = res.statusCode;
      if (status === 200 || status === 204) return { ok: true, status };
      // 4xx: the service rejected the token; sending it again will not help (except 408/429).
      return { ok: false, status, retry: status >= 500 || status === 408 || status === 429 };
    } catch (err) {
      const e = err as Error & { code?: string };
      return { ok: false, retry: true, error: e.code ?? e.name ?? e.message };
    }
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const w = {
        timer: setTimeout(() => {
          this.waits.delete(w);
          resolve();
        }, ms),
        done: resolve,
      };
      w.timer.unref();
      this.waits.add(w);
    });
  }
}

/** The dispatcher for logout URIs: only `caFile`'s CAs when set, else the default roots; verification always on. */
export function backchannelAgent(caFile: string | undefined): Dispatcher | undefined {
  return caFile ? new Agent({ connect: { ca: fs.readFileSync(caFile), rejectUnauthorized: true } }) : undefined;
}
