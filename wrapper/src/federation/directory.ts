// Kanidm persons as federation needs them: who a link points to, the claims
// and groups tokens carry, and (for link_by_verified_email) who has an email.
// Read over loopback with Kanidm's CA pinned, as a service account that is a
// member of `idm_people_pii_read` only: it can search persons' names, mail
// and group memberships, and cannot change anything.
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import type { AccountClaims } from '../oidc/accounts.js';

export interface Person {
  /** The person's UUID: the `sub` Kiwi ID issues (as Kanidm's OAuth2 does). */
  readonly uuid: string;
  readonly name: string;
  readonly spn: string;
  readonly displayname?: string;
  readonly mails: readonly string[];
  /** Each group as Kanidm's `groups` scope names it: UUID and SPN. */
  readonly groups: readonly string[];
  /** False when Kanidm would refuse the account a sign-in now (expired or not yet valid). */
  readonly valid: boolean;
}

export interface PersonDirectory {
  /** By UUID, name or SPN; undefined when no such person exists. */
  person(id: string): Promise<Person | undefined>;
  /** Every person whose mail includes `email` (case-insensitive). */
  personsWithEmail(email: string): Promise<Person[]>;
}

export class DirectoryError extends Error {}

/**
 * The claims a token for `p` carries, shaped like Kanidm's OAuth2 claims for
 * Kiwi ID's own client (short preferred_username, groups as UUIDs and SPNs),
 * so a person looks the same however they signed in.
 */
export function personClaims(p: Person, extraGroups: readonly string[] = []): AccountClaims {
  const groups = [...new Set([...p.groups, ...extraGroups])];
  return {
    sub: p.uuid,
    preferred_username: p.name,
    ...(p.displayname !== undefined && { name: p.displayname }),
    ...(p.mails[0] !== undefined && { email: p.mails[0], email_verified: true }),
    groups,
  };
}

// --- Kanidm over its SCIM API --------------------------------------------

interface ScimRef {
  uuid?: string;
  value?: string;
}

type ScimEntry = Record<string, unknown> & { id?: string };

const ATTRS = 'uuid,name,spn,displayname,mail,memberof,account_expire,account_valid_from';

function asString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function mailsOf(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  // SCIM multi-value mail: [{ value, primary }], primary first.
  const items = v as Array<{ value?: unknown; primary?: unknown }>;
  const sorted = [...items].sort((a, b) => Number(b.primary === true) - Number(a.primary === true));
  return sorted.map((m) => asString(m.value)).filter((x): x is string => !!x);
}

function groupsOf(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return (v as ScimRef[]).flatMap((g) => [asString(g.uuid), asString(g.value)].filter((x): x is string => !!x));
}

function validNow(e: ScimEntry, now: number): boolean {
  const expire = asString(e.accountexpire ?? e.account_expire);
  const from = asString(e.accountvalidfrom ?? e.account_valid_from);
  if (expire && Date.parse(expire) <= now) return false;
  if (from && Date.parse(from) > now) return false;
  return true;
}

export function personFromScim(e: ScimEntry, now = Date.now()): Person | undefined {
  const uuid = asString(e.uuid) ?? asString(e.id);
  const name = asString(e.name);
  if (!uuid || !name) return undefined;
  return {
    uuid,
    name,
    spn: asString(e.spn) ?? name,
    displayname: asString(e.displayname),
    mails: mailsOf(e.mail),
    groups: groupsOf(e.memberof),
    valid: validNow(e, now),
  };
}

export interface KanidmDirectoryOptions {
  /** Loopback origin of Kanidm. */
  upstreamAddr: string;
  dispatcher: Dispatcher;
  /** Returns the service account's API token (read when needed, so a token created later is picked up). */
  token: () => string;
}

export class KanidmDirectory implements PersonDirectory {
  constructor(private readonly o: KanidmDirectoryOptions) {}

  private get(path: string): Promise<{ status: number; body: unknown }> {
    return this.request(path);
  }

  private post(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
    return this.request(path, JSON.stringify(body));
  }

  private async request(path: string, payload?: string): Promise<{ status: number; body: unknown }> {
    let res;
    try {
      res = await undiciFetch(this.o.upstreamAddr + path, {
        dispatcher: this.o.dispatcher,
        method: payload === undefined ? 'GET' : 'POST',
        headers: {
          authorization: `Bearer ${this.o.token()}`,
          accept: 'application/json',
          ...(payload !== undefined && { 'content-type': 'application/json' }),
        },
        body: payload,
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      throw new DirectoryError(`Kanidm is not reachable: ${(e as Error).message}`);
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text;
    }
    return { status: res.status, body };
  }

  async person(id: string): Promise<Person | undefined> {
    const r = await this.get(`/scim/v1/Person/${encodeURIComponent(id)}?attributes=${ATTRS}`);
    // Kanidm: 404 "nomatchingentries" for no such person (400 for an id it cannot parse).
    if (r.status === 404 || r.status === 400) return undefined;
    if (r.status === 401 || r.status === 403) throw new DirectoryError(`Kanidm refused the directory reader (HTTP ${r.status}); check [federation] kanidm_token_file`);
    if (r.status !== 200) throw new DirectoryError(`Kanidm answered HTTP ${r.status} for a person lookup`);
    return personFromScim(r.body as ScimEntry);
  }

  async personsWithEmail(email: string): Promise<Person[]> {
    // Kanidm's SCIM filter cannot match mail; its search API can (exactly, so the
    // address is tried as given and lower-cased). Matches are then read like any person.
    const uuids = new Set<string>();
    for (const candidate of new Set([email, email.toLowerCase()])) {
      const r = await this.post('/v1/raw/search', { filter: { and: [{ eq: ['class', 'person'] }, { eq: ['mail', candidate] }] } });
      if (r.status !== 200) throw new DirectoryError(`Kanidm answered HTTP ${r.status} for a mail search`);
      for (const e of (r.body as { entries?: Array<{ attrs?: { uuid?: string[] } }> })?.entries ?? []) {
        const uuid = e.attrs?.uuid?.[0];
        if (uuid) uuids.add(uuid);
      }
    }
    const wanted = email.toLowerCase();
    const persons = await Promise.all([...uuids].map((u) => this.person(u)));
    return persons.filter((p): p is Person => !!p && p.mails.some((m) => m.toLowerCase() === wanted));
  }
}
