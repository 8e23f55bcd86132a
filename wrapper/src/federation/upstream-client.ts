// Kiwi ID as an OAuth2/OIDC client of one upstream IdP (openid-client 6):
// discovery or configured endpoints, state + nonce + PKCE S256, the configured
// client authentication, and a fully checked ID token: signature from the
// upstream JWKS (non-repudiation checks on), `iss` = the configured issuer,
// `aud`, `nonce`, `exp`/`iat` within the allowed skew, asymmetric algorithms
// only. Plain OAuth2 providers (endpoint overrides without jwks_uri) give the
// subject through userinfo instead.
import fs from 'node:fs';
import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import type { UpstreamIdp } from '../config/federation.js';
import { readSecretFile } from '../files/secret-file.js';
import { loadClientAssertionKey } from './client-key.js';

/** ID token algorithms accepted from any upstream: asymmetric only (never `none` or HMAC). */
export const ID_TOKEN_ALGS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];

/** Who the upstream says signed in. */
export interface UpstreamIdentity {
  readonly idp: string;
  readonly issuer: string;
  readonly sub: string;
  readonly email?: string;
  readonly email_verified?: boolean;
  readonly name?: string;
  readonly preferred_username?: string;
  readonly acr?: string;
  readonly amr?: readonly string[];
}

/** Why an upstream round trip failed; `reason` is for logs and metrics, never for the browser. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: 'upstream_denied' | 'rejected' | 'unavailable',
    readonly reason: string,
  ) {
    super(reason);
  }
}

export interface PendingUpstreamLogin {
  state: string;
  nonce?: string;
  verifier: string;
}

export interface UpstreamClientOptions {
  /** Absolute URL of the IdP's callback (issuer origin + callback_path). */
  redirectUri: string;
  clockSkewSecs: number;
  /** CA file from [federation] when the IdP has none of its own. */
  defaultCaFile?: string;
}

/** Trust for one upstream: its pinned CA(s) if configured, else the system roots. */
export function upstreamDispatcher(caFile: string | undefined): Dispatcher {
  return new Agent(caFile ? { connect: { ca: fs.readFileSync(caFile) } } : {});
}

async function clientAuth(idp: UpstreamIdp): Promise<oidc.ClientAuth> {
  const secret = () => idp.client_secret ?? readSecretFile(idp.client_secret_file!).trim();
  switch (idp.token_endpoint_auth_method) {
    case 'private_key_jwt': {
      const k = await loadClientAssertionKey(idp.private_key_path!);
      return oidc.PrivateKeyJwt({ key: k.key, kid: k.kid });
    }
    case 'client_secret_post':
      return oidc.ClientSecretPost(secret());
    case 'client_secret_basic':
      return oidc.ClientSecretBasic(secret());
    case 'none':
      return oidc.None();
  }
}

/**
 * One line for the log: openid-client's error, the oauth4webapi reason under
 * it and the claim or header it is about (never token contents).
 */
function describe(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur && depth < 4; depth++) {
    const x = cur as { code?: string; error?: string; error_description?: string; message?: string; claim?: string; reason?: string; header?: { alg?: unknown }; cause?: unknown };
    if (cur instanceof Error) {
      parts.push([x.code, x.error, x.error_description ?? x.message].filter(Boolean).join(' '));
    } else if (typeof x === 'object') {
      if (x.claim) parts.push(`claim ${x.claim}`);
      if (x.header?.alg !== undefined) parts.push(`alg ${String(x.header.alg)}`);
      if (x.reason) parts.push(x.reason);
    }
    cur = x.cause;
  }
  return parts.filter(Boolean).join(': ');
}

const isPlainOAuth2 = (idp: UpstreamIdp): boolean => !!idp.authorization_endpoint && !idp.jwks_uri;

export class UpstreamClient {
  private config: Promise<oidc.Configuration> | undefined;
  readonly dispatcher: Dispatcher;
  readonly plain: boolean;

  constructor(
    readonly idp: UpstreamIdp,
    private readonly o: UpstreamClientOptions,
  ) {
    this.dispatcher = upstreamDispatcher(idp.ca_file ?? o.defaultCaFile);
    this.plain = isPlainOAuth2(idp);
  }

  /** Discovery (or the configured endpoints) once; a failure is retried on the next sign-in. */
  private configuration(): Promise<oidc.Configuration> {
    this.config ??= this.makeConfiguration().catch((e) => {
      this.config = undefined;
      throw new UpstreamError('unavailable', `discovery/configuration of ${this.idp.id} failed: ${(e as Error).message}`);
    });
    return this.config;
  }

