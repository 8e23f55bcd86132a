// Which upstream identity signs in as which Kanidm person. A link is made
// only by an admin, by the person proving both sides, or (opt-in per IdP) by
// a verified email that matches exactly one person; never by a bare email.
//
// Links live in the state store without expiry. Record ids are derived from
// (issuer, subject), so every node computes the same id for the same upstream
// identity: a replicated store sees one record per identity, never two links
// racing under different ids. `created_at`/`updated_at` are what a cluster
// store needs to order concurrent writes; the store's `origin` names the node.
import { createHash } from 'node:crypto';
import type { StateRecord, StateStore } from '../state/store.js';

export const LINK_MODEL = 'FederatedLink';

export type LinkHow = 'admin' | 'self-service' | 'verified-email';

export interface FederatedLink {
  readonly id: string;
  /** The upstream issuer exactly as configured (for plain OAuth2: the configured `issuer`). */
  readonly issuer: string;
  /** Configured upstream IdP id, or the issuer URL for a trusted_issuers entry. */
  readonly idp: string;
  readonly upstream_sub: string;
  /** Kanidm person UUID: the `sub` Kiwi ID issues for this person. */
  readonly person: string;
  /** The person's name when linked (display only; the UUID is what counts). */
  readonly person_name?: string;
  readonly how: LinkHow;
  /** Epoch milliseconds. */
  readonly created_at: number;
  readonly updated_at: number;
  readonly last_used_at: number | null;
  /** Node that made the link (the store's record origin). */
  readonly node: string;
}

export class LinkConflictError extends Error {
  constructor(readonly existing: FederatedLink) {
    super(`this ${existing.idp} identity is already linked to another person (${existing.person_name ?? existing.person})`);
  }
}

/** Same on every node for the same upstream identity. */
export function linkId(issuer: string, sub: string): string {
  return createHash('sha256').update(issuer).update('\0').update(sub).digest('base64url');
}

type Payload = Omit<FederatedLink, 'id' | 'node'>;

function fromRecord(r: StateRecord): FederatedLink {
  return { ...(r.payload as unknown as Payload), id: r.id, node: r.origin };
}

export interface NewLink {
  issuer: string;
  idp: string;
  upstream_sub: string;
  person: string;
  person_name?: string;
  how: LinkHow;
}

export class LinkStore {
  constructor(
    private readonly store: StateStore,
    private readonly now: () => number = Date.now,
  ) {}

  async find(issuer: string, sub: string): Promise<FederatedLink | undefined> {
    const r = await this.store.find(LINK_MODEL, linkId(issuer, sub));
    return r ? fromRecord(r) : undefined;
  }

  /**
   * Links the identity to `person`. Linking it again to the same person keeps
   * the existing link; linking it to another person is refused (unlink first).
   */
  async link(l: NewLink): Promise<{ link: FederatedLink; created: boolean }> {
    const existing = await this.find(l.issuer, l.upstream_sub);
    if (existing) {
      if (existing.person !== l.person) throw new LinkConflictError(existing);
      return { link: existing, created: false };
    }
    const at = this.now();
    const payload: Payload = {
      issuer: l.issuer,
      idp: l.idp,
      upstream_sub: l.upstream_sub,
      person: l.person,
      ...(l.person_name !== undefined && { person_name: l.person_name }),
      how: l.how,
      created_at: at,
      updated_at: at,
      last_used_at: null,
    };
    const id = linkId(l.issuer, l.upstream_sub);
    await this.store.upsert(LINK_MODEL, id, payload as unknown as Record<string, unknown>, null);
    return { link: (await this.find(l.issuer, l.upstream_sub))!, created: true };
  }

  async unlink(issuer: string, sub: string): Promise<FederatedLink | undefined> {
    const existing = await this.find(issuer, sub);
    if (existing) await this.store.destroy(LINK_MODEL, existing.id);
    return existing;
  }

  /** Records a sign-in through the link. */
  async touch(link: FederatedLink): Promise<void> {
    const { id: _id, node: _node, ...payload } = link;
    const at = this.now();
    await this.store.upsert(LINK_MODEL, link.id, { ...payload, last_used_at: at, updated_at: at }, null);
  }

  async list(): Promise<FederatedLink[]> {
    const all = (await this.store.list(LINK_MODEL)).map(fromRecord);
    return all.sort((a, b) => a.idp.localeCompare(b.idp) || a.upstream_sub.localeCompare(b.upstream_sub));
  }
}
