// Validation of client definitions, as strict as the wrapper config: one table (from the
// clients file, or built by the CLI's operations) becomes a frozen ClientRecord with defaults
// filled, or a ClientError naming the client and the key.

import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { isTable, TableReader, tomlType, type Table } from '../config/toml-types.js';
import { ClientError } from './client-errors.js';
import {
  AUTH_METHODS, DEFAULT_AUTH_METHOD, DEFAULT_GRANT_TYPES, DEFAULT_SCOPES, DEVICE_CODE_GRANT, GRANT_TYPES,
  usesSecret, type ClientRecord, type GrantType, type Jwks, type TokenEndpointAuthMethod,
} from './client-record.js';
import { isSecretHash } from './client-secret.js';

export const CLIENT_ID_RE = /^[a-z0-9][a-z0-9._-]{1,63}$/;
/** The keys of a [[client]] table, in the order the file is written. */
export const CLIENT_KEYS = [
  'client_id', 'client_name', 'redirect_uris', 'post_logout_redirect_uris', 'grant_types',
  'token_endpoint_auth_method', 'client_secret_hash', 'jwks', 'allowed_groups', 'scopes',
  'backchannel_logout_uri', 'require_pushed_authorization_requests', 'dpop_bound_access_tokens',
] as const;
/** RFC 6749 scope-token characters. */
const SCOPE_RE = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Checks one redirect / post-logout URI; returns the problem or undefined. */
export function redirectUriProblem(s: string): string | undefined {
  const q = JSON.stringify(s);
  // The URL parser silently strips or escapes these; the stored string must be the exact one.
  if (/[\s\x00-\x1f\x7f\\]/.test(s)) return `${q} contains whitespace, control characters or backslashes`;
  if (s.includes('*')) return `${q} contains "*": wildcards are not supported, list each URI exactly`;
  if (s.includes('#')) return `${q} must not contain a fragment`;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return `${q} is not an absolute URL`;
  }
  if (url.username || url.password) return `${q} must not contain credentials`;
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') {
    if (LOOPBACK_HOSTS.has(url.hostname)) return undefined;
    return `${q} must use https:// (http:// is only allowed for localhost / 127.0.0.1 loopback)`;
  }
  return `${q} must use https:// (got ${url.protocol.replace(/:$/, '')})`;
}

/** Key-scoped reader over one client table; errors name client and key. */
class Entry extends TableReader {
  constructor(
    table: Table,
    public label: string,
  ) {
    super(table);
  }

  error(key: string, problem: string): ClientError {
    return new ClientError(this.label, key, problem);
  }