  private async makeConfiguration(): Promise<oidc.Configuration> {
    const idp = this.idp;
    const auth = await clientAuth(idp);
    const metadata: Partial<oidc.ClientMetadata> = {
      // An array is an allow-list for oauth4webapi's alg check.
      id_token_signed_response_alg: ID_TOKEN_ALGS as unknown as string,
      // `exp`/`nbf` are checked with this tolerance; `iat` is checked below.
      [oidc.clockTolerance]: this.o.clockSkewSecs,
    };
    const fetchOpt = {
      [oidc.customFetch]: (url: string, init: object) =>
        undiciFetch(url, { ...init, dispatcher: this.dispatcher }) as unknown as Promise<Response>,
    };
    let config: oidc.Configuration;
    if (idp.authorization_endpoint) {
      const server: oidc.ServerMetadata = {
        issuer: idp.issuer,
        authorization_endpoint: idp.authorization_endpoint,
        token_endpoint: idp.token_endpoint,
        ...(idp.userinfo_endpoint && { userinfo_endpoint: idp.userinfo_endpoint }),
        ...(idp.jwks_uri && { jwks_uri: idp.jwks_uri }),
        code_challenge_methods_supported: ['S256'],
      };
      config = new oidc.Configuration(server, idp.client_id, metadata, auth);
      config[oidc.customFetch] = fetchOpt[oidc.customFetch] as never;
    } else {
      // openid-client checks that the discovered issuer is exactly the configured one.
      config = await oidc.discovery(new URL(idp.issuer), idp.client_id, metadata, auth, fetchOpt as oidc.DiscoveryRequestOptions);
    }
    config.timeout = 15;
    // Verify the ID token's signature against the upstream JWKS, not only trust TLS.
    if (!this.plain) oidc.enableNonRepudiationChecks(config);
    return config;
  }

  /** Where to send the browser; `pending` must be kept for `complete`. */
  async begin(): Promise<{ url: URL; pending: PendingUpstreamLogin }> {
    const config = await this.configuration();
    const state = oidc.randomState();
    const verifier = oidc.randomPKCECodeVerifier();
    const nonce = this.plain ? undefined : oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.o.redirectUri,
      scope: this.idp.scopes.join(' '),
      state,
      ...(nonce && { nonce }),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    return { url, pending: { state, verifier, ...(nonce && { nonce }) } };
  }

  /** Handles the callback for a pending login whose state the caller has already matched and consumed. */
  async complete(callbackUrl: URL, pending: PendingUpstreamLogin): Promise<UpstreamIdentity> {
    const upstreamError = callbackUrl.searchParams.get('error');
    if (upstreamError) throw new UpstreamError('upstream_denied', `upstream answered error=${upstreamError}`);
    const config = await this.configuration();
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
    try {
      tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        expectedState: pending.state,
        pkceCodeVerifier: pending.verifier,
        ...(pending.nonce ? { expectedNonce: pending.nonce } : {}),
        idTokenExpected: !this.plain,
      }, { redirect_uri: this.o.redirectUri });
    } catch (e) {
      throw this.classify(e);
    }
    return this.plain ? this.fromUserinfo(config, tokens.access_token) : this.fromIdToken(config, tokens);
  }

  private classify(e: unknown): UpstreamError {
    const detail = describe(e);
    // Network trouble is the upstream's availability; anything else is a response we refuse.
    const network = (e as { code?: string }).code === 'OAUTH_TIMEOUT' || /fetch failed|ECONNREFUSED|ENOTFOUND|ECONNRESET|timed? ?out/i.test(detail);
    return new UpstreamError(network ? 'unavailable' : 'rejected', detail);
  }

  private async fromIdToken(
    config: oidc.Configuration,
    tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
  ): Promise<UpstreamIdentity> {
    const c = tokens.claims();
    if (!c) throw new UpstreamError('rejected', 'no id_token');
    const now = Math.floor(Date.now() / 1000);
    if (typeof c.iat !== 'number' || c.iat > now + this.o.clockSkewSecs) {
      throw new UpstreamError('rejected', `id_token iat ${String(c.iat)} is in the future (now ${now}, skew ${this.o.clockSkewSecs}s)`);
    }
    let extra: Record<string, unknown> = {};
    if (c.email === undefined && config.serverMetadata().userinfo_endpoint) {
      try {
        extra = await oidc.fetchUserInfo(config, tokens.access_token, c.sub);
      } catch (e) {
        throw this.classify(e);
      }
    }
    const pick = (k: string) => c[k] ?? extra[k];
    return this.identity(c.sub, pick);
  }

  private async fromUserinfo(config: oidc.Configuration, accessToken: string): Promise<UpstreamIdentity> {
    let info: Record<string, unknown>;
    try {
      // There is no id_token to bind the subject to; the claim below is the subject.
      info = await oidc.fetchUserInfo(config, accessToken, oidc.skipSubjectCheck);
    } catch (e) {
      throw this.classify(e);
    }
    const raw = info[this.idp.subject_claim];
    // GitHub's "id" is a number; anything but a non-empty string or integer is refused.
    const sub = typeof raw === 'number' && Number.isSafeInteger(raw) ? String(raw) : raw;
    if (typeof sub !== 'string' || sub === '') {
      throw new UpstreamError('rejected', `userinfo has no usable "${this.idp.subject_claim}" (subject_claim)`);
    }
    return this.identity(sub, (k) => info[k]);
  }

  private identity(sub: string, pick: (k: string) => unknown): UpstreamIdentity {
    const str = (k: string) => (typeof pick(k) === 'string' && pick(k) !== '' ? (pick(k) as string) : undefined);
    const amr = pick('amr');
    return {
      idp: this.idp.id,
      issuer: this.idp.issuer,
      sub,
      email: str('email'),
      // Only a real boolean true counts (some providers send "true" strings; those do not).
      email_verified: pick('email_verified') === true,
      name: str('name'),
      preferred_username: str('preferred_username') ?? str('login'),
      acr: str('acr'),
      amr: Array.isArray(amr) && amr.every((x) => typeof x === 'string') ? (amr as string[]) : undefined,
    };
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
