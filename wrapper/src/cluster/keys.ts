// Signing keys across the cluster: every node signs with its own `jwt_private_key` and
// publishes the public half; every node serves the union at /oauth2/keys and accepts tokens
// signed by any of them (id_token_hint at logout, for example), so a token minted on one node
// verifies anywhere. When a node's key changes, its old key stays published for the longest
// token lifetime, then it is tombstoned (removed everywhere).
import type Provider from 'oidc-provider';
import type { JWK } from 'jose';
// oidc-provider keeps its keystore and JWKS response in a per-instance cache; it has no API for
// verification-only keys. This module is the one place that reaches into it; the cluster
// component tests cover both effects (served JWKS, accepted id_token_hint).
import instance from 'oidc-provider/lib/helpers/weak_cache.js';
import type { SigningKey } from '../crypto/keys.js';
import { KIND } from './replicated-state.js';
import type { ReplicaDb } from './replica-db.js';

export interface PublishedKey {
  node_id: string;
  jwk: JWK;
  added_at: number;
  retired_at?: number;
}

const PUBLIC_MEMBERS = ['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg', 'use'];

function publicOnly(jwk: JWK): JWK {
  const out: Record<string, unknown> = {};
  for (const m of PUBLIC_MEMBERS) if ((jwk as Record<string, unknown>)[m] !== undefined) out[m] = (jwk as Record<string, unknown>)[m];
  return out as JWK;
}

/** Publishes this node's key; retires and later removes its previous ones. */
export function publishOwnKey(db: ReplicaDb, key: SigningKey, retainMs: number, now = Date.now()): void {
  const current = db.value<PublishedKey>(KIND.key, key.kid);
  if (!current || current.node_id !== db.node || current.retired_at !== undefined) {
    db.localSet(KIND.key, key.kid, { node_id: db.node, jwk: publicOnly(key.publicJwk), added_at: current?.added_at ?? now } satisfies PublishedKey);
  }
  for (const { key: kid, value } of db.entries<PublishedKey>(KIND.key)) {
    if (value.node_id !== db.node || kid === key.kid) continue;
    if (value.retired_at === undefined) db.localSet(KIND.key, kid, { ...value, retired_at: now });
    else if (value.retired_at + retainMs < now) db.localRemove(KIND.key, kid);
  }
}

/** The union of every node's published public keys, this node's own first. */
export function unionJwks(db: ReplicaDb, own: SigningKey): { keys: JWK[] } {
  const keys: JWK[] = [publicOnly(own.publicJwk)];
  for (const { key: kid, value } of db.entries<PublishedKey>(KIND.key)) {
    if (kid !== own.kid) keys.push(publicOnly({ ...value.jwk, kid, use: 'sig' }));
  }
  return { keys };
}

/**
 * Makes `provider` serve `jwks` at its jwks endpoint and verify with every key in it, while it
 * keeps signing with its own private key only (peer keys are marked verify-only).
 */
export function installProviderKeys(provider: Provider, jwks: { keys: JWK[] }): void {
  const cache = instance(provider) as { keystore?: any; jwksResponse?: { keys: unknown[] } };
  const keystore = cache.keystore;
  if (!keystore || typeof keystore.clear !== 'function' || typeof keystore.add !== 'function') {
    throw new Error('oidc-provider keystore layout changed: cannot install cluster keys');
  }
  const own = [...keystore].filter((k: Record<string, unknown>) => typeof k.d === 'string');
  const ownKids = new Set(own.map((k: Record<string, unknown>) => k.kid));
  keystore.clear();
  for (const k of own) keystore.add(k);
  for (const k of jwks.keys) if (!ownKids.has(k.kid)) keystore.add({ ...k, key_ops: ['verify'] });
  cache.jwksResponse = { keys: jwks.keys.map((k) => ({ ...k })) };
}
