// The JWT-bearer authorization grant (RFC 7523 §2.1) at /oauth2/token: a
// client allowed this grant presents an assertion from a trusted issuer about
// a linked upstream identity and gets tokens for that Kanidm person.
//
// Checks, each failing with invalid_grant: `iss` is in trusted_issuers or a
// configured upstream; signature from that issuer's JWKS (asymmetric algs
// only); `aud` is our issuer or token endpoint; `exp` present and not past,
// lifetime ≤ max_assertion_lifetime_secs; `iat`/`nbf` not in the future
// beyond the skew; `jti` present and used once; `sub` linked to a valid person.
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, customFetch, decodeJwt, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import type { FederationConfig } from '../config/federation.js';
import type { IssuerParts } from '../oidc/extension.js';
import { DirectoryError, personClaims } from './directory.js';
import type { FederationParts } from './parts.js';
import { ID_TOKEN_ALGS, upstreamDispatcher } from './upstream-client.js';

export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const JTI_MODEL = 'JwtBearerJti';

export interface JwtBearerDeps extends FederationParts {
  tokenEndpoint: string;
}

type Jwks = ReturnType<typeof createRemoteJWKSet>;

/** Where each trusted issuer's keys are, learned once (discovery) and cached by jose. */
class IssuerKeys {
  private readonly sets = new Map<string, Promise<Jwks>>();
  private readonly dispatchers = new Map<string, Dispatcher>();

  constructor(private readonly config: FederationConfig) {}

  /** The configured trust for `iss`, or undefined when it is not trusted. */
  trusted(iss: string): { caFile?: string; jwksUri?: string; idp?: string } | undefined {
    const idp = this.config.upstream_idps.find((i) => i.issuer === iss);
    if (idp) return { caFile: idp.ca_file ?? this.config.ca_file, jwksUri: idp.jwks_uri, idp: idp.id };
    if (this.config.trusted_issuers.includes(iss)) return { caFile: this.config.ca_file };
    return undefined;
  }

  private dispatcher(caFile: string | undefined): Dispatcher {
    const key = caFile ?? '';
    let d = this.dispatchers.get(key);
    if (!d) this.dispatchers.set(key, (d = upstreamDispatcher(caFile)));
    return d;
  }

  jwks(iss: string): Promise<Jwks> {
    let p = this.sets.get(iss);
    if (!p) {
      p = this.load(iss).catch((e) => {
        this.sets.delete(iss); // retried on the next assertion
        throw e;
      });
      this.sets.set(iss, p);
    }
    return p;
  }

  private async load(iss: string): Promise<Jwks> {
    const t = this.trusted(iss)!;
    const dispatcher = this.dispatcher(t.caFile);
    const doFetch = ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher })) as never;
    let jwksUri = t.jwksUri;
    if (!jwksUri) {
      const res = await undiciFetch(`${iss.replace(/\/$/, '')}/.well-known/openid-configuration`, { dispatcher, signal: AbortSignal.timeout(15_000) });
      if (res.status !== 200) throw new Error(`discovery of ${iss} answered HTTP ${res.status}`);
      const meta = (await res.json()) as { issuer?: string; jwks_uri?: string };
      if (meta.issuer !== iss) throw new Error(`discovery of ${iss} names another issuer (${String(meta.issuer)})`);
      if (typeof meta.jwks_uri !== 'string' || !meta.jwks_uri.startsWith('https://')) throw new Error(`discovery of ${iss} has no https jwks_uri`);
      jwksUri = meta.jwks_uri;
    }
    return createRemoteJWKSet(new URL(jwksUri), { [customFetch]: doFetch, timeoutDuration: 15_000 });
  }

  async close(): Promise<void> {
    await Promise.all([...this.dispatchers.values()].map((d) => d.close()));
  }
}

/** invalid_grant that says which check failed (oidc-provider's default text is generic; these carry no secrets). */
const invalid = (description: string) => Object.assign(new errors.InvalidGrant(description), { error_description: description });

export class JwtBearerGrant {
  private readonly keys: IssuerKeys;

  constructor(private readonly d: JwtBearerDeps) {
    this.keys = new IssuerKeys(d.config);
  }

  register(parts: IssuerParts): void {
    parts.provider.registerGrantType(JWT_BEARER, (ctx, next) => this.handle(ctx, next, parts), ['assertion', 'scope']);
  }

