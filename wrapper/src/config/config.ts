// Loads and strictly validates the wrapper's config.toml. Every problem is reported as a
// single line "<file>: <key>: <what is wrong>" so operators can fix it without reading code.
// The sections with rules of their own have their own modules (issuer.ts, federation.ts,
// cluster.ts); the readers are section.ts, the address parsers addresses.ts.

import fs from 'node:fs';
import path from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { isTable } from './toml-types.js';
import { CLIENTS_REGISTRATION_KEYS, parseIssuerSettings, type IssuerSettings } from './issuer.js';
import { LOG_LEVELS, type LogLevel } from '../telemetry/log.js';
import { checkFederationFiles, FederationKeyError, parseFederation, type FederationConfig } from './federation.js';
import { CLUSTER_TOP_KEYS, parseClusterConfig, type ClusterConfig } from './cluster.js';
import { checkIssuer, parseListenAddr, upstreamOrigin } from './addresses.js';
import { ConfigError } from './config-error.js';
import { Section } from './section.js';

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

/** Where the wrapper listens, the issuer URL people see, and Kanidm's loopback origin. */
function readAddresses(top: Section) {
  const listen_addr = top.string('listen_addr');
  const { host: listen_host, port: listen_port } = top.convert('listen_addr', () => parseListenAddr(listen_addr));
  const issuer = top.convert('issuer', () => checkIssuer(top.string('issuer', `https://${listen_addr}`)));
  const upstream_addr = top.convert('upstream_addr', () => upstreamOrigin(top.string('upstream_addr', 'https://127.0.0.1:8443')));
  return { listen_addr, listen_host, listen_port, issuer, upstream_addr };
}

function readLogLevel(top: Section): LogLevel {
  const level = top.string('log_level', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw top.error('log_level', `${JSON.stringify(level)} is not a log level (use one of ${LOG_LEVELS.join(', ')})`);
  }
  return level as LogLevel;
}

/** How often Kanidm is asked, and how long it may stay unhealthy before it is restarted. */
function readHealthChecks(top: Section) {
  const health_check_interval_ms = top.durationMs('health_check_interval', '5s');
  const health_check_timeout_ms = top.durationMs('health_check_timeout', '60s');
  if (health_check_timeout_ms <= health_check_interval_ms) {
    throw top.error(
      'health_check_timeout',
      `must be greater than health_check_interval (${health_check_timeout_ms}ms <= ${health_check_interval_ms}ms)`,
    );
  }
  return { health_check_interval_ms, health_check_timeout_ms };
}

/** Kanidm's binaries, config, CA and database, with the appliance's layout as defaults. */
function readUpstreamFiles(top: Section) {
  const upstream_bin = top.path('upstream_bin', '/opt/upstream/bin/kanidmd');
  const upstream_config = top.path('upstream_config', '/opt/upstream/etc/server.toml');
  return {
    upstream_bin,
    upstream_cli: top.path('upstream_cli', path.join(path.dirname(upstream_bin), 'kanidm')),
    upstream_config,
    // Default: the CA first boot made beside server.toml (upstream/setup/server-toml.ts layout).
    upstream_ca: top.path('upstream_ca', path.join(path.dirname(upstream_config), 'tls', 'ca.pem')),
    upstream_db_path: top.path('upstream_db_path', '/var/lib/upstream/kanidm.db'),
    compatibility_file: top.path('compatibility_file', '/opt/kiwi/compatibility.toml'),
  };
}

/** [tokens]: lifetimes in seconds. */
function readTokens(sec: Section): TokenTtls {
  return Object.freeze({
    access_token_ttl: sec.positiveInt('access_token_ttl', TOKEN_DEFAULTS.access_token_ttl),
    refresh_token_ttl: sec.positiveInt('refresh_token_ttl', TOKEN_DEFAULTS.refresh_token_ttl),
    auth_code_ttl: sec.positiveInt('auth_code_ttl', TOKEN_DEFAULTS.auth_code_ttl),
    id_token_ttl: sec.positiveInt('id_token_ttl', TOKEN_DEFAULTS.id_token_ttl),
    session_ttl: sec.positiveInt('session_ttl', TOKEN_DEFAULTS.session_ttl),
    device_code_ttl: sec.positiveInt('device_code_ttl', TOKEN_DEFAULTS.device_code_ttl),
  });
}

