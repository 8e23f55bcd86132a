// Token signing keys. Kiwi ID signs id_tokens and JWT access tokens with the
// operator's `jwt_private_key`; every KiwiStack service verifies them offline
// with `jwt_public_key` (see verify.ts). Both are PEM files on disk:
//   private: PKCS#8 PEM, mode 0600      public: SPKI PEM, mode 0644
//
// Generation never overwrites anything (a lost signing key invalidates every
// session and every service's trust); loading refuses keys that other users
// can read and public files that are not the private key's other half.

import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { fsyncDir, writeTemp } from '../files/atomic-file.js';

/** Algorithms a loaded key can carry (derived from the key type, never configured). */
export type SigningAlg = 'ES256' | 'ES384' | 'EdDSA' | 'RS256';
/** Algorithms `generateSigningKeyPair` can create. */
export type GeneratedAlg = 'ES256' | 'EdDSA' | 'RS256';

export interface SigningKey {
  readonly alg: SigningAlg;
  /** RFC 7638 SHA-256 JWK thumbprint of the public key, base64url. */
  readonly kid: string;
  /** Private JWK (kty + key members + kid/alg/use) for oidc-provider's `jwks` option. */
  readonly privateJwk: JWK;
  /** Public JWK (kty + public members + kid/alg/use), as served at /oauth2/keys. */
  readonly publicJwk: JWK;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** The public key as SPKI PEM (what services configure as jwt_public_key). */
  readonly publicPem: string;
}

export interface JwksDocument {
  keys: JWK[];
}

/** JWK members that only private (or symmetric) keys have. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** Public members per key type; anything else is dropped from the public JWK. */
const PUBLIC_JWK_MEMBERS: Record<string, readonly string[]> = {
  EC: ['kty', 'crv', 'x', 'y'],
  OKP: ['kty', 'crv', 'x'],
  RSA: ['kty', 'n', 'e'],
};

const generateKeyPairAsync = promisify(generateKeyPair);

// ---------------------------------------------------------------------------
// Atomic, never-overwriting file writes (also used by tls-certs.ts).

export interface NewFile {
  path: string;
  data: string | Buffer;
  mode: number;
}

/**
 * Creates parent directories as needed. `privateDir` ones get 0700; the mode
 * of directories that already exist is never touched.
 */
export function ensureParentDir(file: string, privateDir: boolean): void {
  const dir = path.dirname(path.resolve(file));
  if (fs.existsSync(dir)) return;
  fs.mkdirSync(dir, { recursive: true, mode: privateDir ? 0o700 : 0o755 });
}

/**
 * Writes every file to a temp file in its target's directory (opened with
 * `wx`, exact mode set with fchmod so the umask cannot loosen or tighten it,
 * fsynced), then renames them into place in the given order. Throws, and
 * leaves no temp files behind, if any target already exists.
 */
export function writeNewFilesAtomic(files: readonly NewFile[]): void {
  const temps: string[] = [];
  try {
    for (const f of files) {
      const target = path.resolve(f.path);
      if (fs.existsSync(target)) throw new Error(`${f.path}: already exists, refusing to overwrite`);
      temps.push(writeTemp(target, f.data, f.mode));
    }
    for (let i = 0; i < files.length; i++) {
      const target = path.resolve(files[i]!.path);
      // Last check right before publishing; rename(2) itself would replace.
      if (fs.existsSync(target)) throw new Error(`${files[i]!.path}: appeared while writing, refusing to overwrite`);
      fs.renameSync(temps[i]!, target);
      temps[i] = '';
      fsyncDir(path.dirname(target));
    }
  } finally {
    for (const t of temps) if (t) fs.rmSync(t, { force: true });
  }
}

// ---------------------------------------------------------------------------
// Generation

async function newKeyPair(alg: GeneratedAlg): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  switch (alg) {
    case 'ES256':
      return generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    case 'EdDSA':
      return generateKeyPairAsync('ed25519', undefined);
    case 'RS256':
      return generateKeyPairAsync('rsa', { modulusLength: 3072 });
    default:
      throw new Error(`unsupported signing algorithm ${JSON.stringify(alg)} (expected ES256, EdDSA or RS256)`);
  }
}

/**
 * Creates a new signing key pair unless one is already there. Returns
 * `{created:false}` (both files untouched) when both files exist; throws,
 * naming the missing file, when only one of them does.
 */
