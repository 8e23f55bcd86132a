// Loads and strictly validates the wrapper's config.toml. Every problem is reported as a
// single line "<file>: <key>: <what is wrong>" so operators can fix it without reading code.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { parseByteSize, parseDuration } from './duration.js';
import { isTable, SectionReader, tomlType, type Table } from './toml-types.js';
import { CLIENTS_REGISTRATION_KEYS, parseIssuerSettings, type IssuerSettings } from './issuer.js';
import { LOG_LEVELS, type LogLevel } from '../telemetry/log.js';
import { checkFederationFiles, FederationKeyError, parseFederation, type FederationConfig } from './federation.js';
import { CLUSTER_TOP_KEYS, parseClusterConfig, type ClusterConfig } from './cluster.js';
import { ConfigError } from './config-error.js';

export { ConfigError } from './config-error.js';

export interface TokenTtls {
  /** All values in seconds, as written in the file. */
  readonly access_token_ttl: number;
  readonly refresh_token_ttl: number;
  readonly auth_code_ttl: number;
  readonly id_token_ttl: number;
  readonly session_ttl: number;
  /** Device authorization grant (RFC 8628): how long a user code can be entered (default 600). */
  readonly device_code_ttl?: number;
}

export interface KiwiConfig {
  /** Absolute path of the file this config came from. */
  readonly config_file: string;
  readonly listen_addr: string;
  /** Host part of listen_addr, IPv6 without brackets (ready for server.listen). */
  readonly listen_host: string;
  readonly listen_port: number;
  readonly issuer: string;
  readonly tls_cert: string;
  readonly tls_key: string;
  /** Origin only, e.g. "https://127.0.0.1:8443". */
  readonly upstream_addr: string;
  readonly upstream_bin: string;
  readonly upstream_cli: string;
  readonly upstream_config: string;
  /** The only CA trusted for Kanidm's loopback TLS (first boot issues Kanidm's certificate from it). */
  readonly upstream_ca: string;
  /** Kanidm's database file, written into the server.toml that `kiwi-id init` creates. */
  readonly upstream_db_path: string;
  readonly compatibility_file: string;
  readonly health_check_interval_ms: number;
  readonly health_check_timeout_ms: number;
  readonly jwt_private_key: string;
  readonly jwt_public_key: string;
  readonly log_level: LogLevel;
  readonly log_dir: string | undefined;
  readonly data_dir: string;
  readonly drain_timeout_ms: number;
  /** Processes serving the listener (1: one process; more: a primary that supervises Kanidm plus this many workers). */
  readonly workers: number;
  /** V8's old-generation growing factor as a percent over the live heap (0: V8 chooses; lifecycle/heap.ts). */
  readonly heap_growing_percent: number;
  readonly upstream_timeout_ms: number;
  readonly max_body_size: number;
  readonly max_header_size: number;
  readonly tokens: TokenTtls;
  /** Sign-in attempts per source address in any five minutes, in front of Kanidm (0: off). */
  readonly auth_rate_limit: number;
  readonly clients: { readonly file: string } & IssuerSettings['registration'];
  readonly backchannel_logout: IssuerSettings['backchannel_logout'];
  /** Kiwi ID's own OAuth2 client registration at Kanidm (how users log in). */
  readonly upstream_oauth2: {
    readonly client_id: string;
    readonly client_secret_file: string;
    /** How long a confirmation from Kanidm that a signed-in person is still valid is reused (0: ask every time). */
    readonly recheck_interval_ms: number;
  };
  /** External IdPs and trusted assertion issuers (config/federation.ts). */
  readonly federation: FederationConfig;
  /** node_id, issuer_aliases, [gossip], [cluster] (config/cluster.ts). */
  readonly cluster: ClusterConfig;
}

export interface ValidateOptions {
  /** Check that key/cert files exist and have safe modes. Unit tests turn this off. */
  checkFiles?: boolean;
}

/** `heap_growing_percent` unless configured (lifecycle/heap.ts says why). */
export const DEFAULT_HEAP_GROWING_PERCENT = 30;

