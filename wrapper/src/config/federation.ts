// The `[federation]` section and its `[[federation.upstream_idps]]`: external
// identity providers users may sign in with (linked to Kanidm persons), and
// issuers whose JWT-bearer assertions the token endpoint accepts. Strict like
// the rest of the config: one line "FILE: KEY: problem" for anything wrong.
import fs from 'node:fs';
import path from 'node:path';
import { isTable, SectionReader, tomlType, type Table } from './toml-types.js';

export const UPSTREAM_AUTH_METHODS = ['private_key_jwt', 'client_secret_post', 'client_secret_basic', 'none'] as const;
export type UpstreamAuthMethod = (typeof UPSTREAM_AUTH_METHODS)[number];

export interface UpstreamIdp {
  /** Short URL-safe name: the button value, metrics label and default callback path part. */
  readonly id: string;
  /** Compared byte-for-byte with `iss` (and with the discovered issuer). */
  readonly issuer: string;
  readonly client_id: string;
  readonly token_endpoint_auth_method: UpstreamAuthMethod;
  /** PKCS#8 PEM key for private_key_jwt (0600). */
  readonly private_key_path?: string;
  /** Inline secret (config file must not be world-readable) ... */
  readonly client_secret?: string;
  /** ... or a file holding it (0600). Exactly one of the two for client_secret_*. */
  readonly client_secret_file?: string;
  readonly scopes: readonly string[];
  /** Absolute path on the issuer origin where the upstream sends the browser back. */
  readonly callback_path: string;
  readonly default_groups: readonly string[];
  readonly default_acr?: string;
  readonly default_amr: readonly string[];
  readonly display_name: string;
  /** Endpoint overrides: set `authorization_endpoint` to skip discovery. */
  readonly authorization_endpoint?: string;
  readonly token_endpoint?: string;
  readonly userinfo_endpoint?: string;
  /** Without it (and with overrides), the IdP is plain OAuth2: subject from userinfo. */
  readonly jwks_uri?: string;
  readonly subject_claim: string;
  /** Link a first sign-in to the one Kanidm person with that email, only if the IdP says it is verified. */
  readonly link_by_verified_email: boolean;
  /** PEM CA(s) that alone are trusted for this IdP's TLS (default: [federation] ca_file, else system roots). */
  readonly ca_file?: string;
}

export interface FederationConfig {
  readonly trusted_issuers: readonly string[];
  readonly max_clock_skew_secs: number;
  /** 0 = no upper bound on assertion lifetime. */
  readonly max_assertion_lifetime_secs: number;
  /** PEM CA(s) trusted for upstream IdPs and trusted issuers; default: system roots. */
  readonly ca_file?: string;
  /** API token of the read-only Kanidm service account that reads persons and groups. */
  readonly kanidm_token_file: string;
  readonly upstream_idps: readonly UpstreamIdp[];
}

export const FEDERATION_KEYS = [
  'trusted_issuers', 'max_clock_skew_secs', 'max_assertion_lifetime_secs', 'ca_file', 'kanidm_token_file', 'upstream_idps',
] as const;

const IDP_KEYS = [
  'id', 'issuer', 'client_id', 'token_endpoint_auth_method', 'private_key_path', 'client_secret', 'client_secret_file',
  'scopes', 'callback_path', 'default_groups', 'default_acr', 'default_amr', 'display_name', 'authorization_endpoint',
  'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'subject_claim', 'link_by_verified_email', 'ca_file',
] as const;

const ID_RULE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** The sign-in step's value for Kanidm itself. */
export const RESERVED_IDP_IDS = ['kanidm'];

/**
 * Paths that stay Kanidm's or the issuer's (a callback there would shadow
 * them). Everything else on the shared origin may be given to a callback.
 */
