// Persistence for oidc-provider: the state store, with the model-specific
// steps Kiwi ID adds on top of it:
//   Client — the clients file first (static, operator-owned), then clients
//     registered through /oauth2/register (state store).
//   AccessToken, ClientCredentials — a JWT value is looked up through its
//     record (jwt-access-tokens.ts), so introspection and revocation work.
//   DeviceCode — kept a while past its expiry, so polling it answers
//     `expired_token` (RFC 8628) rather than "not found".
//   Session — mirrored into a session watch (back-channel logout on expiry
//     and admin revocation).
import type { ClientsSource } from '../clients/clients-source.js';
import { clientMetadata } from '../clients/clients-source.js';
import type { RegisteredClients } from '../clients/registered-clients.js';
import { adapterFactory, type AdapterPayload, type OidcAdapter } from '../state/oidc-adapter.js';
import type { StateStore } from '../state/store.js';
import { findJwtRecord, JWT_TOKEN_MODELS, looksLikeJwt } from './jwt-access-tokens.js';
import type { SessionWatch } from './logout/session-watch.js';

/** How long an expired device code stays findable (for `expired_token`). */
export const DEVICE_CODE_GRACE_S = 600;

export interface PersistenceDeps {
  store: StateStore;
  clients: ClientsSource;
  registered: RegisteredClients;
  sessions: SessionWatch;
}

function staticMetadata(clients: ClientsSource, id: string): AdapterPayload | undefined {
  const rec = clients.find(id);
  if (!rec) return undefined;
  return Object.fromEntries(Object.entries(clientMetadata(rec)).filter(([, v]) => v !== undefined));
}

export function adapterClass(d: PersistenceDeps): new (name: string) => OidcAdapter {
  const StoreAdapter = adapterFactory(d.store);
  return class KiwiAdapter extends StoreAdapter {
    override async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.name === 'Client') return staticMetadata(d.clients, id) ?? (await d.registered.find(id))?.metadata;
      if (JWT_TOKEN_MODELS.has(this.name) && looksLikeJwt(id)) return findJwtRecord(id, (jti) => super.find(jti));
      return super.find(id);
    }

    override async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
      if (this.name === 'Client') {
        // Only registration writes clients; a static client is never replaced (the route refuses with 403 first).
        if (d.clients.find(id)) throw new Error(`client ${id} is static (clients file) and cannot be changed here`);
        return d.registered.save(id, payload);
      }
      if (this.name === 'DeviceCode' && expiresIn !== undefined) expiresIn += DEVICE_CODE_GRACE_S;
      await super.upsert(id, payload, expiresIn);
      if (this.name === 'Session') await d.sessions.track(id, payload, expiresIn);
    }

    override async destroy(id: string): Promise<void> {
      if (this.name === 'Client') {
        await d.registered.remove(id);
        return;
      }
      await super.destroy(id);
      if (this.name === 'Session') await d.sessions.untrack(id);
    }
  } as unknown as new (name: string) => OidcAdapter;
}