  optionalStringArray(key: string, allowEmpty: boolean): string[] | undefined {
    const v = this.table[key];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw this.error(key, `expected an array of strings, got ${tomlType(v)}`);
    if (!allowEmpty && v.length === 0) throw this.error(key, 'must not be an empty array (omit the key instead)');
    const seen = new Set<string>();
    v.forEach((item, i) => {
      if (typeof item !== 'string') throw this.error(key, `entry ${i}: expected a string, got ${tomlType(item)}`);
      if (item === '') throw this.error(key, `entry ${i}: must not be empty`);
      if (seen.has(item)) throw this.error(key, `entry ${i}: duplicate ${JSON.stringify(item)}`);
      seen.add(item);
    });
    return v as string[];
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.optionalString(key) ?? fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      throw this.error(key, `${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
    }
    return v as T;
  }

  optionalBoolean(key: string): boolean | undefined {
    const v = this.table[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw this.error(key, `expected true or false, got ${tomlType(v)}`);
    return v;
  }

  uris(key: string): string[] | undefined {
    const list = this.optionalStringArray(key, true);
    list?.forEach((u, i) => {
      const problem = redirectUriProblem(u);
      if (problem) throw this.error(key, `entry ${i}: ${problem}`);
    });
    return list;
  }
}

function validateJwks(entry: Entry, v: unknown): Jwks {
  if (!isTable(v)) throw entry.error('jwks', `expected a table with a "keys" array, got ${tomlType(v)}`);
  for (const k of Object.keys(v)) if (k !== 'keys') throw entry.error('jwks', `unknown member ${JSON.stringify(k)}`);
  const keys = v.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw entry.error('jwks', 'expected a non-empty "keys" array');
  keys.forEach((jwk, i) => {
    if (!isTable(jwk)) throw entry.error('jwks', `keys[${i}]: expected a table, got ${tomlType(jwk)}`);
    if (typeof jwk.kty !== 'string') throw entry.error('jwks', `keys[${i}]: "kty" is required`);
    for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
      if (priv in jwk) throw entry.error('jwks', `keys[${i}]: contains private key material ("${priv}"); publish public keys only`);
    }
    try {
      createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch (e) {
      throw entry.error('jwks', `keys[${i}]: not a usable public key (${(e as Error).message.split('\n')[0]})`);
    }
  });
  // Plain, frozen copies: TOML tables come back with a null prototype, and callers' objects
  // must not be able to change a validated record afterwards.
  return Object.freeze({ keys: Object.freeze(keys.map((k) => Object.freeze({ ...(k as Table) }))) });
}

/** The client_id, checked before anything else so every later message can name it. */
function readClientId(e: Entry, raw: Table): string {
  const id = raw.client_id;
  if (id === undefined) throw e.error('client_id', 'is required');
  if (typeof id !== 'string') throw e.error('client_id', `expected a string, got ${tomlType(id)}`);
  if (!CLIENT_ID_RE.test(id)) {
    throw e.error('client_id', `${JSON.stringify(id)} must match ${CLIENT_ID_RE.source} (lowercase letters, digits, ".", "_", "-"; 2-64 characters)`);
  }
  return id;
}

function refuseUnknownKeys(e: Entry, raw: Table): void {
  for (const key of Object.keys(raw)) {
    if (!(CLIENT_KEYS as readonly string[]).includes(key)) throw e.error(key, 'unknown key');
  }
}

/** Known grants only; a refresh token needs a grant that issues the first one. */
function readGrantTypes(e: Entry): GrantType[] {
  const listed = e.optionalStringArray('grant_types', false);
  for (const g of listed ?? []) {
    if (!(GRANT_TYPES as readonly string[]).includes(g)) {
      throw e.error('grant_types', `${JSON.stringify(g)} is not one of ${GRANT_TYPES.join(', ')}`);
    }
  }
  const grants = (listed ?? [...DEFAULT_GRANT_TYPES]) as GrantType[];
  if (grants.includes('refresh_token') && !grants.includes('authorization_code') && !grants.includes(DEVICE_CODE_GRANT)) {
    throw e.error('grant_types', `refresh_token requires authorization_code or ${DEVICE_CODE_GRANT}`);
  }
  return grants;
}

/** A public client (`none`) cannot use a grant that is only the client's own authentication. */
function readAuthMethod(e: Entry, grants: readonly GrantType[]): TokenEndpointAuthMethod {
  const method = e.oneOf('token_endpoint_auth_method', AUTH_METHODS, DEFAULT_AUTH_METHOD);
  if (method === 'none' && grants.includes('client_credentials')) {
    throw e.error('grant_types', 'client_credentials needs a confidential client (token_endpoint_auth_method "none" is public)');
  }
  return method;
}

/** Where the browser and the back channel may be sent: exact URIs, https except loopback. */
function readUris(e: Entry, grants: readonly GrantType[]) {
  const redirect_uris = e.uris('redirect_uris') ?? [];
  if (grants.includes('authorization_code') && redirect_uris.length === 0) {
    throw e.error('redirect_uris', 'at least one redirect URI is required for the authorization_code grant');
  }
  const post_logout_redirect_uris = e.uris('post_logout_redirect_uris') ?? [];
  const backchannel_logout_uri = e.optionalString('backchannel_logout_uri');
  if (backchannel_logout_uri !== undefined) {
    const problem = redirectUriProblem(backchannel_logout_uri);
    if (problem) throw e.error('backchannel_logout_uri', problem);
  }
  return { redirect_uris, post_logout_redirect_uris, backchannel_logout_uri };
}

/** PAR and DPoP requirements: optional booleans; PAR only means something for the code flow. */
function readRequirements(e: Entry, grants: readonly GrantType[]) {
  const require_pushed_authorization_requests = e.optionalBoolean('require_pushed_authorization_requests');
  if (require_pushed_authorization_requests && !grants.includes('authorization_code')) {
    throw e.error('require_pushed_authorization_requests', 'only applies to clients with the authorization_code grant');
  }
  const dpop_bound_access_tokens = e.optionalBoolean('dpop_bound_access_tokens');
  return { require_pushed_authorization_requests, dpop_bound_access_tokens };
}

/** The client's credential, exactly the one its method uses: a secret's hash, or public keys. */
function readCredential(e: Entry, raw: Table, method: TokenEndpointAuthMethod): { client_secret_hash?: string; jwks?: Jwks } {
  const hash = raw.client_secret_hash;
  if (usesSecret(method)) {
    if (hash === undefined) {
      throw e.error('client_secret_hash', `is required for token_endpoint_auth_method "${method}" (use "kiwi-id client rotate-secret")`);
    }
    if (typeof hash !== 'string') throw e.error('client_secret_hash', `expected a string, got ${tomlType(hash)}`);
    if (!isSecretHash(hash)) {
      throw e.error('client_secret_hash', 'is not a hash made by kiwi-id (expected sha256$<digest> or scrypt$N$r$p$salt$hash); never store plaintext secrets');
    }
    if (raw.jwks !== undefined) throw e.error('jwks', `is only allowed with token_endpoint_auth_method "private_key_jwt", not "${method}"`);
    return { client_secret_hash: hash };
  }
  if (hash !== undefined) throw e.error('client_secret_hash', `is not allowed with token_endpoint_auth_method "${method}"`);
  if (method === 'private_key_jwt') {
    if (raw.jwks === undefined) throw e.error('jwks', 'is required for token_endpoint_auth_method "private_key_jwt"');
    return { jwks: validateJwks(e, raw.jwks) };
  }
  if (raw.jwks !== undefined) throw e.error('jwks', `is only allowed with token_endpoint_auth_method "private_key_jwt", not "${method}"`);
  return {};
}

/** Scope names by RFC 6749's grammar; offline_access only where refresh tokens can be had. */
function readScopes(e: Entry, grants: readonly GrantType[]): string[] {
  const scopes = e.optionalStringArray('scopes', false) ?? [...DEFAULT_SCOPES];
  for (const s of scopes) {
    if (!SCOPE_RE.test(s)) throw e.error('scopes', `${JSON.stringify(s)} is not a valid scope name`);
  }
  if (scopes.includes('offline_access') && !grants.includes('refresh_token')) {
    throw e.error('scopes', 'offline_access requires the refresh_token grant');
  }
  return scopes;
}

/** Drops the keys left undefined, so a record holds only what is set. */
function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Validates one client table (as parsed from TOML) and fills defaults.
 * `index` is used in messages until the client_id is known to be valid.
 * The steps run in this order so that each message names the first problem an
 * operator would fix (the id, unknown keys, then the grants everything else depends on).
 */
export function validateClient(raw: unknown, index: number | string = 0): ClientRecord {
  const label = String(index);
  if (!isTable(raw)) throw new ClientError(label, undefined, `expected a table, got ${tomlType(raw)}`);
  const e = new Entry(raw, label);
  const client_id = readClientId(e, raw);
  e.label = client_id;
  refuseUnknownKeys(e, raw);
  const client_name = e.optionalString('client_name');
  const grant_types = readGrantTypes(e);
  const method = readAuthMethod(e, grant_types);
  const uris = readUris(e, grant_types);
  const requirements = readRequirements(e, grant_types);
  const credential = readCredential(e, raw, method);
  const allowed_groups = e.optionalStringArray('allowed_groups', false);
  const scopes = readScopes(e, grant_types);

  // Frozen copies: callers' arrays must not be able to change a validated record afterwards.
  const record: ClientRecord = definedOnly({
    client_id,
    client_name,
    redirect_uris: Object.freeze([...uris.redirect_uris]),
    post_logout_redirect_uris: Object.freeze([...uris.post_logout_redirect_uris]),
    grant_types: Object.freeze([...grant_types]),
    token_endpoint_auth_method: method,
    client_secret_hash: credential.client_secret_hash,
    jwks: credential.jwks,
    allowed_groups: allowed_groups && Object.freeze([...allowed_groups]),
    scopes: Object.freeze([...scopes]),
    backchannel_logout_uri: uris.backchannel_logout_uri,
    require_pushed_authorization_requests: requirements.require_pushed_authorization_requests,
    dpop_bound_access_tokens: requirements.dpop_bound_access_tokens,
  });
  return Object.freeze(record);
}

/** Validates a whole list (each entry plus unique client_id). Throws ClientError. */
export function validateClients(raw: readonly unknown[]): ClientRecord[] {
  const byId = new Map<string, number>();
  return raw.map((entry, i) => {
    const c = validateClient(entry, i);
    const first = byId.get(c.client_id);
    if (first !== undefined) {
      throw new ClientError(c.client_id, 'client_id', `duplicate client_id (entries ${first} and ${i})`);
    }
    byId.set(c.client_id, i);
    return c;
  });
}