const RESERVED_PATH_PREFIXES = [
  '/ui', '/v1', '/scim', '/pkg', '/status', '/.well-known', '/oauth2/openid', '/oauth2/authorise', '/oauth2/token',
  '/oauth2/device', '/oauth2/authorize', '/oauth2/userinfo', '/oauth2/keys', '/oauth2/introspect', '/oauth2/revoke',
  '/oauth2/logout', '/oauth2/interaction', '/oauth2/login', '/healthz', '/readyz', '/metrics',
];

export const defaultCallbackPath = (id: string): string => `/oauth2/federation/${id}/callback`;

/** Errors carry the key as written in the file; the caller turns them into ConfigError. */
export class FederationKeyError extends Error {
  constructor(readonly key: string, problem: string) {
    super(problem);
  }
}

class Reader extends SectionReader {
  error(key: string, problem: string): FederationKeyError {
    return new FederationKeyError(this.prefix + key, problem);
  }

  strings(key: string, fallback: readonly string[]): string[] {
    const v = this.table[key];
    if (v === undefined) return [...fallback];
    if (!Array.isArray(v)) throw this.error(key, `expected an array of strings, got ${tomlType(v)}`);
    v.forEach((s, i) => {
      if (typeof s !== 'string' || s === '') throw this.error(key, `[${i}]: expected a non-empty string, got ${tomlType(s)}`);
    });
    if (new Set(v).size !== v.length) throw this.error(key, 'contains duplicates');
    return v as string[];
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'boolean') throw this.error(key, `expected true or false, got ${tomlType(v)}`);
    return v;
  }

  seconds(key: string, fallback: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw this.error(key, `expected a non-negative integer (seconds), got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }

  httpsUrl(key: string): string | undefined {
    const v = this.optionalString(key);
    return v === undefined ? undefined : this.checkHttpsUrl(key, v);
  }

  checkHttpsUrl(key: string, v: string): string {
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      throw this.error(key, `${JSON.stringify(v)} is not a URL`);
    }
    if (url.protocol !== 'https:') throw this.error(key, `${JSON.stringify(v)} must use https://`);
    if (url.username || url.password) throw this.error(key, `${JSON.stringify(v)} must not contain credentials`);
    if (url.hash || v.includes('#')) throw this.error(key, `${JSON.stringify(v)} must not contain a fragment`);
    return v;
  }
}

