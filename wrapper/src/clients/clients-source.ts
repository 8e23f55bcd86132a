// Registered clients as oidc-provider sees them. The clients file is re-read
// when it changes, so `kiwi-id client add|remove|rotate-secret` take effect on
// the running issuer without a restart. A broken edit keeps the last good list
// (and is logged) rather than locking every service out.
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { ClientRecord } from './client-record.js';
import { loadClients } from './clients-file.js';

/** oidc-provider client metadata for one record. */
export function clientMetadata(c: ClientRecord): Record<string, unknown> {
  const usesCode = c.grant_types.includes('authorization_code');
  return {
    client_id: c.client_id,
    client_name: c.client_name,
    // Only the secret's hash is known (client-secret.ts); the provider's compareClientSecret is
    // replaced accordingly (see issuer.ts).
    client_secret: c.client_secret_hash,
    redirect_uris: usesCode ? [...c.redirect_uris] : [],
    post_logout_redirect_uris: [...c.post_logout_redirect_uris],
    grant_types: [...c.grant_types],
    response_types: usesCode ? ['code'] : [],
    token_endpoint_auth_method: c.token_endpoint_auth_method,
    jwks: c.jwks ? { keys: c.jwks.keys.map((k) => ({ ...k })) } : undefined,
    scope: c.scopes.join(' '),
    'urn:kiwi:allowed_groups': c.allowed_groups ? [...c.allowed_groups] : undefined,
    backchannel_logout_uri: c.backchannel_logout_uri,
    // Logout tokens always carry sid (and sub), whatever the client asks.
    backchannel_logout_session_required: c.backchannel_logout_uri ? true : undefined,
    require_pushed_authorization_requests: c.require_pushed_authorization_requests,
    dpop_bound_access_tokens: c.dpop_bound_access_tokens,
  };
}

export class ClientsSource {
  private list: ClientRecord[] = [];
  private stamp = '';

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {
    this.refresh(true);
  }

  /** Re-reads the file if its mtime/size/inode changed. Cheap enough per lookup (one stat). */
  private refresh(initial = false): void {
    let stamp = 'missing';
    try {
      const st = fs.statSync(this.file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      /* a missing file means no clients */
    }
    if (stamp === this.stamp) return;
    try {
      this.list = loadClients(this.file);
      this.stamp = stamp;
      if (!initial) this.log.info({ file: this.file, clients: this.list.length }, 'clients file reloaded');
    } catch (err) {
      if (initial) throw err;
      this.log.error({ err_message: (err as Error).message }, 'clients file invalid; keeping the previous clients');
      this.stamp = stamp; // do not re-log the same broken file on every request
    }
  }

  find(clientId: string): ClientRecord | undefined {
    this.refresh();
    return this.list.find((c) => c.client_id === clientId);
  }

  all(): readonly ClientRecord[] {
    this.refresh();
    return this.list;
  }
}
