// Clients registered through dynamic client registration (RFC 7591/7592).
// They live in the state store, one record per client without expiry, so the
// cluster work replicates them like any other state; each record carries the
// node it was registered on (`origin`). The static clients file stays the
// operator's: lookups try it first, so a registered client never shadows or
// changes a static one.
//
// The client secret that registration hands out once is stored only as a
// hash (as in the clients file); the issuer's compareClientSecret checks hashes.
import type { StateStore } from '../state/store.js';
import { hashSecret, isSecretHash } from './client-secret.js';

export const REGISTERED_CLIENT_MODEL = 'RegisteredClient';

export interface RegisteredClient {
  readonly client_id: string;
  /** oidc-provider client metadata; `client_secret` only as a hash. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Id of the node that registered the client. */
  readonly origin: string;
}

/** What the issuer and `kiwi-id client` need; a replicated store can stand behind it. */
export interface RegisteredClients {
  find(clientId: string): Promise<RegisteredClient | undefined>;
  list(): Promise<RegisteredClient[]>;
  /** Creates or replaces; a plaintext `client_secret` is hashed before it is stored. */
  save(clientId: string, metadata: Record<string, unknown>): Promise<void>;
  /** False when there was no such registered client. */
  remove(clientId: string): Promise<boolean>;
}

export class StoreRegisteredClients implements RegisteredClients {
  constructor(private readonly store: StateStore) {}

  async find(clientId: string): Promise<RegisteredClient | undefined> {
    const rec = await this.store.find(REGISTERED_CLIENT_MODEL, clientId);
    return rec && { client_id: rec.id, metadata: rec.payload, origin: rec.origin };
  }

  async list(): Promise<RegisteredClient[]> {
    const recs = await this.store.list(REGISTERED_CLIENT_MODEL);
    return recs.map((r) => ({ client_id: r.id, metadata: r.payload, origin: r.origin }));
  }

  async save(clientId: string, metadata: Record<string, unknown>): Promise<void> {
    const stored: Record<string, unknown> = { ...metadata, client_id: clientId };
    const secret = stored.client_secret;
    if (typeof secret === 'string' && secret !== '' && !isSecretHash(secret)) stored.client_secret = hashSecret(secret);
    await this.store.upsert(REGISTERED_CLIENT_MODEL, clientId, stored, null);
  }

  async remove(clientId: string): Promise<boolean> {
    if (!(await this.store.find(REGISTERED_CLIENT_MODEL, clientId))) return false;
    await this.store.destroy(REGISTERED_CLIENT_MODEL, clientId);
    return true;
  }
}
