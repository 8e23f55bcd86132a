// Offline verification of Kiwi ID tokens for other KiwiStack wrappers:
// only the shared public key, the issuer and the expected audience are
// needed, no call to Kiwi ID.
//
// Algorithm confusion is ruled out by construction: the accepted algorithm is
// derived from the *key type* (EC P-256 -> ES256, Ed25519 -> EdDSA,
// RSA -> RS256), never taken from the token header, so `alg: none` and
// HS256-signed-with-the-public-key tokens fail.
//
// Why not jose's jwtVerify: jose 6 verifies through WebCrypto, which converts
// the key and hops to the thread pool on every call; that ran at half the
// speed of OpenSSL's own ECDSA verify (bench/verify.ts). Here the key is
// parsed once (KeyObject, algorithm, RFC 7638 kid) and the signature goes
// straight to OpenSSL through node:crypto's synchronous verify. The checks
// and error codes are jose's (ERR_JWS_INVALID, ERR_JWT_EXPIRED, ...);
// test/unit/verify.test.ts holds both to the same verdicts.
import { createHash, createPublicKey, verify as cryptoVerify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { decodeBase64url } from './base64url.js';
import { checkDpop, type DpopCheck } from './dpop.js';

export { DpopError, MemoryReplayCache, verifyDpopProof, type DpopCheck, type DpopReplayCache } from './dpop.js';

export interface VerifyOptions {
  issuer: string;
  audience: string | string[];
  clockToleranceSec?: number; // default 30
  typ?: string; // e.g. "at+jwt" for access tokens; unchecked when absent
  /** Seconds since the epoch; default now. */
  currentTime?: number;
  /** RFC 9449: the request's DPoP proof; required for tokens bound with cnf.jkt (see dpop.ts). */
  dpop?: DpopCheck;
}

/** The claims of a verified token. */
export interface JWTPayload {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  jti?: string;
  [claim: string]: unknown;
}

/**
 * The key(s) a token may be signed with: a PEM (SPKI or certificate), a
 * KeyObject, a public JWK, an array of those, or a JWK Set (`{keys: [...]}`,
 * as served at /oauth2/keys). With more than one key (e.g. during a
 * rotation) the token's `kid` picks the key.
 */
export type VerificationKeys = string | KeyObject | JsonWebKey | PublicJwks | Array<string | KeyObject | JsonWebKey>;

/** A JWK Set, e.g. a Kiwi ID cluster's /oauth2/keys (every node signs with its own key). */
export interface PublicJwks {
  keys: readonly JsonWebKey[];
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

/** A key ready for verification: everything derived from it is computed once. */
interface PreparedKey {
  key: KeyObject;
  alg: string;
  /** kids this key answers to: its RFC 7638 thumbprint, and the JWK's own `kid` if given. */
  kids: string[];
  hash: string | null; // null for EdDSA
  /** ECDSA signatures are r||s (JWS), fixed length; 0 for others. */
  ecSignatureLength: number;
}

const EC_SIGNATURE_LENGTH: Record<string, number> = { ES256: 64, ES384: 96 };
const HASH: Record<string, string | null> = { ES256: 'sha256', ES384: 'sha384', RS256: 'sha256', EdDSA: null };
const MIN_RSA_BITS = 2048;

/** RFC 7638 JWK thumbprint (SHA-256, base64url): the kid Kiwi ID puts in its tokens. */
export function thumbprint(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  const members =
    jwk.kty === 'EC'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : jwk.kty === 'OKP'
        ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
        : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function prepare(input: string | KeyObject | JsonWebKey): PreparedKey {
  let key: KeyObject;
  let jwkKid: string | undefined;
  if (typeof input === 'string') key = createPublicKey(input);
  else if (isKeyObject(input)) key = input;
  else {
    if ((input as { d?: unknown }).d !== undefined) throw new TokenError('not a public key', 'unsupported_key');
    key = createPublicKey({ key: input, format: 'jwk' });
    jwkKid = typeof input.kid === 'string' ? input.kid : undefined;
  }
  if (key.type !== 'public') throw new TokenError('not a public key', 'unsupported_key');
  const alg = algorithmFor(key);
  if (alg === 'RS256' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    throw new TokenError(`RSA keys must be at least ${MIN_RSA_BITS} bits`, 'unsupported_key');
  }
  const kids = [thumbprint(key)];
  if (jwkKid !== undefined && jwkKid !== kids[0]) kids.push(jwkKid);
  return { key, alg, kids, hash: HASH[alg]!, ecSignatureLength: EC_SIGNATURE_LENGTH[alg] ?? 0 };
}

function isKeyObject(x: unknown): x is KeyObject {
  return typeof x === 'object' && x !== null && typeof (x as KeyObject).asymmetricKeyType !== 'undefined' && typeof (x as KeyObject).export === 'function';
}

// Keys are prepared once per distinct input: PEM strings by value (bounded,
// oldest out first), objects by identity.
const MAX_CACHED_PEMS = 64;
const pemCache = new Map<string, PreparedKey>();
const objectCache = new WeakMap<object, PreparedKey[]>();

function prepareOne(input: string | KeyObject | JsonWebKey): PreparedKey {
  if (typeof input !== 'string') return prepare(input);
  return pemCache.get(input) ?? remember(pemCache, input, prepare(input), MAX_CACHED_PEMS);
}

/** Puts `value` in a cache of at most `max` entries, the oldest out first; returns it. */
function remember<K, V>(cache: Map<K, V>, key: K, value: V, max: number): V {
  if (cache.size >= max) cache.delete(cache.keys().next().value!);
  cache.set(key, value);
  return value;
}

/** The prepared keys, and whether they form a set (then the token's kid selects among them). */
function preparedKeys(keys: VerificationKeys): { set: boolean; keys: PreparedKey[] } {
  if (typeof keys === 'string') return { set: false, keys: [prepareOne(keys)] };
  const set = Array.isArray(keys) || ('keys' in keys && Array.isArray(keys.keys));
  let prepared = objectCache.get(keys);
  if (!prepared) {
    const list = Array.isArray(keys) ? keys : set ? (keys as PublicJwks).keys : [keys as KeyObject | JsonWebKey];
    if (list.length === 0) throw new TokenError('no verification key given', 'ERR_JWKS_INVALID');
    prepared = list.map(prepareOne);
    objectCache.set(keys, prepared);
  }
  return { set, keys: prepared };
}

// ---------------------------------------------------------------------------
// The steps of one verification.

const fail = (code: string, message: string): never => {
  throw new TokenError(message, code);
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === null || proto === Object.prototype;
}

/** A length of 4n+1 is no base64 at all: Node's decoder would drop the stray character, jose refuses it. */
const canBeBase64 = (segment: string) => segment.length % 4 !== 1;

/** `bytes` decoded from `segment` (its length checked here), as a JSON object. */
function decodeJson(segment: string, bytes: Buffer, code: string, what: string): Record<string, unknown> {
  if (!canBeBase64(segment)) fail(code, `${what} is not base64url-encoded JSON`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(bytes));
  } catch {
    return fail(code, `${what} is not base64url-encoded JSON`);
  }
  if (!isPlainObject(parsed)) fail(code, `${what} must be a JSON object`);
  return parsed as Record<string, unknown>;
}

interface Jws {
  header: ProtectedHeader;
  signingInput: string;
  payload: string;
  payloadBytes: Buffer;
  signature: Buffer;
}

/** Compact serialization: three base64url parts, a protected header JSON object. */
function parseCompact(token: string): Jws {
  if (typeof token !== 'string') fail('ERR_JWS_INVALID', 'token must be a string');
  const dot1 = token.indexOf('.');
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot1 < 0 || dot2 < 0 || token.indexOf('.', dot2 + 1) >= 0) fail('ERR_JWS_INVALID', 'Invalid Compact JWS');
  const h = token.slice(0, dot1);
  const payload = token.slice(dot1 + 1, dot2);
  const sig = token.slice(dot2 + 1);
  const header = protectedHeader(h);
  const payloadBytes = decodeBase64url(payload);
  const signature = decodeBase64url(sig);
  if (!payloadBytes || !signature) return fail('ERR_JWS_INVALID', 'JWS parts must be base64url');
  if (!canBeBase64(sig)) fail('ERR_JWS_INVALID', 'JWS signature is not base64url');
  return {
    header,
    signingInput: token.slice(0, dot2),
    payload,
    payloadBytes,
    signature,
  };
}

/** A protected header that passed checkHeader: its segment, its fields (frozen, shared) and its algorithm. */
interface ProtectedHeader {
  segment: string;
  fields: Readonly<Record<string, unknown>>;
  alg: string;
}

// Every token of one issuer and key carries the same header segment, so its
// decoded and checked form is kept, keyed by the segment itself (bounded,
// oldest out; short segments only): decoding and parsing it each time cost
// 2–3 µs, ~3 % of a verification (bench/verify.ts). Only headers of tokens
// whose signature verified are kept, so forged tokens cannot crowd them out.
const MAX_CACHED_HEADERS = 64;
const MAX_CACHED_HEADER_LENGTH = 512;
const headerCache = new Map<string, ProtectedHeader>();

function protectedHeader(segment: string): ProtectedHeader {
  const cached = headerCache.get(segment);
  if (cached) return cached;
  const bytes = decodeBase64url(segment);
  if (!bytes) return fail('ERR_JWS_INVALID', 'JWS parts must be base64url');
  const fields = Object.freeze(decodeJson(segment, bytes, 'ERR_JWS_INVALID', 'JWS Protected Header'));
  return { segment, fields, alg: checkHeader(fields) };
}

/** After a valid signature: the header is worth keeping (if it is not kept already). */
function keepHeader(header: ProtectedHeader): void {
  if (header.segment.length > MAX_CACHED_HEADER_LENGTH || headerCache.has(header.segment)) return;
  remember(headerCache, header.segment, header, MAX_CACHED_HEADERS);
}

/** No JWS extensions are understood, so any `crit` fails (RFC 7515 §4.1.11); JWTs never use b64=false. */
function checkHeader(header: Readonly<Record<string, unknown>>): string {
  const { alg, crit, b64 } = header;
  if (typeof alg !== 'string' || alg === '') fail('ERR_JWS_INVALID', 'JWS "alg" (Algorithm) Header Parameter missing or invalid');
  if (crit !== undefined) fail('ERR_JOSE_NOT_SUPPORTED', 'no "crit" (Critical) Header Parameter extension is supported');
  if (b64 !== undefined && b64 !== true) fail('ERR_JWT_INVALID', 'JWTs MUST NOT use unencoded payload');
  return alg as string;
}

/** The explicit type (RFC 8725 §3.11), e.g. at+jwt for access tokens, when the caller asks for one. */
function checkTyp(header: Readonly<Record<string, unknown>>, o: VerifyOptions): void {
  const typ = header.typ;
  if (o.typ !== undefined && (typeof typ !== 'string' || normalizeTyp(typ) !== normalizeTyp(o.typ))) {
    fail('ERR_JWT_CLAIM_VALIDATION_FAILED', 'unexpected "typ" JWT header value');
  }
}

const normalizeTyp = (v: string) => (v.includes('/') ? v.toLowerCase() : `application/${v.toLowerCase()}`);

/**
 * In a key set the token's `kid` picks the key (a kid naming none fails);
 * without a kid every key of the token's algorithm is tried. A single key
 * given on its own is used whatever the kid says, as jose does: its
 * signature decides.
 */
function candidates({ set, keys }: { set: boolean; keys: PreparedKey[] }, { fields, alg }: ProtectedHeader): PreparedKey[] {
  const kid = fields.kid;
  if (kid !== undefined && typeof kid !== 'string') fail('ERR_JWS_INVALID', 'JWS "kid" Header Parameter must be a string');
  if (set && kid !== undefined) {
    const match = keys.filter((k) => k.kids.includes(kid as string));
    if (match.length === 0) fail('ERR_JWKS_NO_MATCHING_KEY', 'no key matches the token "kid"');
    keys = match;
  }
  const byAlg = keys.filter((k) => k.alg === alg);
  if (byAlg.length === 0) fail('ERR_JOSE_ALG_NOT_ALLOWED', '"alg" (Algorithm) Header Parameter value not allowed');
  return byAlg;
}

function signatureValid(k: PreparedKey, jws: Jws): boolean {
  if (k.ecSignatureLength && jws.signature.length !== k.ecSignatureLength) return false;
  try {
    const data = Buffer.from(jws.signingInput, 'latin1'); // base64url and '.': ASCII
    return k.ecSignatureLength
      ? cryptoVerify(k.hash, data, { key: k.key, dsaEncoding: 'ieee-p1363' }, jws.signature)
      : cryptoVerify(k.hash, data, k.key, jws.signature);
  } catch {
    return false;
  }
}

const REQUIRED_CLAIMS = ['iss', 'aud', 'exp', 'iat', 'sub'] as const;

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail('ERR_JWT_CLAIM_VALIDATION_FAILED', `"${name}" claim must be a number`);
  return v as number;
}

