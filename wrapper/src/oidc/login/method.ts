// How the issuer signs users in. Kanidm is the built-in method; federation
// with external IdPs adds more implementations beside it. A method sends the
// browser somewhere (`begin`) and, when it comes back to the login callback,
// turns that into the claims of a signed-in person (`complete`).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccountClaims } from '../accounts.js';

/** A login that came back; `uid` is the issuer interaction it belongs to. */
export interface CompletedLogin {
  uid: string;
  claims: AccountClaims;
}

export class UpstreamLoginError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'access_denied' | 'server_error',
    message: string,
    /** Set when the failure belongs to a known interaction, which can then be ended with `error`. */
    readonly uid?: string,
  ) {
    super(message);
  }
}

export interface LoginMethod {
  begin(uid: string): Promise<URL>;
  complete(callbackUrl: URL): Promise<CompletedLogin>;
  /**
   * The user signed out of Kiwi ID (RP-initiated logout): end the session the
   * method itself keeps in the browser, so "signed out" means signed out.
   */
  endSession?(req: IncomingMessage, res: ServerResponse): void;
  /** Is the signed-in person still valid at the source, and with which claims? (before each authorization) */
  revalidate?(sub: string): Promise<Revalidation>;
}

export type Revalidation =
  | { status: 'fresh' } // nothing new: the snapshot stands
  | { status: 'updated'; claims: AccountClaims }
  | { status: 'invalid'; reason: string } // account or session no longer valid
  | { status: 'unavailable'; reason: string }; // could not ask: fail closed