export async function generateSigningKeyPair(
  privatePath: string,
  publicPath: string,
  alg: GeneratedAlg = 'ES256',
): Promise<{ created: boolean }> {
  if (path.resolve(privatePath) === path.resolve(publicPath)) {
    throw new Error(`${privatePath}: private and public key paths must differ`);
  }
  const havePrivate = fs.existsSync(privatePath);
  const havePublic = fs.existsSync(publicPath);
  if (havePrivate && havePublic) return { created: false };
  if (havePrivate) throw new Error(`${publicPath}: public key file is missing but private key ${privatePath} exists; restore it or remove both to generate a new pair`);
  if (havePublic) throw new Error(`${privatePath}: private key file is missing but public key ${publicPath} exists; restore it or remove both to generate a new pair`);

  const { privateKey, publicKey } = await newKeyPair(alg);
  ensureParentDir(privatePath, true);
  ensureParentDir(publicPath, false);
  writeNewFilesAtomic([
    { path: privatePath, data: privateKey.export({ type: 'pkcs8', format: 'pem' }), mode: 0o600 },
    { path: publicPath, data: publicKey.export({ type: 'spki', format: 'pem' }), mode: 0o644 },
  ]);
  return { created: true };
}

// ---------------------------------------------------------------------------
// Loading

function algorithmOf(key: KeyObject, file: string): SigningAlg {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
    if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
    throw new Error(`${file}: unsupported EC curve ${curve} (use P-256 or P-384)`);
  }
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'rsa') return 'RS256';
  throw new Error(`${file}: unsupported key type ${type} (use EC P-256/P-384, Ed25519 or RSA)`);
}

function readKeyFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err: any) {
    throw new Error(`${file}: cannot read ${what}: ${err?.code ?? err?.message ?? err}`);
  }
}

function pick(jwk: Record<string, unknown>, members: readonly string[]): JWK {
  const out: Record<string, unknown> = {};
  for (const m of members) if (jwk[m] !== undefined) out[m] = jwk[m];
  return out as JWK;
}

/** Loads and cross-checks the signing key pair; every failure names the file. */
export async function loadSigningKey(privatePath: string, publicPath: string): Promise<SigningKey> {
  let st: fs.Stats;
  try {
    st = fs.statSync(privatePath);
  } catch (err: any) {
    throw new Error(`${privatePath}: cannot read private key: ${err?.code ?? err?.message ?? err}`);
  }
  if (!st.isFile()) throw new Error(`${privatePath}: private key is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new Error(`${privatePath}: private key file mode ${mode} is accessible by group/other; run: chmod 600 ${privatePath}`);
  }

  const privatePemText = readKeyFile(privatePath, 'private key');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(privatePemText);
  } catch (err: any) {
    throw new Error(`${privatePath}: not an unencrypted PEM private key: ${err?.message ?? err}`);
  }

  const publicPemText = readKeyFile(publicPath, 'public key');
  // createPublicKey would happily derive a public key from a private one;
  // the file handed to every service must never hold private material.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(publicPemText)) {
    throw new Error(`${publicPath}: contains a PRIVATE key; the public key file must hold only the SPKI public key`);
  }
  if (!publicPemText.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new Error(`${publicPath}: not an SPKI PEM public key (expected "-----BEGIN PUBLIC KEY-----")`);
  }
  let filePublicKey: KeyObject;
  try {
    filePublicKey = createPublicKey(publicPemText);
  } catch (err: any) {
    throw new Error(`${publicPath}: not a valid PEM public key: ${err?.message ?? err}`);
  }

  const alg = algorithmOf(privateKey, privatePath);
  const publicKey = createPublicKey(privateKey);
  const derivedDer = publicKey.export({ type: 'spki', format: 'der' });
  const fileDer = filePublicKey.export({ type: 'spki', format: 'der' });
  if (!derivedDer.equals(fileDer)) {
    throw new Error(`${publicPath}: is not the public key of ${privatePath} (key pair mismatch)`);
  }

  const rawPublic = publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  const members = PUBLIC_JWK_MEMBERS[String(rawPublic.kty)];
  if (!members) throw new Error(`${privatePath}: unsupported JWK key type ${String(rawPublic.kty)}`);
  const bare = pick(rawPublic, members);
  const kid = await calculateJwkThumbprint(bare, 'sha256');
  const publicJwk: JWK = { ...bare, kid, alg, use: 'sig' };
  assertPublicOnly(publicJwk);
  const privateJwk: JWK = { ...(privateKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' };

  return {
    alg,
    kid,
    privateJwk,
    publicJwk,
    privateKey,
    publicKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function assertPublicOnly(jwk: JWK): void {
  for (const m of PRIVATE_JWK_MEMBERS) {
    if (m in jwk) throw new Error(`refusing to publish JWK ${jwk.kid ?? ''}: it contains private member "${m}"`);
  }
}

/** The JWKS document served at /oauth2/keys. Never contains private members. */
export function publicJwks(key: Pick<SigningKey, 'publicJwk'>): JwksDocument {
  const jwk: JWK = { ...key.publicJwk };
  assertPublicOnly(jwk);
  return { keys: [jwk] };
}