/** RFC 7519 §4.1: the registered claims Kiwi ID tokens always carry, checked as jose does. */
function checkClaims(claims: Record<string, unknown>, o: VerifyOptions): void {
  for (const name of REQUIRED_CLAIMS) {
    if (!Object.hasOwn(claims, name)) fail('ERR_JWT_CLAIM_VALIDATION_FAILED', `missing required "${name}" claim`);
  }
  if (claims.iss !== o.issuer) fail('ERR_JWT_CLAIM_VALIDATION_FAILED', 'unexpected "iss" claim value');
  const wanted = typeof o.audience === 'string' ? [o.audience] : o.audience;
  const aud = claims.aud;
  const audOk = typeof aud === 'string' ? wanted.includes(aud) : Array.isArray(aud) && wanted.some((a) => aud.includes(a));
  if (!audOk) fail('ERR_JWT_CLAIM_VALIDATION_FAILED', 'unexpected "aud" claim value');
  const tolerance = o.clockToleranceSec ?? 30;
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new TypeError('clockToleranceSec must be a non-negative number');
  const now = o.currentTime ?? Math.floor(Date.now() / 1000);
  numericDate(claims, 'iat');
  const nbf = numericDate(claims, 'nbf');
  if (nbf !== undefined && nbf > now + tolerance) fail('ERR_JWT_CLAIM_VALIDATION_FAILED', '"nbf" claim timestamp check failed');
  const exp = numericDate(claims, 'exp')!;
  if (exp <= now - tolerance) fail('ERR_JWT_EXPIRED', '"exp" claim timestamp check failed');
}