const TOP_KEYS = [
  'listen_addr', 'issuer', 'tls_cert', 'tls_key', 'upstream_addr', 'upstream_bin', 'upstream_cli',
  'upstream_config', 'upstream_ca', 'upstream_db_path', 'compatibility_file', 'health_check_interval',
  'health_check_timeout', 'jwt_private_key', 'jwt_public_key', 'log_level', 'log_dir', 'data_dir',
  'drain_timeout', 'upstream_timeout', 'max_body_size', 'max_header_size', 'auth_rate_limit', 'tokens', 'clients',
  'upstream_oauth2', 'federation', 'backchannel_logout', 'workers', 'heap_growing_percent', ...CLUSTER_TOP_KEYS,
] as const;

const TOKEN_DEFAULTS: Required<TokenTtls> = {
  access_token_ttl: 900,
  refresh_token_ttl: 86400,
  auth_code_ttl: 60,
  id_token_ttl: 900,
  session_ttl: 3600,
  device_code_ttl: 600,
};

const errorCode = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? String(e);

/** One TOML table plus where its keys live, so errors can name "[tokens].foo". */
class Section extends SectionReader {
  constructor(
    readonly file: string,
    table: Table,
    prefix: string,
    baseDir: string,
  ) {
    super(table, prefix, baseDir);
  }

  error(key: string, problem: string): ConfigError {
    return new ConfigError(this.file, this.prefix + key, problem);
  }

  /** Runs a parser that throws plain Errors and re-throws them against `key`. */
  convert<T>(key: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw this.error(key, (e as Error).message);
    }
  }

  section(key: string): Section {
    const v = this.table[key] ?? {};
    if (!isTable(v)) throw this.error(key, `expected a table, got ${tomlType(v)}`);
    return new Section(this.file, v, `[${key}].`, this.baseDir);
  }

  durationMs(key: string, fallback: string, o: { allowZero?: boolean } = {}): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'string') {
      throw this.error(key, `expected a duration string like "5s", got ${tomlType(v)}`);
    }
    const ms = this.convert(key, () => parseDuration(v));
    if (ms < 0 || (ms === 0 && !o.allowZero)) throw this.error(key, 'must be greater than 0');
    return ms;
  }

  byteSize(key: string, fallback: string): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw this.error(key, `expected a byte size like "1MiB" or an integer, got ${tomlType(v)}`);
    }
    const bytes = this.convert(key, () => parseByteSize(v));
    if (bytes <= 0) throw this.error(key, 'must be greater than 0');
    return bytes;
  }

  /** A whole number >= 0. */
  count(key: string, fallback: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw this.error(key, `expected a whole number >= 0, got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }

  /** A whole number from `min` to `max`. */
  between(key: string, fallback: number, min: number, max: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw this.error(key, `expected an integer from ${min} to ${max}, got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }

  positiveInt(key: string, fallback: number): number {
    const v = this.table[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw this.error(key, `expected a positive integer (seconds), got ${tomlType(v)} ${String(v)}`);
    }
    return v;
  }
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Splits "host:port" (IPv4, [IPv6] or hostname). */
export function parseListenAddr(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) {
    throw new Error(
      `${JSON.stringify(s)} is not host:port (use e.g. 0.0.0.0:443, [::]:443, id.example.com:443)`,
    );
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range 1-65535`);
  if (m[1] !== undefined) {
    if (!net.isIPv6(m[1])) throw new Error(`${JSON.stringify(m[1])} is not an IPv6 address`);
    return { host: m[1], port };
  }
  const host = m[2];
  // All-digit dotted names would pass the hostname rule, so judge them as IPv4 instead.
  if (/^[\d.]+$/.test(host) ? !net.isIPv4(host) : !HOSTNAME.test(host)) {
    throw new Error(`${JSON.stringify(host)} is not a valid IPv4 address or hostname`);
  }
  return { host, port };
}

function parseHttpsUrl(s: string): URL {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new Error(`${JSON.stringify(s)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new Error(`${JSON.stringify(s)} must use https://`);
  if (url.username || url.password) throw new Error(`${JSON.stringify(s)} must not contain credentials`);
  if (s.includes('?') || s.includes('#')) {
    throw new Error(`${JSON.stringify(s)} must not contain a query or fragment`);
  }
  return url;
}

/** The issuer is compared byte-for-byte by OIDC clients, so it is kept exactly as written. */
function checkIssuer(s: string): string {
  const url = parseHttpsUrl(s);
  if (s.endsWith('/')) throw new Error(`${JSON.stringify(s)} must not end with a slash`);
  // Kanidm's origin is the same public URL and owns the rest of the path space,
  // so the issuer endpoints live at the root.
  if (url.pathname !== '/') throw new Error(`${JSON.stringify(s)} must not contain a path`);
  return s;
}

function upstreamOrigin(s: string): string {
  const url = parseHttpsUrl(s);
  if (url.pathname !== '/') throw new Error(`${JSON.stringify(s)} must not contain a path`);
  return url.origin;
}

/** Fails unless `file` is a readable regular file; `secret` files must be owner-only. */
function checkFile(sec: Section, key: string, file: string, secret: boolean): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
    fs.accessSync(file, fs.constants.R_OK);
  } catch (e) {
    const code = errorCode(e);
    throw sec.error(key, code === 'ENOENT' ? `${file} does not exist` : `${file} cannot be read (${code})`);
  }
  if (!st.isFile()) throw sec.error(key, `${file} is not a regular file`);
  if (secret && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw sec.error(key, `${file} is readable by group/others (mode ${mode}); run chmod 600`);
  }
}

