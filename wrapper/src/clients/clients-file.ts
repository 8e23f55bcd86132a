// Registered relying parties ("services": kiwi-mail, kiwi-files, ...), kept in a static TOML
// file (config `[clients].file`) with one [[client]] table per service. Validation is as strict
// as the wrapper config: every problem is one line "<file>: client[<id or index>].<key>: <what>".
// Client secrets are never stored: only a hash made by hashSecret() is.

import { createHash, createPublicKey, type JsonWebKey, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify, TomlError } from 'smol-toml';
import { ownerForRootWrite, replaceFileAtomic } from '../files/atomic-file.js';
import { isTable, TableReader, tomlType, type Table } from '../config/toml-types.js';

// ---------------------------------------------------------------------------
// Types

/** RFC 8628: CLI tools on KiwiStack hosts sign their user in through a browser elsewhere. */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
// jwt-bearer: RFC 7523 assertions from trusted issuers about linked identities (federation/jwt-bearer.ts).
export const GRANT_TYPES = [
  'authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:jwt-bearer', DEVICE_CODE_GRANT,
] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] as const;
export type TokenEndpointAuthMethod = (typeof AUTH_METHODS)[number];

export const DEFAULT_GRANT_TYPES: readonly GrantType[] = Object.freeze(['authorization_code', 'refresh_token']);
export const DEFAULT_SCOPES: readonly string[] = Object.freeze(['openid', 'profile', 'email', 'groups', 'offline_access']);
/** Used when token_endpoint_auth_method is not written (the OAuth 2.0 default). */
export const DEFAULT_AUTH_METHOD: TokenEndpointAuthMethod = 'client_secret_basic';

export interface Jwks {
  readonly keys: readonly Readonly<Record<string, unknown>>[];
}

export interface ClientRecord {
  readonly client_id: string;
  readonly client_name?: string;
  /** Exact strings as written; compared byte-for-byte at the authorization endpoint. */
  readonly redirect_uris: readonly string[];
  readonly post_logout_redirect_uris: readonly string[];
  readonly grant_types: readonly GrantType[];
  readonly token_endpoint_auth_method: TokenEndpointAuthMethod;
  /** Present exactly for client_secret_basic / client_secret_post. */
  readonly client_secret_hash?: string;
  /** Present exactly for private_key_jwt (public keys only). */
  readonly jwks?: Jwks;
  /** When present, only members of one of these groups may get tokens for this client. */
  readonly allowed_groups?: readonly string[];
  readonly scopes: readonly string[];
  /** OIDC Back-Channel Logout 1.0: where the service receives logout tokens. */
  readonly backchannel_logout_uri?: string;
  /** RFC 9126: authorization requests only through PAR. */
  readonly require_pushed_authorization_requests?: boolean;
  /** RFC 9449: access tokens only DPoP-bound. */
  readonly dpop_bound_access_tokens?: boolean;
}

/** What an operator supplies to addClient(); the secret (if any) is generated, never supplied. */
export interface ClientInput {
  client_id: string;
  client_name?: string;
  redirect_uris?: readonly string[];
  post_logout_redirect_uris?: readonly string[];
  grant_types?: readonly GrantType[];
  /** Default client_secret_basic. `none` makes a public client (PKCE is mandatory). */
  token_endpoint_auth_method?: TokenEndpointAuthMethod;
  jwks?: Jwks;
  allowed_groups?: readonly string[];
  scopes?: readonly string[];
  backchannel_logout_uri?: string;
  require_pushed_authorization_requests?: boolean;
  dpop_bound_access_tokens?: boolean;
}

// ---------------------------------------------------------------------------
// Errors

function where(client: string | undefined, key: string | undefined): string {
  const c = client === undefined ? '' : `client[${client}]`;
  if (key === undefined) return c;
  return c === '' ? key : `${c}.${key}`;
}

/** A client definition is invalid (from addClient & co, where there is no file). */
export class ClientError extends Error {
  /** Client id, or the entry's index when the id itself is unusable. */
  readonly client: string | undefined;
  readonly key: string | undefined;
  readonly problem: string;

