// Offline verification of Kiwi ID tokens for other KiwiStack wrappers:
// only the shared public key, the issuer and the expected audience are
// needed, no call to Kiwi ID.
//
// Algorithm confusion is ruled out by construction: the accepted algorithm is
// derived from the *key type* (EC P-256 -> ES256, Ed25519 -> EdDSA,
// RSA -> RS256), never taken from the token header, so `alg: none` and
// HS256-signed-with-the-public-key tokens fail.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
import { checkDpop, type DpopCheck } from './dpop.js';

export { DpopError, MemoryReplayCache, verifyDpopProof, type DpopCheck, type DpopReplayCache } from './dpop.js';

export interface VerifyOptions {
  issuer: string;
  audience: string | string[];
  clockToleranceSec?: number; // default 30
  typ?: string; // e.g. "at+jwt" for access tokens; unchecked when absent
  /** RFC 9449: the request's DPoP proof; required for tokens bound with cnf.jkt (see dpop.ts). */
  dpop?: DpopCheck;
}

export class TokenError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

/** The single JWS algorithm that a public key can verify. */
export function algorithmFor(key: KeyObject): string {
  const t = key.asymmetricKeyType;
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
    if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
    throw new TokenError(`unsupported EC curve ${curve}`, 'unsupported_key');
  }
  if (t === 'ed25519') return 'EdDSA';
  if (t === 'rsa') return 'RS256';
  throw new TokenError(`unsupported key type ${t}`, 'unsupported_key');
}

const keyCache = new Map<string, KeyObject>();

function publicKey(pem: string | KeyObject): KeyObject {
  if (typeof pem !== 'string') return pem;
  let k = keyCache.get(pem);
  if (!k) {
    k = createPublicKey(pem);
    if (k.type !== 'public') throw new TokenError('not a public key', 'unsupported_key');
    keyCache.set(pem, k);
  }
  return k;
}

/** Verifies signature, iss, aud, exp/nbf and returns the claims, or throws TokenError. */
export async function verify(token: string, publicKeyPem: string | KeyObject, o: VerifyOptions): Promise<JWTPayload> {
  const key = publicKey(publicKeyPem);
  const alg = algorithmFor(key);
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: [alg],
      issuer: o.issuer,
      audience: o.audience,
      clockTolerance: o.clockToleranceSec ?? 30,
      typ: o.typ,
      requiredClaims: ['iss', 'aud', 'exp', 'iat', 'sub'],
    });
    if (o.dpop !== undefined || payload.cnf !== undefined) await checkDpop(payload, token, o.dpop);
    return payload;
  } catch (err: any) {
    // jose error codes are stable strings such as ERR_JWT_EXPIRED.
    throw new TokenError(err?.message ?? 'invalid token', err?.code ?? 'ERR_JWT_INVALID');
  }
}