/** `[federation]` is parsed in config/federation.ts; its key errors become ConfigErrors here. */
function federationKeys<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FederationKeyError) throw new ConfigError(file, e.key, e.message);
    throw e;
  }
}

export function validateConfig(raw: unknown, file: string, opts: ValidateOptions = {}): KiwiConfig {
  if (!isTable(raw)) throw new ConfigError(file, undefined, 'config must be a TOML table');
  const top = new Section(file, raw, '', path.dirname(path.resolve(file)));
  top.rejectUnknown(TOP_KEYS);
  const tokensSec = top.section('tokens');
  tokensSec.rejectUnknown(Object.keys(TOKEN_DEFAULTS));
  const clientsSec = top.section('clients');
  clientsSec.rejectUnknown(['file', ...CLIENTS_REGISTRATION_KEYS]);
  const issuerSettings = parseIssuerSettings(raw, file, opts.checkFiles ?? true);
  const upstreamOauth2Sec = top.section('upstream_oauth2');
  upstreamOauth2Sec.rejectUnknown(['client_id', 'client_secret_file', 'recheck_interval']);

  const listen_addr = top.string('listen_addr');
  const { host: listen_host, port: listen_port } = top.convert('listen_addr', () =>
    parseListenAddr(listen_addr),
  );
  const issuer = top.convert('issuer', () => checkIssuer(top.string('issuer', `https://${listen_addr}`)));
  const upstream_addr = top.convert('upstream_addr', () =>
    upstreamOrigin(top.string('upstream_addr', 'https://127.0.0.1:8443')),
  );

  const log_level = top.string('log_level', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(log_level)) {
    throw top.error(
      'log_level',
      `${JSON.stringify(log_level)} is not a log level (use one of ${LOG_LEVELS.join(', ')})`,
    );
  }

  const health_check_interval_ms = top.durationMs('health_check_interval', '5s');
  const health_check_timeout_ms = top.durationMs('health_check_timeout', '60s');
  if (health_check_timeout_ms <= health_check_interval_ms) {
    throw top.error(
      'health_check_timeout',
      `must be greater than health_check_interval (${health_check_timeout_ms}ms <= ${health_check_interval_ms}ms)`,
    );
  }

  const upstream_bin = top.path('upstream_bin', '/opt/upstream/bin/kanidmd');
  const upstream_config = top.path('upstream_config', '/opt/upstream/etc/server.toml');
  const data_dir = top.path('data_dir', '/var/lib/kiwi');
  const tokens: TokenTtls = Object.freeze({
    access_token_ttl: tokensSec.positiveInt('access_token_ttl', TOKEN_DEFAULTS.access_token_ttl),
    refresh_token_ttl: tokensSec.positiveInt('refresh_token_ttl', TOKEN_DEFAULTS.refresh_token_ttl),
    auth_code_ttl: tokensSec.positiveInt('auth_code_ttl', TOKEN_DEFAULTS.auth_code_ttl),
    id_token_ttl: tokensSec.positiveInt('id_token_ttl', TOKEN_DEFAULTS.id_token_ttl),
    session_ttl: tokensSec.positiveInt('session_ttl', TOKEN_DEFAULTS.session_ttl),
    device_code_ttl: tokensSec.positiveInt('device_code_ttl', TOKEN_DEFAULTS.device_code_ttl),
  });

  const config: KiwiConfig = {
    config_file: path.resolve(file),
    listen_addr,
    listen_host,
    listen_port,
    issuer,
    tls_cert: top.path('tls_cert'),
    tls_key: top.path('tls_key'),
    upstream_addr,
    upstream_bin,
    upstream_cli: top.path('upstream_cli', path.join(path.dirname(upstream_bin), 'kanidm')),
    upstream_config,
    // Default: the CA first boot made beside server.toml (upstream/setup/server-toml.ts layout).
    upstream_ca: top.path('upstream_ca', path.join(path.dirname(upstream_config), 'tls', 'ca.pem')),
    upstream_db_path: top.path('upstream_db_path', '/var/lib/upstream/kanidm.db'),
    compatibility_file: top.path('compatibility_file', '/opt/kiwi/compatibility.toml'),
    health_check_interval_ms,
    health_check_timeout_ms,
    jwt_private_key: top.path('jwt_private_key', '/etc/kiwi/jwt-private.pem'),
    jwt_public_key: top.path('jwt_public_key', '/etc/kiwi/jwt-public.pem'),
    log_level: log_level as LogLevel,
    log_dir: top.optionalPath('log_dir'),
    data_dir,
    drain_timeout_ms: top.durationMs('drain_timeout', '10s'),
    workers: top.between('workers', 1, 1, 64),
    heap_growing_percent: top.between('heap_growing_percent', DEFAULT_HEAP_GROWING_PERCENT, 0, 300),
    upstream_timeout_ms: top.durationMs('upstream_timeout', '30s'),
    max_body_size: top.byteSize('max_body_size', '1MiB'),
    max_header_size: top.byteSize('max_header_size', '16KiB'),
    tokens,
    auth_rate_limit: top.count('auth_rate_limit', 20),
    clients: Object.freeze({ file: clientsSec.path('file', path.join(data_dir, 'clients.toml')), ...issuerSettings.registration }),
    backchannel_logout: issuerSettings.backchannel_logout,
    upstream_oauth2: Object.freeze({
      client_id: upstreamOauth2Sec.string('client_id', 'kiwi-id'),
      client_secret_file: upstreamOauth2Sec.path('client_secret_file', path.join(data_dir, 'upstream-oauth2.secret')),
      recheck_interval_ms: upstreamOauth2Sec.durationMs('recheck_interval', '10s', { allowZero: true }),
    }),
    federation: federationKeys(file, () => parseFederation(raw.federation, { baseDir: top.baseDir, dataDir: data_dir })),
    cluster: parseClusterConfig(raw, listen_host, parseListenAddr, (key, problem) => new ConfigError(file, key, problem)),
  };

  if (opts.checkFiles ?? true) {
    checkFile(top, 'tls_cert', config.tls_cert, false);
    checkFile(top, 'tls_key', config.tls_key, true);
    checkFile(top, 'jwt_private_key', config.jwt_private_key, true);
    checkFile(top, 'jwt_public_key', config.jwt_public_key, false);
    // The CA is the only trust root for the upstream; fail at startup, not at first request.
    checkFile(top, 'upstream_ca', config.upstream_ca, false);
    federationKeys(file, () => checkFederationFiles(config.federation, config.config_file));
  }
  return Object.freeze(config);
}

export function loadConfig(file: string, opts?: ValidateOptions): KiwiConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, undefined, `cannot read config file (${errorCode(e)})`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    // smol-toml's message carries a multi-line code excerpt; keep only the first line.
    const reason = e.message.split('\n')[0].replace(/^Invalid TOML document:\s*/, '');
    throw new ConfigError(file, undefined, `line ${e.line}, column ${e.column}: invalid TOML: ${reason}`);
  }
  return validateConfig(raw, file, opts);
}

/**
 * Files holding Kanidm's recovered admin passwords: root-only, next to
 * config.toml. First boot writes them; a joining cluster node receives them.
 */
export function adminPasswordFile(cfg: Pick<KiwiConfig, 'config_file'>, account: 'idm_admin' | 'admin'): string {
  return path.join(path.dirname(cfg.config_file), `${account}.password`);
}
