// Replaces only the Kanidm round trip of a login: begin() sends the browser
// straight back to the issuer's login callback, complete() returns the claims
// the test chose. Everything else (interactions, consent, group policy, codes,
// tokens, cookies) is the real issuer.
import { randomBytes } from 'node:crypto';
import type { AccountClaims } from '../../../wrapper/src/oidc/accounts.js';
import { UpstreamLoginError, type CompletedLogin, type LoginMethod } from '../../../wrapper/src/oidc/login/method.js';
import type { IssuerHarness } from './issuer.js';

export class ScriptedLogin implements LoginMethod {
  /** Who "signs in at Kanidm" next. */
  user: AccountClaims = { sub: 'u-alice', preferred_username: 'alice', email: 'alice@kiwi.test', email_verified: true, groups: ['mail_users@idm.kiwi.test'] };
  started = 0;
  private readonly pending = new Map<string, string>();
  constructor(private readonly h: IssuerHarness) {}
  async begin(uid: string): Promise<URL> {
    this.started++;
    const state = randomBytes(16).toString('base64url');
    this.pending.set(state, uid);
    return new URL(`/oauth2/login/callback?state=${state}&code=scripted`, this.h.issuer);
  }
  async complete(url: URL): Promise<CompletedLogin> {
    const uid = this.pending.get(url.searchParams.get('state') ?? '');
    if (!uid) throw new UpstreamLoginError('invalid_request', 'unknown state');
    this.pending.delete(url.searchParams.get('state')!);
    return { uid, claims: { ...this.user } };
  }
}
