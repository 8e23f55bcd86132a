// JWT access tokens (issued for a `resource`) are self-contained, so
// oidc-provider does not store them, and its introspection and revocation,
// which look tokens up in storage, answered `active: false` for a valid one and
// could not revoke it. Here each JWT access token also gets a record, keyed
// by its `jti` and bound to the exact token by a SHA-256 of its value; looking
// a JWT up finds that record. So introspection answers `active: true` with
// the token's claims while it is valid, and `false` once it expired, was
// revoked, its grant was revoked or (for session-bound tokens) its session
// ended. Services that verify offline are unaffected: revocation reaches them
// only through the token's short lifetime.
import { createHash, timingSafeEqual } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { AdapterPayload } from '../state/oidc-adapter.js';

/** Token models that may be issued as JWTs (resource indicators). */
export const JWT_TOKEN_MODELS = new Set(['AccessToken', 'ClientCredentials']);

const FORMAT = 'jwt';

const digest = (value: string) => createHash('sha256').update(value).digest('base64url');

function decodePayload(jwt: string): Record<string, unknown> | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : undefined;
  } catch {
    return undefined;
  }
}

/** Opaque values are nanoids (no dots); a compact JWS has exactly two. */
export function looksLikeJwt(value: string): boolean {
  return value.startsWith('eyJ') && value.split('.').length === 3;
}

type IssuedToken = {
  format?: string;
  jti: string;
  constructor: { IN_PAYLOAD: string[] };
} & Record<string, unknown>;

type ValueAndPayload = { value: string; payload?: Record<string, unknown> };

/**
 * Makes the provider store a record for every JWT access token it signs: the
 * same payload an opaque token would have, marked `format: "jwt"` (so the bare
 * jti is never accepted as an opaque token) and bound to the JWT's digest.
 */
export function recordJwtAccessTokens(provider: Provider): void {
  for (const Model of [provider.AccessToken, provider.ClientCredentials] as unknown as Array<{ prototype: Record<string, unknown> }>) {
    const issue = Model.prototype.getValueAndPayload as (this: IssuedToken) => Promise<ValueAndPayload>;
    Model.prototype.getValueAndPayload = async function (this: IssuedToken): Promise<ValueAndPayload> {
      const out = await issue.call(this);
      if (out.payload || this.format !== FORMAT) return out;
      const claims = decodePayload(out.value) ?? {};
      const payload: Record<string, unknown> = {};
      for (const key of this.constructor.IN_PAYLOAD) if (this[key] !== undefined) payload[key] = this[key];
      Object.assign(payload, { iat: claims.iat, exp: claims.exp, jti: this.jti, format: FORMAT, valueDigest: digest(out.value) });
      return { value: out.value, payload };
    };
  }
}

/**
 * The stored payload for a JWT access token value, as oidc-provider expects
 * it back (without our marks), or undefined when the value is not exactly a
 * token this issuer recorded. `find(jti)` reads the record.
 */
export async function findJwtRecord(value: string, find: (id: string) => Promise<AdapterPayload | undefined>): Promise<AdapterPayload | undefined> {
  const jti = decodePayload(value)?.jti;
  if (typeof jti !== 'string' || jti === '') return undefined;
  const rec = await find(jti);
  if (!rec || rec.format !== FORMAT || typeof rec.valueDigest !== 'string') return undefined;
  const want = Buffer.from(rec.valueDigest);
  const got = Buffer.from(digest(value));
  if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
  const { format: _f, valueDigest: _d, ...payload } = rec;
  return payload;
}