/** [upstream_oauth2]: Kiwi ID's own client registration at Kanidm. */
function readUpstreamOauth2(sec: Section, dataDir: string): KiwiConfig['upstream_oauth2'] {
  return Object.freeze({
    client_id: sec.string('client_id', 'kiwi-id'),
    client_secret_file: sec.path('client_secret_file', path.join(dataDir, 'upstream-oauth2.secret')),
    recheck_interval_ms: sec.durationMs('recheck_interval', '10s', { allowZero: true }),
  });
}

/** The files a start needs, checked now rather than at the first request; secrets must be owner-only. */
function checkConfigFiles(top: Section, config: KiwiConfig): void {
  checkFile(top, 'tls_cert', config.tls_cert, false);
  checkFile(top, 'tls_key', config.tls_key, true);
  checkFile(top, 'jwt_private_key', config.jwt_private_key, true);
  checkFile(top, 'jwt_public_key', config.jwt_public_key, false);
  // The CA is the only trust root for the upstream; fail at startup, not at first request.
  checkFile(top, 'upstream_ca', config.upstream_ca, false);
  federationKeys(top.file, () => checkFederationFiles(config.federation, config.config_file));
}

/**
 * Validates a parsed config.toml and fills every default. Unknown keys fail
 * first, so a typo is named before any value it would have changed.
 */
export function validateConfig(raw: unknown, file: string, opts: ValidateOptions = {}): KiwiConfig {
  if (!isTable(raw)) throw new ConfigError(file, undefined, 'config must be a TOML table');
  const top = new Section(file, raw, '', path.dirname(path.resolve(file)));
  top.rejectUnknown(TOP_KEYS);
  const tokensSec = top.knownSection('tokens', Object.keys(TOKEN_DEFAULTS));
  const clientsSec = top.knownSection('clients', ['file', ...CLIENTS_REGISTRATION_KEYS]);
  const upstreamOauth2Sec = top.knownSection('upstream_oauth2', ['client_id', 'client_secret_file', 'recheck_interval']);
  const issuerSettings = parseIssuerSettings(raw, file, opts.checkFiles ?? true);
  const addresses = readAddresses(top);
  const data_dir = top.path('data_dir', '/var/lib/kiwi');

  const config: KiwiConfig = {
    config_file: path.resolve(file),
    ...addresses,
    tls_cert: top.path('tls_cert'),
    tls_key: top.path('tls_key'),
    ...readUpstreamFiles(top),
    ...readHealthChecks(top),
    jwt_private_key: top.path('jwt_private_key', '/etc/kiwi/jwt-private.pem'),
    jwt_public_key: top.path('jwt_public_key', '/etc/kiwi/jwt-public.pem'),
    log_level: readLogLevel(top),
    log_dir: top.optionalPath('log_dir'),
    data_dir,
    drain_timeout_ms: top.durationMs('drain_timeout', '10s'),
    workers: top.between('workers', 1, 1, 64),
    heap_growing_percent: top.between('heap_growing_percent', DEFAULT_HEAP_GROWING_PERCENT, 0, 300),
    upstream_timeout_ms: top.durationMs('upstream_timeout', '30s'),
    max_body_size: top.byteSize('max_body_size', '1MiB'),
    max_header_size: top.byteSize('max_header_size', '16KiB'),
    tokens: readTokens(tokensSec),
    auth_rate_limit: top.count('auth_rate_limit', 20),
    clients: Object.freeze({ file: clientsSec.path('file', path.join(data_dir, 'clients.toml')), ...issuerSettings.registration }),
    backchannel_logout: issuerSettings.backchannel_logout,
    upstream_oauth2: readUpstreamOauth2(upstreamOauth2Sec, data_dir),
    federation: federationKeys(file, () => parseFederation(raw.federation, { baseDir: top.baseDir, dataDir: data_dir })),
    cluster: parseClusterConfig(raw, addresses.listen_host, (key, problem) => new ConfigError(file, key, problem)),
  };
  if (opts.checkFiles ?? true) checkConfigFiles(top, config);
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