/** Synchronous form of `verify` (same checks, same errors), for hot paths; not for DPoP-bound tokens. */
export function verifySync(token: string, keys: VerificationKeys, o: VerifyOptions): JWTPayload {
  const claims = verifyClaims(token, keys, o);
  if (o.dpop !== undefined || claims.cnf !== undefined) {
    fail('ERR_JWT_CLAIM_VALIDATION_FAILED', 'a DPoP-bound token is checked with verify() and its proof');
  }
  return claims;
}

function verifyClaims(token: string, keys: VerificationKeys, o: VerifyOptions): JWTPayload {
  const prepared = preparedKeys(keys);
  const jws = parseCompact(token);
  if (!candidates(prepared, jws.header).some((k) => signatureValid(k, jws))) {
    fail('ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'signature verification failed');
  }
  keepHeader(jws.header);
  const claims = decodeJson(jws.payload, jws.payloadBytes, 'ERR_JWT_INVALID', 'JWT Claims Set');
  checkTyp(jws.header.fields, o);
  checkClaims(claims, o);
  return claims as JWTPayload;
}

/** Verifies signature, kid, iss, aud, exp/nbf and returns the claims, or rejects with TokenError. */
export async function verify(token: string, keys: VerificationKeys, o: VerifyOptions): Promise<JWTPayload> {
  const claims = verifyClaims(token, keys, o);
  // A token bound to a key (cnf) is only good with a proof of that key.
  if (o.dpop !== undefined || claims.cnf !== undefined) await checkDpop(claims as never, token, o.dpop);
  return claims;
}
