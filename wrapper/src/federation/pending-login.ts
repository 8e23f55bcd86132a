// A sign-in (or a self-service link) waiting at an upstream IdP. Its state,
// nonce and PKCE verifier are kept in the state store under the upstream's
// `state` for ten minutes, and bound to the browser that started it by a
// cookie scoped to the IdP's callback path: the callback must bring the same
// browser back, so a state caught in a log or a Referer cannot be finished
// elsewhere. At the callback the record is consumed once.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { cookieValue } from '../server/cookies.js';
import { sendErrorPage } from '../server/error-page.js';
import type { StateStore } from '../state/store.js';
import type { FederationMetrics } from './metrics.js';
import type { UpstreamClient } from './upstream-client.js';

/** The state store's model of pending logins (replicated across a cluster as sign-in state). */
const PENDING = 'FederationLogin';
/** How long a person may take at the upstream; also the lifetime of the in-flow link offer. */
export const PENDING_TTL_S = 600;

/** What the upstream round trip is for: finishing an interaction, or linking a signed-in person. */
export type PendingPurpose =
  | { purpose: 'signin'; idp: string; uid: string }
  | { purpose: 'link'; idp: string; person: string; sessionUid: string };

export type Pending = PendingPurpose & {
  nonce?: string;
  verifier: string;
  /** SHA-256 of the binding cookie's value: the store never holds the cookie itself. */
  binding: string;
};

const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url');

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** One cookie per pending login, so two sign-ins in one browser do not overwrite each other's. */
const bindingCookieName = (state: string) => `kiwi_fed_${sha256(state).slice(0, 16)}`;

export interface PendingDeps {
  store: StateStore;
  metrics: FederationMetrics;
  log: Logger;
}

/**
 * Starts the upstream round trip: the pending login is stored, the browser
 * gets its binding cookie and is sent to the upstream. An upstream that cannot
 * be reached (its discovery fails) gets a 503 page instead.
 */
export async function sendToUpstream(d: PendingDeps, client: UpstreamClient, what: PendingPurpose, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let started;
  try {
    started = await client.begin();
  } catch (err) {
    d.metrics.signIn(client.idp.id, 'unavailable');
    d.log.warn({ idp: client.idp.id, err_message: (err as Error).message }, 'upstream IdP unavailable');
    return sendErrorPage(req, res, 503, `${client.idp.display_name} cannot be reached right now. Please try again later or sign in another way.`);
  }
  const binding = randomBytes(32).toString('base64url');
  const pending: Pending = {
    ...what,
    verifier: started.pending.verifier,
    ...(started.pending.nonce && { nonce: started.pending.nonce }),
    binding: sha256(binding),
  };
  await d.store.upsert(PENDING, started.pending.state, pending as unknown as Record<string, unknown>, PENDING_TTL_S);
  // Lax: sent on the upstream's top-level redirect back, never on cross-site subrequests.
  const cookie = `${bindingCookieName(started.pending.state)}=${binding}; Path=${client.idp.callback_path}; Max-Age=${PENDING_TTL_S}; HttpOnly; Secure; SameSite=Lax`;
  res.writeHead(303, { location: started.url.href, 'set-cookie': cookie, 'cache-control': 'no-store' }).end();
}

/**
 * The pending login a callback finishes, or why it is refused. The record is
 * consumed (a second callback with the same state is refused) and the binding
 * cookie cleared whatever the outcome.
 */
export async function takePending(
  store: StateStore,
  idp: { id: string; callback_path: string },
  state: string | null,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<{ pending: Pending } | { refused: string }> {
  if (!state) return { refused: 'callback without state' };
  const rec = await store.find(PENDING, state);
  const pending = rec?.payload as unknown as Pending | undefined;
  if (!pending || pending.idp !== idp.id || (await store.consumeOnce(PENDING, state)) !== 'consumed') {
    return { refused: 'unknown, expired, replayed or foreign state' };
  }
  const name = bindingCookieName(state);
  const presented = cookieValue(req.headers.cookie, name);
  res.setHeader('set-cookie', `${name}=; Path=${idp.callback_path}; Max-Age=0; HttpOnly; Secure; SameSite=Lax`);
  if (!presented || !sameSecret(sha256(presented), pending.binding)) {
    return { refused: 'callback reached a browser that did not start this sign-in' };
  }
  return { pending };
}
