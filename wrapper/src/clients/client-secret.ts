// Client secrets: generated here (32 random bytes), never chosen by people, and stored only as
// a hash. With 256 bits of entropy a single SHA-256 makes the stored value useless to an
// attacker, so new secrets are stored as "sha256$<digest>". A slow KDF (scrypt, which earlier
// versions wrote) protects low-entropy passwords and would only cost ~50 ms of CPU per token
// request (and hand unauthenticated callers a cheap way to burn CPU). Existing scrypt hashes
// still verify.

import { createHash, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

const SHA256_PREFIX = 'sha256$';
/** Upper bound for scrypt parameters read back from a file, so a tampered hash cannot exhaust memory/CPU. */
const MAX_SCRYPT_MEM = 256 * 1024 * 1024;

interface ScryptParams {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** scrypt needs about 128*N*r bytes (+128*r*p); leave headroom above Node's 32 MiB default. */
function maxmemFor(N: number, r: number, p: number): number {
  return 128 * r * (N + p + 2) + 1024 * 1024;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

function decodeB64url(s: string): Buffer | undefined {
  if (!B64URL.test(s)) return undefined;
  const buf = Buffer.from(s, 'base64url');
  // Reject non-canonical encodings (stray bits) so one hash has exactly one spelling.
  return buf.toString('base64url') === s ? buf : undefined;
}

function parsePositiveInt(s: string): number | undefined {
  if (!/^[1-9][0-9]{0,9}$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Parses "scrypt$N$r$p$salt$hash"; undefined when malformed or outside safe bounds. */
function parseScrypt(encoded: string): ScryptParams | undefined {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const N = parsePositiveInt(parts[1]!);
  const r = parsePositiveInt(parts[2]!);
  const p = parsePositiveInt(parts[3]!);
  if (N === undefined || r === undefined || p === undefined) return undefined;
  if (N < 2 || (N & (N - 1)) !== 0 || r > 64 || p > 16) return undefined;
  if (maxmemFor(N, r, p) > MAX_SCRYPT_MEM) return undefined;
  const salt = decodeB64url(parts[4]!);
  const hash = decodeB64url(parts[5]!);
  if (!salt || !hash || salt.length < 16 || salt.length > 64 || hash.length < 16 || hash.length > 64) {
    return undefined;
  }
  return { N, r, p, salt, hash };
}

/** The 32-byte digest of a "sha256$..." value; undefined when malformed. */
function parseSha256(encoded: string): Buffer | undefined {
  if (!encoded.startsWith(SHA256_PREFIX)) return undefined;
  const digest = decodeB64url(encoded.slice(SHA256_PREFIX.length));
  return digest?.length === 32 ? digest : undefined;
}

type ParsedHash = { kind: 'sha256'; digest: Buffer } | ({ kind: 'scrypt' } & ScryptParams);

function parseHash(encoded: unknown): ParsedHash | undefined {
  if (typeof encoded !== 'string') return undefined;
  const digest = parseSha256(encoded);
  if (digest) return { kind: 'sha256', digest };
  const legacy = parseScrypt(encoded);
  return legacy ? { kind: 'scrypt', ...legacy } : undefined;
}

/** True when `encoded` is a stored secret hash this version can verify (does not check any secret). */
export function isSecretHash(encoded: unknown): boolean {
  return parseHash(encoded) !== undefined;
}

/** A new client secret: 32 random bytes, base64url (43 characters). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

const sha256 = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();

/** "sha256$<base64url digest>" of a generated secret (see the top of this section for why). */
export function hashSecret(secret: string): string {
  if (typeof secret !== 'string' || secret === '') throw new TypeError('secret must be a non-empty string');
  return SHA256_PREFIX + sha256(secret).toString('base64url');
}

/** Constant-time check of `secret` against a stored hash. Never throws; malformed → false. */
export function verifySecret(secret: string, encoded: string): boolean {
  try {
    const parsed = parseHash(encoded);
    if (!parsed || typeof secret !== 'string' || secret === '') return false;
    if (parsed.kind === 'sha256') return timingSafeEqual(sha256(secret), parsed.digest);
    const { N, r, p, salt, hash } = parsed;
    const derived = scryptSync(secret, salt, hash.length, { N, r, p, maxmem: maxmemFor(N, r, p) });
    return timingSafeEqual(derived, hash);
  } catch {
    return false;
  }
}

/** verifySecret() without blocking the event loop on legacy scrypt hashes (token endpoint). Never rejects. */
export async function verifySecretAsync(secret: string, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  if (!parsed || typeof secret !== 'string' || secret === '') return false;
  if (parsed.kind === 'sha256') return verifySecret(secret, encoded);
  const { N, r, p, salt, hash } = parsed;
  return new Promise((resolve) => {
    try {
      scrypt(secret, salt, hash.length, { N, r, p, maxmem: maxmemFor(N, r, p) }, (err, derived) => {
        resolve(!err && timingSafeEqual(derived, hash));
      });
    } catch {
      resolve(false);
    }
  });
}
