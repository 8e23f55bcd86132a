// Proof that the person at this browser is a Kanidm person: a Kiwi ID session
// whose sign-in went through Kanidm (not through an upstream IdP) within the
// last ten minutes. Self-service linking needs it together with a fresh
// sign-in at the upstream, so a link always has proof of both sides.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Accounts } from '../oidc/accounts.js';

/** How recent the Kanidm sign-in behind a self-service link must be. */
export const SELF_LINK_WINDOW_S = 600;

export interface KanidmProof {
  person: string;
  sessionUid: string;
}

interface SessionView {
  accountId?: string;
  uid: string;
  loginTs?: number;
  amr?: string[];
}

const session = async (provider: Provider, req: IncomingMessage, res: ServerResponse) =>
  (await provider.Session.get({ req, res } as never)) as unknown as SessionView;

export async function kanidmProof(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<KanidmProof | undefined> {
  const s = await session(provider, req, res);
  if (!s.accountId || !s.loginTs || s.amr?.includes('fed')) return undefined;
  if (Math.floor(Date.now() / 1000) - s.loginTs > SELF_LINK_WINDOW_S) return undefined;
  return { person: s.accountId, sessionUid: s.uid };
}

/** The same session and the same person: a link must not land on whoever signed in since. */
export const sameProof = (a: KanidmProof, b: KanidmProof): boolean => a.sessionUid === b.sessionUid && a.person === b.person;

/** Still the session that asked (signed in at any time: the proof's age was checked when it was asked). */
export async function sameSession(provider: Provider, proof: KanidmProof, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const s = await session(provider, req, res);
  return s.accountId !== undefined && sameProof({ person: s.accountId, sessionUid: s.uid }, proof);
}

/** The person's name for the pages (the account snapshot's username), or its id. */
export async function personName(accounts: Pick<Accounts, 'find'>, person: string): Promise<string> {
  return (await accounts.find(person))?.preferred_username ?? person;
}
