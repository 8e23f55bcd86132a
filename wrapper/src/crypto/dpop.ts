// DPoP (RFC 9449) for services that verify Kiwi ID access tokens offline:
// a DPoP-bound access token carries `cnf.jkt`, the thumbprint of the client's
// key, and is only good together with a fresh DPoP proof signed by that key
// for this very request. `verify()` (verify.ts) calls `checkDpop` when the
// caller passes the request's proof, and refuses a bound token without one.
//
// The proof is checked as RFC 9449 section 4.3 says: typ dpop+jwt, an
// asymmetric alg, a public jwk in the header that verifies the signature,
// htm/htu match the request, iat is recent, ath is the hash of the access
// token, jti is not replayed, and the jwk's thumbprint equals cnf.jkt.
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';

/** Signature algorithms accepted for proofs (what Kiwi ID's issuer accepts too); never none or HMAC. */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'] as const;

/** Remembers proof jtis for as long as a proof could be accepted. */
export interface DpopReplayCache {
  /** True the first time `jti` is seen (and remembers it until `expiresAtMs`), false on a replay. */
  firstUse(jti: string, expiresAtMs: number): boolean;
}

/** In-process replay cache; one per service process is enough for a single instance. */
export class MemoryReplayCache implements DpopReplayCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly maxEntries = 100_000) {}

  firstUse(jti: string, expiresAtMs: number): boolean {
    const now = Date.now();
    const until = this.seen.get(jti);
    if (until !== undefined && until > now) return false;
    if (this.seen.size >= this.maxEntries) {
      for (const [k, v] of this.seen) if (v <= now) this.seen.delete(k);
      // Still full of live entries: refuse rather than forget one (fail closed).
      if (this.seen.size >= this.maxEntries) return false;
    }
    this.seen.set(jti, expiresAtMs);
    return true;
  }
}

const defaultReplayCache = new MemoryReplayCache();

export interface DpopCheck {
  /** The request's `DPoP` header value. */
  proof: string;
  /** The request's HTTP method. */
  method: string;
  /** The request's URL as the client addressed it (query and fragment are ignored). */
  url: string | URL;
  /** How old a proof may be. Default 300 s. */
  maxAgeSec?: number;
  /** Allowed clock difference for iat. Default 30 s. */
  clockToleranceSec?: number;
  /** Replay detection; default: one in-process cache. */
  replay?: DpopReplayCache;
  /** When the service issued a DPoP nonce, the proof must carry it. */
  nonce?: string;
}

/** Thrown for any DPoP failure; verify() reports it as TokenError with this code. */
export class DpopError extends Error {
  constructor(
    message: string,
    readonly code: 'dpop_required' | 'invalid_dpop_proof' | 'dpop_binding_mismatch' | 'dpop_replay',
  ) {
    super(message);
    this.name = 'DpopError';
  }
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

function htuOf(url: string | URL): string {
  const u = new URL(url);
  return u.origin + u.pathname;
}

/** Verifies a proof for a request and access token; resolves to the thumbprint of its key. */
export async function verifyDpopProof(check: DpopCheck, accessToken: string): Promise<{ jkt: string; claims: JWTPayload }> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(check.proof);
  } catch {
    throw new DpopError('DPoP proof is not a JWS', 'invalid_dpop_proof');
  }
  const alg = header.alg;
  if (header.typ !== 'dpop+jwt') throw new DpopError('DPoP proof typ must be dpop+jwt', 'invalid_dpop_proof');
  if (!alg || !(DPOP_ALGORITHMS as readonly string[]).includes(alg)) throw new DpopError(`DPoP proof alg ${alg} is not accepted`, 'invalid_dpop_proof');
  const jwk = header.jwk as JWK | undefined;
  if (!jwk || typeof jwk !== 'object') throw new DpopError('DPoP proof has no jwk header', 'invalid_dpop_proof');
  if (PRIVATE_JWK_MEMBERS.some((m) => m in jwk)) throw new DpopError('DPoP proof jwk must be a public key', 'invalid_dpop_proof');

  let claims: JWTPayload;
  try {
    const key = await importJWK(jwk, alg);
    ({ payload: claims } = await jwtVerify(check.proof, key, { algorithms: [alg], typ: 'dpop+jwt' }));
  } catch (err) {
    throw new DpopError(`DPoP proof signature invalid: ${(err as Error).message}`, 'invalid_dpop_proof');
  }

  if (typeof claims.jti !== 'string' || claims.jti === '') throw new DpopError('DPoP proof has no jti', 'invalid_dpop_proof');
  if (claims.htm !== check.method.toUpperCase()) throw new DpopError('DPoP proof htm does not match the request method', 'invalid_dpop_proof');
  let htu: string;
  try {
    htu = htuOf(String(claims.htu));
  } catch {
    throw new DpopError('DPoP proof htu is not a URL', 'invalid_dpop_proof');
  }
  if (htu !== htuOf(check.url)) throw new DpopError('DPoP proof htu does not match the request URL', 'invalid_dpop_proof');
  const now = Date.now() / 1000;
  const maxAge = check.maxAgeSec ?? 300;
  const tolerance = check.clockToleranceSec ?? 30;
  if (typeof claims.iat !== 'number' || claims.iat > now + tolerance || claims.iat < now - maxAge - tolerance) {
    throw new DpopError('DPoP proof iat is outside the accepted window', 'invalid_dpop_proof');
  }
  const ath = createHash('sha256').update(accessToken).digest('base64url');
  if (claims.ath !== ath) throw new DpopError('DPoP proof ath does not match the access token', 'invalid_dpop_proof');
  if (check.nonce !== undefined && claims.nonce !== check.nonce) throw new DpopError('DPoP proof nonce missing or stale', 'invalid_dpop_proof');

  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  // Replay is judged last: a proof that fails other checks must not burn its jti.
  const expiresAt = (claims.iat + maxAge + tolerance) * 1000;
  if (!(check.replay ?? defaultReplayCache).firstUse(`${jkt}:${claims.jti}`, expiresAt)) {
    throw new DpopError('DPoP proof was already used (replay)', 'dpop_replay');
  }
  return { jkt, claims };
}

/**
 * The DPoP step of verify(): a token with `cnf.jkt` needs a proof by that key;
 * a proof for a token without `cnf.jkt` is refused (the caller expected binding).
 */
export async function checkDpop(claims: JWTPayload, accessToken: string, check: DpopCheck | undefined): Promise<void> {
  const jkt = (claims.cnf as { jkt?: unknown } | undefined)?.jkt;
  if (jkt === undefined) {
    if (check) throw new DpopError('access token is not DPoP-bound (no cnf.jkt)', 'dpop_binding_mismatch');
    return;
  }
  if (!check) throw new DpopError('access token is DPoP-bound (cnf.jkt): the request\'s DPoP proof is required', 'dpop_required');
  const proof = await verifyDpopProof(check, accessToken);
  if (proof.jkt !== jkt) throw new DpopError('DPoP proof key does not match the token\'s cnf.jkt', 'dpop_binding_mismatch');
}
