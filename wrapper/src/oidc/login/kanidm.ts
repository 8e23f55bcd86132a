// Users log in at Kanidm: Kiwi ID is an OAuth2 client of Kanidm (its own
// registration, `upstream_oauth2.client_id`). The browser goes to Kanidm's
// authorisation UI through the public listener (same origin, so passkeys and
// cookies work); the code is redeemed over loopback with Kanidm's CA pinned.
import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { request } from 'undici';
import { cookieValue } from '../../server/cookies.js';
import type { StateStore } from '../../state/store.js';
import type { AccountClaims } from '../accounts.js';
import { UpstreamLoginError, type CompletedLogin, type LoginMethod, type Revalidation } from './method.js';

export interface KanidmLoginOptions {
  /** Public origin the browser uses (the issuer; also Kanidm's `origin`). */
  publicOrigin: string;
  /** Loopback origin of Kanidm for back-channel calls. */
  upstreamAddr: string;
  dispatcher: Dispatcher;
  clientId: string;
  clientSecret: string;
  /** Where Kanidm sends the browser back to (registered at Kanidm). */
  redirectUri: string;
  store: StateStore;
  /** How long Kanidm's refresh token is kept (Kiwi ID's refresh_token_ttl). */
  grantTtlSeconds?: number;
  /** A revalidation this recent is reused (default 10 s). */
  freshForMs?: number;
  /** Kanidm's `domain`: its session cookie is scoped to it. */
  domain: string;
  log?: Logger;
}

const PENDING = 'UpstreamLogin';
/** Kanidm's refresh token per person, for revalidate(). */
const GRANT = 'KanidmGrant';
const GRANT_TTL_S = 86_400;
const FRESH_FOR_MS = 10_000;

interface KanidmGrant {
  refresh_token: string;
  refreshed_at: number;
}
const PENDING_TTL_S = 600;

/** Kanidm's fixed OAuth2 URL layout (kanidm book, "OAuth2"). */
export function kanidmServerMetadata(publicOrigin: string, upstreamAddr: string, clientId: string): oidc.ServerMetadata {
  const c = encodeURIComponent(clientId);
  return {
    issuer: `${publicOrigin}/oauth2/openid/${c}`,
    authorization_endpoint: `${publicOrigin}/ui/oauth2`,
    token_endpoint: `${upstreamAddr}/oauth2/token`,
    userinfo_endpoint: `${upstreamAddr}/oauth2/openid/${c}/userinfo`,
    jwks_uri: `${upstreamAddr}/oauth2/openid/${c}/public_key.jwk`,
    id_token_signing_alg_values_supported: ['ES256'],
    code_challenge_methods_supported: ['S256'],
  };
}

export class KanidmLogin implements LoginMethod {
  private readonly config: oidc.Configuration;
  private readonly revalidating = new Map<string, Promise<Revalidation>>();

  constructor(private readonly o: KanidmLoginOptions) {
    this.config = new oidc.Configuration(
      kanidmServerMetadata(o.publicOrigin, o.upstreamAddr, o.clientId),
      o.clientId,
      undefined,
      oidc.ClientSecretBasic(o.clientSecret),
    );
    // Back-channel calls go straight to Kanidm on loopback through the pinned-CA agent.
    this.config[oidc.customFetch] = (url, init) =>
      undiciFetch(url, { ...(init as object), dispatcher: o.dispatcher }) as unknown as Promise<Response>;
  }