function checkCallbackPath(r: Reader, p: string): string {
  if (!p.startsWith('/') || p.startsWith('//')) throw r.error('callback_path', `${JSON.stringify(p)} must be an absolute path like "/oauth2/federation/ID/callback"`);
  if (/[?#\s]/.test(p)) throw r.error('callback_path', `${JSON.stringify(p)} must not contain a query, fragment or spaces`);
  const lower = p.toLowerCase();
  const taken = RESERVED_PATH_PREFIXES.find((x) => lower === x || lower.startsWith(x + '/'));
  if (taken || p === '/') throw r.error('callback_path', `${JSON.stringify(p)} is used by Kanidm or the issuer (${taken ?? '/'})`);
  return p;
}

function parseIdp(raw: unknown, index: number, baseDir: string): UpstreamIdp {
  const at = `[[federation.upstream_idps]] #${index + 1}.`;
  if (!isTable(raw)) throw new FederationKeyError(at.slice(0, -1), `expected a table, got ${tomlType(raw)}`);
  const first = new Reader(raw, at, baseDir);
  const id = first.string('id');
  if (!ID_RULE.test(id)) throw first.error('id', `${JSON.stringify(id)} must be 1-64 letters, digits, "-" or "_"`);
  if (RESERVED_IDP_IDS.includes(id.toLowerCase())) throw first.error('id', `${JSON.stringify(id)} is reserved`);
  const r = new Reader(raw, `[federation.upstream_idps.${id}].`, baseDir);
  r.rejectUnknown(IDP_KEYS);

  const issuer = r.httpsUrl('issuer');
  if (issuer === undefined) throw r.error('issuer', 'is required');
  if (issuer.includes('?')) throw r.error('issuer', `${JSON.stringify(issuer)} must not contain a query`);
  const method = r.string('token_endpoint_auth_method', 'private_key_jwt');
  if (!(UPSTREAM_AUTH_METHODS as readonly string[]).includes(method)) {
    throw r.error('token_endpoint_auth_method', `${JSON.stringify(method)} is not one of ${UPSTREAM_AUTH_METHODS.join(', ')}`);
  }
  const private_key_path = r.optionalPath('private_key_path');
  const client_secret = r.optionalString('client_secret');
  const client_secret_file = r.optionalPath('client_secret_file');
  if (method === 'private_key_jwt') {
    if (!private_key_path) throw r.error('private_key_path', 'is required for token_endpoint_auth_method "private_key_jwt"');
  } else if (private_key_path) {
    throw r.error('private_key_path', `is only used with token_endpoint_auth_method "private_key_jwt", not "${method}"`);
  }
  if (method === 'client_secret_post' || method === 'client_secret_basic') {
    if (client_secret && client_secret_file) throw r.error('client_secret_file', 'give client_secret or client_secret_file, not both');
    if (!client_secret && !client_secret_file) throw r.error('client_secret', `or client_secret_file is required for token_endpoint_auth_method "${method}"`);
  } else if (client_secret || client_secret_file) {
    const key = client_secret ? 'client_secret' : 'client_secret_file';
    throw r.error(key, `is only used with client_secret_post / client_secret_basic, not "${method}"`);
  }

  const authorization_endpoint = r.httpsUrl('authorization_endpoint');
  const token_endpoint = r.httpsUrl('token_endpoint');
  const userinfo_endpoint = r.httpsUrl('userinfo_endpoint');
  const jwks_uri = r.httpsUrl('jwks_uri');
  if (authorization_endpoint) {
    // Without discovery these define the provider; a plain OAuth2 provider has no id_token to check.
    if (!token_endpoint) throw r.error('token_endpoint', 'is required when authorization_endpoint is set');
    if (!jwks_uri && !userinfo_endpoint) throw r.error('userinfo_endpoint', 'is required for a provider without jwks_uri (plain OAuth2: the subject comes from userinfo)');
  } else {
    for (const k of ['token_endpoint', 'userinfo_endpoint', 'jwks_uri'] as const) {
      if (r.table[k] !== undefined) throw r.error(k, 'is only used together with authorization_endpoint (endpoint overrides skip discovery)');
    }
  }

  return Object.freeze({
    id,
    issuer,
    client_id: r.string('client_id'),
    token_endpoint_auth_method: method as UpstreamAuthMethod,
    ...(private_key_path && { private_key_path }),
    ...(client_secret && { client_secret }),
    ...(client_secret_file && { client_secret_file }),
    scopes: Object.freeze(r.strings('scopes', ['openid'])),
    callback_path: checkCallbackPath(r, r.string('callback_path', defaultCallbackPath(id))),
    default_groups: Object.freeze(r.strings('default_groups', [])),
    ...(r.optionalString('default_acr') !== undefined && { default_acr: r.optionalString('default_acr') }),
    default_amr: Object.freeze(r.strings('default_amr', [])),
    display_name: r.string('display_name', id),
    ...(authorization_endpoint && { authorization_endpoint }),
    ...(token_endpoint && { token_endpoint }),
    ...(userinfo_endpoint && { userinfo_endpoint }),
    ...(jwks_uri && { jwks_uri }),
    subject_claim: r.string('subject_claim', 'sub'),
    link_by_verified_email: r.bool('link_by_verified_email', false),
    ...(r.optionalPath('ca_file') && { ca_file: r.optionalPath('ca_file') }),
  });
}

export interface FederationParseOptions {
  baseDir: string;
  dataDir: string;
}

/** Parses `[federation]` (absent = empty). Throws FederationKeyError naming the key. */
export function parseFederation(raw: unknown, o: FederationParseOptions): FederationConfig {
  const table = raw ?? {};
  if (!isTable(table)) throw new FederationKeyError('federation', `expected a table, got ${tomlType(table)}`);
  const r = new Reader(table, '[federation].', o.baseDir);
  r.rejectUnknown(FEDERATION_KEYS);
  const trusted = r.strings('trusted_issuers', []);
  trusted.forEach((iss, i) => r.checkHttpsUrl(`trusted_issuers[${i}]`, iss));
  const idpsRaw = table.upstream_idps ?? [];
  if (!Array.isArray(idpsRaw)) throw r.error('upstream_idps', `expected [[federation.upstream_idps]] tables, got ${tomlType(idpsRaw)}`);
  const upstream_idps = idpsRaw.map((x, i) => parseIdp(x, i, o.baseDir));
  const seenIds = new Map<string, number>();
  const seenPaths = new Map<string, string>();
  for (const idp of upstream_idps) {
    const lower = idp.id.toLowerCase();
    if (seenIds.has(lower)) throw new FederationKeyError(`[federation.upstream_idps.${idp.id}].id`, 'is used by another upstream IdP');
    seenIds.set(lower, 1);
    const other = seenPaths.get(idp.callback_path);
    if (other) throw new FederationKeyError(`[federation.upstream_idps.${idp.id}].callback_path`, `${idp.callback_path} is already the callback of "${other}"`);
    seenPaths.set(idp.callback_path, idp.id);
  }
  return Object.freeze({
    trusted_issuers: Object.freeze(trusted),
    max_clock_skew_secs: r.seconds('max_clock_skew_secs', 30),
    max_assertion_lifetime_secs: r.seconds('max_assertion_lifetime_secs', 3600),
    ...(r.optionalPath('ca_file') && { ca_file: r.optionalPath('ca_file') }),
    kanidm_token_file: r.optionalPath('kanidm_token_file') ?? path.join(o.dataDir, 'kanidm-reader.token'),
    upstream_idps: Object.freeze(upstream_idps),
  });
}

type FileProblem = { key: string; problem: string } | undefined;

function fileProblem(key: string, file: string, secret: boolean): FileProblem {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
    fs.accessSync(file, fs.constants.R_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return { key, problem: code === 'ENOENT' ? `${file} does not exist` : `${file} cannot be read (${code})` };
  }
  if (!st.isFile()) return { key, problem: `${file} is not a regular file` };
  if (secret && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    return { key, problem: `${file} is readable by group/others (mode ${mode}); run chmod 600` };
  }
  return undefined;
}

/** Files the section names: keys and secret files owner-only; an inline secret needs a config file others cannot read. */
export function checkFederationFiles(fed: FederationConfig, configFile: string): void {
  const problems: FileProblem[] = [];
  if (fed.ca_file) problems.push(fileProblem('[federation].ca_file', fed.ca_file, false));
  for (const idp of fed.upstream_idps) {
    const at = `[federation.upstream_idps.${idp.id}].`;
    if (idp.private_key_path) problems.push(fileProblem(at + 'private_key_path', idp.private_key_path, true));
    if (idp.client_secret_file) problems.push(fileProblem(at + 'client_secret_file', idp.client_secret_file, true));
    if (idp.ca_file) problems.push(fileProblem(at + 'ca_file', idp.ca_file, false));
    if (idp.client_secret !== undefined) {
      const mode = fs.statSync(configFile).mode & 0o777;
      if (mode & 0o004) {
        problems.push({
          key: at + 'client_secret',
          problem: `secret in a world-readable config file (mode ${mode.toString(8).padStart(4, '0')}); use client_secret_file (0600) or chmod o-r the config`,
        });
      }
    }
  }
  const first = problems.find((p) => p !== undefined);
  if (first) throw new FederationKeyError(first.key, first.problem);
}