  private async verify(assertion: string): Promise<JWTPayload & { iss: string; sub: string; jti: string; exp: number }> {
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(assertion);
    } catch {
      throw invalid('assertion is not a JWT');
    }
    const iss = unverified.iss;
    if (typeof iss !== 'string' || !this.keys.trusted(iss)) throw invalid('assertion issuer is not trusted');
    let jwks: Jwks;
    try {
      jwks = await this.keys.jwks(iss);
    } catch (e) {
      this.d.log.warn({ iss, err_message: (e as Error).message }, 'jwt-bearer: issuer keys unavailable');
      throw invalid('the assertion issuer\'s keys cannot be fetched');
    }
    const skew = this.d.config.max_clock_skew_secs;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, jwks, {
        issuer: iss,
        audience: [this.d.issuer, this.d.tokenEndpoint],
        algorithms: ID_TOKEN_ALGS,
        clockTolerance: skew,
        requiredClaims: ['exp', 'sub', 'jti'],
      }));
    } catch (e) {
      if (e instanceof joseErrors.JOSEError) throw invalid(`assertion rejected: ${e.message}`);
      throw e;
    }
    const now = Math.floor(Date.now() / 1000);
    const { exp, iat, jti, sub } = payload as { exp: number; iat?: number; jti: unknown; sub: unknown };
    if (typeof jti !== 'string' || jti === '') throw invalid('assertion jti must be a non-empty string');
    if (typeof sub !== 'string' || sub === '') throw invalid('assertion sub must be a non-empty string');
    if (iat !== undefined && iat > now + skew) throw invalid('assertion iat is in the future');
    const max = this.d.config.max_assertion_lifetime_secs;
    if (max > 0 && (exp - now > max || (iat !== undefined && exp - iat > max))) {
      throw invalid(`assertion lifetime exceeds ${max} seconds`);
    }
    return payload as JWTPayload & { iss: string; sub: string; jti: string; exp: number };
  }

  /** Single use per (issuer, jti), for as long as the assertion could be valid. */
  private async consumeJti(iss: string, jti: string, exp: number): Promise<void> {
    const id = createHash('sha256').update(iss).update('\0').update(jti).digest('base64url');
    const ttl = Math.max(1, exp - Math.floor(Date.now() / 1000) + this.d.config.max_clock_skew_secs);
    await this.d.store.upsert(JTI_MODEL, id, { iss }, ttl);
    if ((await this.d.store.consumeOnce(JTI_MODEL, id)) !== 'consumed') throw invalid('assertion jti already used');
  }

  private async handle(ctx: KoaContextWithOIDC, next: () => Promise<void>, parts: IssuerParts): Promise<void> {
    try {
      await this.issue(ctx, parts);
      this.d.metrics.jwtBearer('success');
    } catch (e) {
      if (e instanceof errors.InvalidGrant || e instanceof errors.InvalidRequest || e instanceof errors.InvalidScope) {
        this.d.metrics.jwtBearer('invalid_grant');
        this.d.log.info({ client_id: ctx.oidc.client?.clientId, error_description: (e as { error_description?: string }).error_description }, 'jwt-bearer grant refused');
      }
      throw e;
    }
    await next();
  }

  private async issue(ctx: KoaContextWithOIDC, parts: IssuerParts): Promise<void> {
    const assertion = ctx.oidc.params!.assertion;
    if (typeof assertion !== 'string' || !assertion) throw new errors.InvalidRequest('missing required parameter \'assertion\'');
    const a = await this.verify(assertion);
    await this.consumeJti(a.iss, a.jti, a.exp);

    const link = await this.d.links.find(a.iss, a.sub);
    if (!link) throw invalid('assertion subject is not linked to a Kiwi ID account');
    let person;
    try {
      person = await this.d.directory.person(link.person);
    } catch (e) {
      if (e instanceof DirectoryError) throw invalid('the account directory is unavailable');
      throw e;
    }
    if (!person?.valid) throw invalid('the linked account cannot sign in');
    const idp = this.d.config.upstream_idps.find((i) => i.issuer === a.iss);
    await parts.accounts.save(personClaims(person, idp?.default_groups ?? []));
    await this.d.links.touch(link);

    const client = ctx.oidc.client!;
    const { provider } = parts;
    const requested = String(ctx.oidc.params!.scope ?? 'openid').split(' ').filter(Boolean);
    const allowed = new Set(String(client.scope ?? '').split(' '));
    for (const s of requested) if (client.scope && !allowed.has(s)) throw new errors.InvalidScope('requested scope is not allowed', s);
    const scope = requested.filter((s) => s !== 'offline_access').join(' ');

    const grant = new provider.Grant({ accountId: person.uuid, clientId: client.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const account = await provider.Account.findAccount(ctx, person.uuid);
    if (!account) throw invalid('account not found');
    const amr = ['fed'];
    const at = new provider.AccessToken({ accountId: person.uuid, client, grantId, gty: 'jwt_bearer', scope });
    ctx.oidc.entity('AccessToken', at);
    const accessToken = await at.save();

    let idToken: string | undefined;
    if (requested.includes('openid')) {
      const claims = await account.claims('id_token', scope, {}, []);
      const token = new provider.IdToken({ ...claims, amr, auth_time: Math.floor(Date.now() / 1000) }, { ctx });
      (token as unknown as { scope: string }).scope = scope;
      token.set('at_hash', accessToken);
      idToken = await token.issue({ use: 'idtoken' });
    }
    ctx.body = { access_token: accessToken, expires_in: at.expiration, id_token: idToken, scope, token_type: at.tokenType };
    this.d.log.info({ client_id: client.clientId, sub: person.uuid, iss: a.iss }, 'jwt-bearer grant');
  }

  async close(): Promise<void> {
    await this.keys.close();
  }
}