  constructor(client: string | undefined, key: string | undefined, problem: string) {
    const w = where(client, key);
    super(w === '' ? problem : `${w}: ${problem}`);
    this.name = 'ClientError';
    this.client = client;
    this.key = key;
    this.problem = problem;
  }
}

/** The clients file is unreadable or invalid; message is one line naming file, client and key. */
export class ClientsFileError extends Error {
  readonly file: string;
  readonly client: string | undefined;
  readonly key: string | undefined;
  readonly problem: string;

  constructor(file: string, client: string | undefined, key: string | undefined, problem: string) {
    const w = where(client, key);
    super(w === '' ? `${file}: ${problem}` : `${file}: ${w}: ${problem}`);
    this.name = 'ClientsFileError';
    this.file = file;
    this.client = client;
    this.key = key;
    this.problem = problem;
  }

  static from(file: string, e: ClientError): ClientsFileError {
    return new ClientsFileError(file, e.client, e.key, e.problem);
  }
}

/** removeClient / rotateSecret / lookups named a client_id that is not registered. */
export class UnknownClientError extends Error {
  readonly client_id: string;

  constructor(clientId: string) {
    super(`no client with client_id ${JSON.stringify(clientId)}`);
    this.name = 'UnknownClientError';
    this.client_id = clientId;
  }
}

// ---------------------------------------------------------------------------
// Secrets
//
// Client secrets are generated here (32 random bytes), never chosen by people.
// With 256 bits of entropy a single SHA-256 makes the stored value useless to
// an attacker, so new secrets are stored as "sha256$<digest>". A slow KDF
// (scrypt, which earlier versions wrote) protects low-entropy passwords and
// would only cost ~50 ms of CPU per token request (and hand unauthenticated
// callers a cheap way to burn CPU). Existing scrypt hashes still verify.

const SHA256_PREFIX = 'sha256$';
/** Upper bound for scrypt parameters read back from a file, so a tampered hash cannot exhaust memory/CPU. */
const MAX_SCRYPT_MEM = 256 * 1024 * 1024;