  /** Starts a login for interaction `uid`; returns the Kanidm URL to send the browser to. */
  async begin(uid: string): Promise<URL> {
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const verifier = oidc.randomPKCECodeVerifier();
    await this.o.store.upsert(PENDING, state, { uid, nonce, verifier, id: randomUUID() }, PENDING_TTL_S);
    return oidc.buildAuthorizationUrl(this.config, {
      redirect_uri: this.o.redirectUri,
      scope: 'openid profile email groups',
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
  }

  /** Handles Kanidm's redirect back. Each `state` works once. */
  async complete(callbackUrl: URL): Promise<CompletedLogin> {
    const state = callbackUrl.searchParams.get('state');
    if (!state) throw new UpstreamLoginError('invalid_request', 'missing state');
    const pending = await this.o.store.find(PENDING, state);
    if (!pending || (await this.o.store.consumeOnce(PENDING, state)) !== 'consumed') {
      throw new UpstreamLoginError('invalid_request', 'unknown, expired or already used login state');
    }
    const { uid, nonce, verifier } = pending.payload as { uid: string; nonce: string; verifier: string };
    const upstreamError = callbackUrl.searchParams.get('error');
    if (upstreamError) {
      // Kanidm says no (e.g. the user is not in the scope map of Kiwi's client).
      throw new UpstreamLoginError('access_denied', `Kanidm refused the login: ${upstreamError}`, uid);
    }
    const tokens = await oidc.authorizationCodeGrant(this.config, callbackUrl, {
      expectedState: state,
      expectedNonce: nonce,
      pkceCodeVerifier: verifier,
      idTokenExpected: true,
    });
    const idClaims = tokens.claims();
    if (!idClaims) throw new UpstreamLoginError('server_error', 'Kanidm returned no id_token');
    const claims = await this.claimsFor(tokens.access_token, idClaims);
    await this.keepGrant(claims.sub, tokens.refresh_token);
    return { uid, claims };
  }

  /** Kiwi ID's view of the person: Kanidm's userinfo over the id_token (same claims, fresher). */
  private async claimsFor(accessToken: string, idClaims: oidc.IDToken): Promise<AccountClaims> {
    const info = await oidc.fetchUserInfo(this.config, accessToken, idClaims.sub);
    const pick = <T>(k: string): T | undefined => (info[k] ?? idClaims[k]) as T | undefined;
    return {
      sub: idClaims.sub,
      preferred_username: pick<string>('preferred_username'),
      name: pick<string>('name'),
      email: pick<string>('email'),
      email_verified: pick<boolean>('email_verified'),
      groups: pick<string[]>('groups'),
    };
  }

  private async keepGrant(sub: string, refreshToken: string | undefined): Promise<void> {
    if (!refreshToken) return;
    const rec: KanidmGrant = { refresh_token: refreshToken, refreshed_at: Date.now() };
    await this.o.store.upsert(GRANT, sub, { ...rec }, this.o.grantTtlSeconds ?? GRANT_TTL_S);
  }

  /**
   * Asks Kanidm, before Kiwi ID issues anything for `sub`, whether the person
   * and their Kanidm session are still valid and what their claims are now
   * (a refresh-token grant: Kanidm checks the account's validity and the
   * parent session). So a disabled account, a revoked session or a changed
   * group membership takes effect at the next authorization, not only at the
   * next password prompt. Answers from the last few seconds are reused, and
   * concurrent checks for one person share one call: Kanidm rotates refresh
   * tokens and treats a reused one as an attack on the session.
   */
  revalidate(sub: string): Promise<Revalidation> {
    const running = this.revalidating.get(sub);
    if (running) return running;
    const p = this.refresh(sub).finally(() => this.revalidating.delete(sub));
    this.revalidating.set(sub, p);
    return p;
  }

  private async refresh(sub: string): Promise<Revalidation> {
    const rec = await this.o.store.find(GRANT, sub);
    if (!rec) return { status: 'fresh' }; // signed in some other way (or before this existed)
    const grant = rec.payload as unknown as KanidmGrant;
    if (Date.now() - grant.refreshed_at < (this.o.freshForMs ?? FRESH_FOR_MS)) return { status: 'fresh' };
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
    try {
      tokens = await oidc.refreshTokenGrant(this.config, grant.refresh_token);
    } catch (err) {
      if (err instanceof oidc.ResponseBodyError) {
        // invalid_grant: account expired or locked, session revoked or logged out.
        await this.o.store.destroy(GRANT, sub);
        return { status: 'invalid', reason: `Kanidm refused to renew the session: ${err.error}` };
      }
      return { status: 'unavailable', reason: (err as Error).message };
    }
    const idClaims = tokens.claims();
    const claims = idClaims ? await this.claimsFor(tokens.access_token, idClaims) : undefined;
    await this.keepGrant(sub, tokens.refresh_token ?? grant.refresh_token);
    return claims && claims.sub === sub ? { status: 'updated', claims } : { status: 'fresh' };
  }

  /**
   * Kanidm keeps its own session in the `bearer` cookie on the shared origin.
   * Signing out of Kiwi ID ends it too: Kanidm revokes it server-side
   * (/v1/logout, over loopback with the browser's cookie) and the browser is
   * told to drop the cookie (same name, Domain and Path as Kanidm sets).
   */
  endSession(req: IncomingMessage, res: ServerResponse): void {
    const bearer = cookieValue(req.headers.cookie, KANIDM_SESSION_COOKIE);
    if (!bearer) return;
    res.appendHeader(
      'set-cookie',
      `${KANIDM_SESSION_COOKIE}=; Domain=${this.o.domain}; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Lax`,
    );
    void request(new URL('/v1/logout', this.o.upstreamAddr), {
      dispatcher: this.o.dispatcher,
      headers: { cookie: `${KANIDM_SESSION_COOKIE}=${bearer}` },
    }).then(
      async (r) => {
        await r.body.dump();
        if (r.statusCode !== 200) this.o.log?.warn({ status: r.statusCode }, 'Kanidm logout refused; its session cookie was removed from the browser');
      },
      (err: Error) => this.o.log?.warn({ err_message: err.message }, 'Kanidm logout failed; its session cookie was removed from the browser'),
    );
  }
}

/** Kanidm's session cookie (kanidm_proto COOKIE_BEARER_TOKEN). */
const KANIDM_SESSION_COOKIE = 'bearer';
