// The key Kiwi ID signs its private_key_jwt client assertions with at an
// upstream IdP. The upstream registers the public half (`kiwi-id federation
// jwks ID` prints it as a JWKS); `kid` is the RFC 7638 thumbprint.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, importPKCS8, type JWK } from 'jose';
import { readSecretFile } from '../files/secret-file.js';

export interface ClientAssertionKey {
  readonly alg: string;
  readonly kid: string;
  readonly key: CryptoKey;
  readonly publicJwk: JWK;
}

function algOf(key: KeyObject, file: string): string {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    if (curve === 'secp521r1') return 'ES512';
    throw new Error(`${file}: unsupported EC curve ${curve}`);
  }
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'rsa') return 'RS256';
  throw new Error(`${file}: unsupported key type ${type} (use EC, Ed25519 or RSA)`);
}

export async function loadClientAssertionKey(file: string): Promise<ClientAssertionKey> {
  const pem = readSecretFile(file);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch (e) {
    throw new Error(`${file}: not an unencrypted PEM private key (${(e as Error).message})`);
  }
  const alg = algOf(keyObject, file);
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = await importPKCS8(pkcs8, alg);
  const full = createPublicKey(keyObject).export({ format: 'jwk' }) as Record<string, unknown>;
  const bare: JWK = Object.fromEntries(['kty', 'crv', 'x', 'y', 'n', 'e'].filter((k) => full[k] !== undefined).map((k) => [k, full[k]]));
  const kid = await calculateJwkThumbprint(bare, 'sha256');
  return { alg, kid, key: key as CryptoKey, publicJwk: { ...bare, kid, alg, use: 'sig' } };
}