interface ScryptParams {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** scrypt needs about 128*N*r bytes (+128*r*p); leave headroom above Node's 32 MiB default. */
function maxmemFor(N: number, r: number, p: number): number {
  return 128 * r * (N + p + 2) + 1024 * 1024;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

function decodeB64url(s: string): Buffer | undefined {
  if (!B64URL.test(s)) return undefined;
  const buf = Buffer.from(s, 'base64url');
  // Reject non-canonical encodings (stray bits) so one hash has exactly one spelling.
  return buf.toString('base64url') === s ? buf : undefined;
}

function parsePositiveInt(s: string): number | undefined {
  if (!/^[1-9][0-9]{0,9}$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Parses "scrypt$N$r$p$salt$hash"; undefined when malformed or outside safe bounds. */
function parseScrypt(encoded: string): ScryptParams | undefined {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const N = parsePositiveInt(parts[1]!);
  const r = parsePositiveInt(parts[2]!);
  const p = parsePositiveInt(parts[3]!);
  if (N === undefined || r === undefined || p === undefined) return undefined;
  if (N < 2 || (N & (N - 1)) !== 0 || r > 64 || p > 16) return undefined;
  if (maxmemFor(N, r, p) > MAX_SCRYPT_MEM) return undefined;
  const salt = decodeB64url(parts[4]!);
  const hash = decodeB64url(parts[5]!);
  if (!salt || !hash || salt.length < 16 || salt.length > 64 || hash.length < 16 || hash.length > 64) {
    return undefined;
  }
  return { N, r, p, salt, hash };
}

/** The 32-byte digest of a "sha256$..." value; undefined when malformed. */
function parseSha256(encoded: string): Buffer | undefined {
  if (!encoded.startsWith(SHA256_PREFIX)) return undefined;
  const digest = decodeB64url(encoded.slice(SHA256_PREFIX.length));
  return digest?.length === 32 ? digest : undefined;
}

type ParsedHash = { kind: 'sha256'; digest: Buffer } | ({ kind: 'scrypt' } & ScryptParams);

function parseHash(encoded: unknown): ParsedHash | undefined {
  if (typeof encoded !== 'string') return undefined;
  const digest = parseSha256(encoded);
  if (digest) return { kind: 'sha256', digest };
  const legacy = parseScrypt(encoded);
  return legacy ? { kind: 'scrypt', ...legacy } : undefined;
}

/** True when `encoded` is a stored secret hash this version can verify (does not check any secret). */
export function isSecretHash(encoded: unknown): boolean {
  return parseHash(encoded) !== undefined;
}

/** A new client secret: 32 random bytes, base64url (43 characters). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

const sha256 = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();

/** "sha256$<base64url digest>" of a generated secret (see the top of this section for why). */
export function hashSecret(secret: string): string {
  if (typeof secret !== 'string' || secret === '') throw new TypeError('secret must be a non-empty string');
  return SHA256_PREFIX + sha256(secret).toString('base64url');
}

/** Constant-time check of `secret` against a stored hash. Never throws; malformed → false. */
export function verifySecret(secret: string, encoded: string): boolean {
  try {
    const parsed = parseHash(encoded);
    if (!parsed || typeof secret !== 'string' || secret === '') return false;
    if (parsed.kind === 'sha256') return timingSafeEqual(sha256(secret), parsed.digest);
    const { N, r, p, salt, hash } = parsed;
    const derived = scryptSync(secret, salt, hash.length, { N, r, p, maxmem: maxmemFor(N, r, p) });
    return timingSafeEqual(derived, hash);
  } catch {
    return false;
  }
}

/** verifySecret() without blocking the event loop on legacy scrypt hashes (token endpoint). Never rejects. */
export async function verifySecretAsync(secret: string, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  if (!parsed || typeof secret !== 'string' || secret === '') return false;
  if (parsed.kind === 'sha256') return verifySecret(secret, encoded);
  const { N, r, p, salt, hash } = parsed;
  return new Promise((resolve) => {
    try {
      scrypt(secret, salt, hash.length, { N, r, p, maxmem: maxmemFor(N, r, p) }, (err, derived) => {
        resolve(!err && timingSafeEqual(derived, hash));
      });
    } catch {
      resolve(false);
    }
  });
}

// ---------------------------------------------------------------------------
// Validation

export const CLIENT_ID_RE = /^[a-z0-9][a-z0-9._-]{1,63}$/;
const CLIENT_KEYS = [
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

/**
 * Validates one client table (as parsed from TOML) and fills defaults.
 * `index` is used in messages until the client_id is known to be valid.
 */
export function validateClient(raw: unknown, index: number | string = 0): ClientRecord {
  const label = String(index);
  if (!isTable(raw)) throw new ClientError(label, undefined, `expected a table, got ${tomlType(raw)}`);
  const e = new Entry(raw, label);

  const idRaw = raw.client_id;
  if (idRaw === undefined) throw e.error('client_id', 'is required');
  if (typeof idRaw !== 'string') throw e.error('client_id', `expected a string, got ${tomlType(idRaw)}`);
  if (!CLIENT_ID_RE.test(idRaw)) {
    throw e.error('client_id', `${JSON.stringify(idRaw)} must match ${CLIENT_ID_RE.source} (lowercase letters, digits, ".", "_", "-"; 2-64 characters)`);
  }
  const client_id = idRaw;
  e.label = client_id;

  for (const key of Object.keys(raw)) {
    if (!(CLIENT_KEYS as readonly string[]).includes(key)) throw e.error(key, 'unknown key');
  }

  const client_name = e.optionalString('client_name');

  const grantsRaw = e.optionalStringArray('grant_types', false);
  for (const g of grantsRaw ?? []) {
    if (!(GRANT_TYPES as readonly string[]).includes(g)) {
      throw e.error('grant_types', `${JSON.stringify(g)} is not one of ${GRANT_TYPES.join(', ')}`);
    }
  }
  const grant_types = (grantsRaw ?? [...DEFAULT_GRANT_TYPES]) as GrantType[];
  if (grant_types.includes('refresh_token') && !grant_types.includes('authorization_code') && !grant_types.includes(DEVICE_CODE_GRANT)) {
    throw e.error('grant_types', `refresh_token requires authorization_code or ${DEVICE_CODE_GRANT}`);
  }

  const method = e.oneOf('token_endpoint_auth_method', AUTH_METHODS, DEFAULT_AUTH_METHOD);
  if (method === 'none' && grant_types.includes('client_credentials')) {
    throw e.error('grant_types', 'client_credentials needs a confidential client (token_endpoint_auth_method "none" is public)');
  }

  const redirect_uris = e.uris('redirect_uris') ?? [];
  if (grant_types.includes('authorization_code') && redirect_uris.length === 0) {
    throw e.error('redirect_uris', 'at least one redirect URI is required for the authorization_code grant');
  }
  const post_logout_redirect_uris = e.uris('post_logout_redirect_uris') ?? [];
  const backchannel_logout_uri = e.optionalString('backchannel_logout_uri');
  if (backchannel_logout_uri !== undefined) {
    const problem = redirectUriProblem(backchannel_logout_uri);
    if (problem) throw e.error('backchannel_logout_uri', problem);
  }
  const require_pushed_authorization_requests = e.optionalBoolean('require_pushed_authorization_requests');
  if (require_pushed_authorization_requests && !grant_types.includes('authorization_code')) {
    throw e.error('require_pushed_authorization_requests', 'only applies to clients with the authorization_code grant');
  }
  const dpop_bound_access_tokens = e.optionalBoolean('dpop_bound_access_tokens');

  const hash = raw.client_secret_hash;
  const needsSecret = method === 'client_secret_basic' || method === 'client_secret_post';
  let client_secret_hash: string | undefined;
  if (needsSecret) {
    if (hash === undefined) {
      throw e.error('client_secret_hash', `is required for token_endpoint_auth_method "${method}" (use "kiwi-id client rotate-secret")`);
    }
    if (typeof hash !== 'string') throw e.error('client_secret_hash', `expected a string, got ${tomlType(hash)}`);
    if (!isSecretHash(hash)) {
      throw e.error('client_secret_hash', 'is not a hash made by kiwi-id (expected scrypt$N$r$p$salt$hash); never store plaintext secrets');
    }
    client_secret_hash = hash;
  } else if (hash !== undefined) {
    throw e.error('client_secret_hash', `is not allowed with token_endpoint_auth_method "${method}"`);
  }

  let jwks: Jwks | undefined;
  if (method === 'private_key_jwt') {
    if (raw.jwks === undefined) throw e.error('jwks', 'is required for token_endpoint_auth_method "private_key_jwt"');
    jwks = validateJwks(e, raw.jwks);
  } else if (raw.jwks !== undefined) {
    throw e.error('jwks', `is only allowed with token_endpoint_auth_method "private_key_jwt", not "${method}"`);
  }

  const allowed_groups = e.optionalStringArray('allowed_groups', false);

  const scopes = e.optionalStringArray('scopes', false) ?? [...DEFAULT_SCOPES];
  for (const s of scopes) {
    if (!SCOPE_RE.test(s)) throw e.error('scopes', `${JSON.stringify(s)} is not a valid scope name`);
  }
  if (scopes.includes('offline_access') && !grant_types.includes('refresh_token')) {
    throw e.error('scopes', 'offline_access requires the refresh_token grant');
  }

  const record: ClientRecord = {
    client_id,
    ...(client_name !== undefined && { client_name }),
    redirect_uris: Object.freeze([...redirect_uris]),
    post_logout_redirect_uris: Object.freeze([...post_logout_redirect_uris]),
    grant_types: Object.freeze([...grant_types]),
    token_endpoint_auth_method: method,
    ...(client_secret_hash !== undefined && { client_secret_hash }),
    ...(jwks !== undefined && { jwks }),
    ...(allowed_groups !== undefined && { allowed_groups: Object.freeze([...allowed_groups]) }),
    scopes: Object.freeze([...scopes]),
    ...(backchannel_logout_uri !== undefined && { backchannel_logout_uri }),
    ...(require_pushed_authorization_requests !== undefined && { require_pushed_authorization_requests }),
    ...(dpop_bound_access_tokens !== undefined && { dpop_bound_access_tokens }),
  };
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

// ---------------------------------------------------------------------------
// File I/O

const errorCode = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? String(e);

/** Parses clients-file text; `file` is only used in messages. */
export function parseClients(text: string, file: string): ClientRecord[] {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const reason = e.message.split('\n')[0]!.replace(/^Invalid TOML document:\s*/, '');
    throw new ClientsFileError(file, undefined, undefined, `line ${e.line}, column ${e.column}: invalid TOML: ${reason}`);
  }
  const top = raw as Table;
  for (const key of Object.keys(top)) {
    if (key !== 'client') throw new ClientsFileError(file, undefined, key, 'unknown key (only [[client]] tables are allowed)');
  }
  const list = top.client ?? [];
  if (!Array.isArray(list)) {
    throw new ClientsFileError(file, undefined, 'client', `expected [[client]] tables, got ${tomlType(list)}`);
  }
  try {
    return validateClients(list);
  } catch (e) {
    if (e instanceof ClientError) throw ClientsFileError.from(file, e);
    throw e;
  }
}

/** Loads and validates the clients file. A missing file means "no clients". */
export function loadClients(file: string): ClientRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return [];
    throw new ClientsFileError(file, undefined, undefined, `cannot read clients file (${errorCode(e)})`);
  }
  return parseClients(text, file);
}

const HEADER = [
  '# Kiwi ID registered clients (relying parties), one [[client]] table per service.',
  '# Managed with `kiwi-id client ...`; secrets are stored only as hashes.',
  '',
].join('\n');

/** Serializes a list (validated first) to the clients-file text, header included. */
export function formatClients(clients: readonly ClientRecord[]): string {
  const valid = validateClients(clients.map((c) => ({ ...c })));
  const tables = valid.map((c) => {
    const t: Table = {};
    for (const key of CLIENT_KEYS) {
      const v = (c as unknown as Table)[key];
      if (v !== undefined) t[key] = v;
    }
    return t;
  });
  return HEADER + (tables.length ? '\n' + stringify({ client: tables }) + '\n' : '');
}

/** Writes the file atomically (temp file in the same directory, fsync, rename), mode 0600. */
export function saveClients(file: string, clients: readonly ClientRecord[]): void {
  let text: string;
  try {
    text = formatClients(clients);
  } catch (e) {
    if (e instanceof ClientError) throw ClientsFileError.from(file, e);
    throw e;
  }
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Root (an operator) writes it for the service user that reads it.
  replaceFileAtomic(file, text, 0o600, ownerForRootWrite(dir));
}

/**
 * Read-modify-write of the clients file under an exclusive lock (`<file>.lock`,
 * created with O_EXCL, holding the owner's pid), so two `kiwi-id client`
 * commands run at once cannot lose each other's change. A lock left by a
 * process that no longer exists is taken over.
 */
export function updateClients<T>(file: string, change: (clients: ClientRecord[]) => { clients: ClientRecord[]; result: T }): T {
  const lock = `${path.resolve(file)}.lock`;
  fs.mkdirSync(path.dirname(lock), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (e) {
      if (errorCode(e) !== 'EEXIST') throw e;
      if (lockIsStale(lock)) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new ClientsFileError(file, undefined, undefined, `locked by another kiwi-id command (${lock}); try again`);
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
    }
  }
  try {
    const { clients, result } = change(loadClients(file));
    saveClients(file, clients);
    return result;
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

const LOCK_WAIT_MS = 10_000;

function lockIsStale(lock: string): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(lock, 'utf8'));
  } catch {
    return false; // vanished or being written: retry
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return errorCode(e) === 'ESRCH';
  }
}

// ---------------------------------------------------------------------------
// Pure list operations (used by the CLI)

export function findClient(list: readonly ClientRecord[], id: string): ClientRecord | undefined {
  return list.find((c) => c.client_id === id);
}

function indexOrThrow(list: readonly ClientRecord[], id: string): number {
  const i = list.findIndex((c) => c.client_id === id);
  if (i < 0) throw new UnknownClientError(id);
  return i;
}

function isConfidentialSecretMethod(m: TokenEndpointAuthMethod): boolean {
  return m === 'client_secret_basic' || m === 'client_secret_post';
}

/**
 * Returns the list with a new client appended. For client_secret_* clients a secret is
 * generated and returned once in plaintext; only its hash goes into the record.
 * Throws ClientError on invalid input or a duplicate client_id.
 */
export function addClient(
  list: readonly ClientRecord[],
  input: ClientInput,
): { clients: ClientRecord[]; secret?: string } {
  if (!isTable(input)) throw new ClientError(undefined, undefined, 'client input must be an object');
  if ('client_secret_hash' in input) {
    throw new ClientError(String(input.client_id), 'client_secret_hash', 'is generated by kiwi-id and cannot be supplied');
  }
  const method = input.token_endpoint_auth_method ?? DEFAULT_AUTH_METHOD;
  const secret = isConfidentialSecretMethod(method) ? generateSecret() : undefined;
  const raw: Table = {};
  for (const [k, v] of Object.entries(input)) if (v !== undefined) raw[k] = v;
  if (secret !== undefined) raw.client_secret_hash = hashSecret(secret);
  const record = validateClient(raw, typeof input.client_id === 'string' ? input.client_id : 'new');
  if (findClient(list, record.client_id)) {
    throw new ClientError(record.client_id, 'client_id', 'a client with this client_id already exists');
  }
  const clients = [...list, record];
  return secret === undefined ? { clients } : { clients, secret };
}

/** Returns the list without `id`; throws UnknownClientError if it is not registered. */
export function removeClient(list: readonly ClientRecord[], id: string): ClientRecord[] {
  const i = indexOrThrow(list, id);
  return [...list.slice(0, i), ...list.slice(i + 1)];
}

/** What `updateClient` may change; identity, auth method and secret stay as they are. */
export type ClientChanges = Partial<
  Pick<
    ClientInput,
    | 'client_name' | 'redirect_uris' | 'post_logout_redirect_uris' | 'grant_types' | 'scopes'
    | 'require_pushed_authorization_requests' | 'dpop_bound_access_tokens'
  >
> & {
  /** An empty list removes the restriction (everyone Kanidm lets in may use the client). */
  allowed_groups?: readonly string[];
  /** An empty string removes the URI (no back-channel logout for this client). */
  backchannel_logout_uri?: string;
};

/** Returns the list with `id` changed and re-validated; the secret (if any) keeps working. */
export function updateClient(list: readonly ClientRecord[], id: string, changes: ClientChanges): ClientRecord[] {
  const i = indexOrThrow(list, id);
  const raw: Table = { ...(list[i] as unknown as Table) };
  for (const [k, v] of Object.entries(changes)) if (v !== undefined) raw[k] = v;
  if (Array.isArray(raw.allowed_groups) && raw.allowed_groups.length === 0) delete raw.allowed_groups;
  if (raw.backchannel_logout_uri === '') delete raw.backchannel_logout_uri;
  const clients = [...list];
  clients[i] = validateClient(raw, id);
  return clients;
}

/** Replaces the secret of a client_secret_* client; the old secret stops verifying. */
export function rotateSecret(list: readonly ClientRecord[], id: string): { clients: ClientRecord[]; secret: string } {
  const i = indexOrThrow(list, id);
  const current = list[i]!;
  if (!isConfidentialSecretMethod(current.token_endpoint_auth_method)) {
    throw new ClientError(
      id,
      'token_endpoint_auth_method',
      `client uses "${current.token_endpoint_auth_method}" and has no secret to rotate`,
    );
  }
  const secret = generateSecret();
  const updated = Object.freeze({ ...current, client_secret_hash: hashSecret(secret) });
  const clients = [...list];
  clients[i] = updated;
  return { clients, secret };
}
