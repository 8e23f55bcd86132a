// End-user accounts as the issuer knows them: the claims Kanidm returned at
// the user's last login, kept in the state store for as long as sessions and
// refresh tokens may ask for them. Kanidm remains the source of truth; this
// is a snapshot refreshed on every login.
import type { StateStore } from '../state/store.js';

export interface AccountClaims {
  sub: string;
  preferred_username?: string;
  name?: string;
  email?: string;
  email_verified?: boolean;
  /** As Kanidm sends them with the `groups` scope: SPNs ("mail_users@idm.example.com") and UUIDs. */
  groups?: string[];
}

const MODEL = 'Account';

export class Accounts {
  constructor(
    private readonly store: StateStore,
    /** Longest time a grant may use the snapshot (refresh token lifetime). */
    private readonly ttlSeconds: number,
  ) {}

  async save(claims: AccountClaims): Promise<void> {
    await this.store.upsert(MODEL, claims.sub, { ...claims }, this.ttlSeconds);
  }

  async find(sub: string): Promise<AccountClaims | undefined> {
    const rec = await this.store.find(MODEL, sub);
    return rec ? (rec.payload as unknown as AccountClaims) : undefined;
  }
}

/**
 * True when one of the user's groups is allowed. An allowed entry matches a
 * group by full SPN, by name (the SPN before "@") or by UUID, so operators can
 * write what `kanidm group list` shows them.
 */
export function memberOfAny(userGroups: readonly string[] | undefined, allowed: readonly string[]): boolean {
  const have = new Set<string>();
  for (const g of userGroups ?? []) {
    const lower = g.toLowerCase();
    have.add(lower);
    const at = lower.indexOf('@');
    if (at > 0) have.add(lower.slice(0, at));
  }
  return allowed.some((a) => have.has(a.toLowerCase()));
}
