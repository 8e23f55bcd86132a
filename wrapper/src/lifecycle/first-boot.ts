// `kiwi-id init`: everything a fresh machine or container needs before
// `kiwi-id run`, created once and kept. Safe to run on every boot: existing
// keys, certificates and configs are never overwritten.
//
// Wrapper-side material comes first (it needs nothing else); Kanidm-side
// steps need the pinned upstream binaries and stop with a clear message when
// they are not installed.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { adminPasswordFile, type KiwiConfig } from '../config/config.js';
import { urlHost } from '../config/url-host.js';
import { ensureParentDir, generateSigningKeyPair, writeNewFilesAtomic } from '../crypto/keys.js';
import { verifyPinned } from '../upstream/pin.js';
import { loadOrCreateCookieKeys } from '../oidc/cookie-keys.js';
import { generateDevCertificate } from '../crypto/tls-certs.js';
import { writeServerToml } from '../upstream/setup/server-toml.js';
import { KanidmCli } from '../upstream/setup/kanidm-cli.js';
import { recoverAccount, reindexDatabase } from '../upstream/setup/kanidmd-tasks.js';
import { withKanidm } from '../upstream/setup/one-off.js';
import { DEFAULT_SCOPE_GROUP, ensureKiwiOAuth2Client, LOGIN_SCOPES } from '../upstream/setup/provision.js';
import { undiciAgent, upstreamTls } from '../upstream/tls.js';
import { LOGIN_CALLBACK } from '../oidc/paths.js';
import { ensureReaderAccount, readerAccountNeeded } from '../federation/reader-account.js';

export type StepResult = 'created' | 'kept';
export type Report = Array<{ step: string; result: StepResult; path: string }>;

export class UpstreamNotInstalled extends Error {
  constructor(message: string, readonly report: Report = []) {
    super(message);
  }
}

/** A development config in `dir`: wrapper on 127.0.0.1:8443 as https://localhost:8443, Kanidm on 127.0.0.1:18443. */
export function devConfigToml(dir: string, compatibilityFile: string): string {
  return [
    '# Kiwi ID development config, written by `kiwi-id init --dev`.',
    'listen_addr = "127.0.0.1:8443"',
    '# A hostname, not an IP: WebAuthn needs one, and Kanidm\'s origin is this URL.',
    'issuer = "https://localhost:8443"',
    'tls_cert = "tls/wrapper.crt"',
    'tls_key = "private/wrapper.key"',
    'upstream_addr = "https://127.0.0.1:18443"',
    `upstream_bin = ${JSON.stringify(path.join(dir, 'upstream/bin/kanidmd'))}`,
    'upstream_config = "upstream/etc/server.toml"',
    'upstream_db_path = "upstream/data/kanidm.db"',
    `compatibility_file = ${JSON.stringify(compatibilityFile)}`,
    'jwt_private_key = "private/jwt-private.pem"',
    'jwt_public_key = "jwt-public.pem"',
    'data_dir = "data"',
    'log_dir = "log"',
    'log_level = "info"',
    '',
  ].join('\n');
}

function step(report: Report, name: string, file: string, created: boolean): void {
  report.push({ step: name, result: created ? 'created' : 'kept', path: file });
}

/** Wrapper-side first-boot material: signing keys, listener TLS, cookie keys, directories. */
export async function initWrapper(cfg: KiwiConfig): Promise<Report> {
  const report: Report = [];
  const keys = await generateSigningKeyPair(cfg.jwt_private_key, cfg.jwt_public_key, 'ES256');
  step(report, 'jwt signing key pair', cfg.jwt_private_key, keys.created);

  const url = new URL(cfg.issuer);
  const host = urlHost(url);
  const isIp = net.isIP(host) !== 0;
  const ips = new Set(['127.0.0.1']);
  if (isIp) ips.add(host);
  // Services may dial the listen address directly (e.g. 10.10.20.10), so it goes in the SANs.
  if (net.isIP(cfg.listen_host) !== 0 && cfg.listen_host !== '0.0.0.0' && cfg.listen_host !== '::') ips.add(cfg.listen_host);
  const tls = generateDevCertificate({
    certPath: cfg.tls_cert,
    keyPath: cfg.tls_key,
    caPath: path.join(path.dirname(cfg.tls_cert), 'ca.crt'),
    hostnames: isIp ? ['localhost'] : [...new Set([host, 'localhost'])],
    ips: [...ips],
    days: 825,
  });
  step(report, 'wrapper TLS certificate', cfg.tls_cert, tls.created);

  for (const dir of [cfg.data_dir, cfg.log_dir].filter((d): d is string => !!d)) {
    const existed = fs.existsSync(dir);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    step(report, 'directory', dir, !existed);
  }
  const cookieFile = path.join(cfg.data_dir, 'cookie-keys');
  const hadCookies = fs.existsSync(cookieFile);
  loadOrCreateCookieKeys(cookieFile);
  step(report, 'issuer cookie keys', cookieFile, !hadCookies);
  return report;
}

/** Where Kanidm's loopback TLS material lives: beside server.toml. */
export function upstreamTlsPaths(cfg: KiwiConfig) {
  const dir = path.join(path.dirname(cfg.upstream_config), 'tls');
  return { ca: cfg.upstream_ca, chain: path.join(dir, 'chain.pem'), key: path.join(dir, 'key.pem') };
}

/** Kanidm's `domain`: the public issuer host. WebAuthn needs a name, not an address. */
function kanidmDomain(cfg: KiwiConfig): string {
  const host = urlHost(cfg.issuer);
  if (net.isIP(host) !== 0) {
    throw new Error(`issuer ${cfg.issuer} (${cfg.config_file}) must use a hostname: Kanidm's domain and WebAuthn passkeys are bound to it`);
  }
  return host;
}

function writeServerConfig(cfg: KiwiConfig, report: Report): void {
  const tls = upstreamTlsPaths(cfg);
  const wrote = writeServerToml({
    configPath: cfg.upstream_config,
    bind: new URL(cfg.upstream_addr).host,
    dbPath: cfg.upstream_db_path,
    tlsChain: tls.chain,
    tlsKey: tls.key,
    domain: kanidmDomain(cfg),
    origin: cfg.issuer,
    adminSocket: path.join(path.dirname(cfg.upstream_db_path), 'kanidmd.sock'),
  });
  step(report, 'kanidm server.toml', cfg.upstream_config, wrote);
}

/**
 * Kanidm's loopback certificate, issued by a CA of our own (its key discarded
 * after signing) for the address the wrapper dials and the public name:
 * `kanidmd cert-generate` names only the domain and its CA lives 30 days.
 */
function writeServerTls(cfg: KiwiConfig, report: Report): void {
  const tls = upstreamTlsPaths(cfg);
  const host = urlHost(cfg.upstream_addr);
  const isIp = net.isIP(host) !== 0;
  const made = generateDevCertificate({
    certPath: tls.chain,
    keyPath: tls.key,
    caPath: tls.ca,
    hostnames: [...new Set([...(isIp ? [] : [host]), kanidmDomain(cfg), 'localhost'])],
    ips: [...new Set([...(isIp ? [host] : []), '127.0.0.1'])],
    days: 3650,
  });
  if (made.created) {
    // Kanidm warns unless its TLS files are read-only to the uid running it.
    fs.chmodSync(tls.key, 0o400);
    fs.chmodSync(tls.chain, 0o444);
  }
  step(report, 'kanidm TLS certificate', tls.chain, made.created);
}

/** What needs a running Kanidm: admin passwords and Kiwi ID's OAuth2 client. */
function onlineStepsNeeded(cfg: KiwiConfig): boolean {
  return [adminPasswordFile(cfg, 'idm_admin'), adminPasswordFile(cfg, 'admin'), cfg.upstream_oauth2.client_secret_file]
    .some((f) => !fs.existsSync(f)) || readerAccountNeeded(cfg);
}

async function recoverAdmin(cfg: KiwiConfig, account: 'idm_admin' | 'admin', report: Report): Promise<string> {
  const file = adminPasswordFile(cfg, account);
  const recover = !fs.existsSync(file);
  if (recover) {
    const password = await recoverAccount(cfg.upstream_bin, cfg.upstream_config, account);
    writeNewFilesAtomic([{ path: file, data: password + '\n', mode: 0o600 }]);
  }
  step(report, `${account} password`, file, recover);
  return fs.readFileSync(file, 'utf8').trim();
}

async function registerKiwiClient(cfg: KiwiConfig, idmAdminPassword: string, report: Report): Promise<void> {
  const file = cfg.upstream_oauth2.client_secret_file;
  if (fs.existsSync(file)) return step(report, 'kanidm oauth2 client', file, false);
  const cli = new KanidmCli({ cli: cfg.upstream_cli, url: cfg.upstream_addr, caPath: cfg.upstream_ca });
  try {
    await cli.login('idm_admin', idmAdminPassword);
    const secret = await ensureKiwiOAuth2Client(cli, {
      clientId: cfg.upstream_oauth2.client_id,
      displayName: 'Kiwi ID',
      origin: cfg.issuer,
      redirectUri: cfg.issuer + LOGIN_CALLBACK,
      scopeGroup: DEFAULT_SCOPE_GROUP,
      scopes: LOGIN_SCOPES,
    });
    ensureParentDir(file, true);
    writeNewFilesAtomic([{ path: file, data: secret + '\n', mode: 0o600 }]);
  } finally {
    cli.close();
  }
  step(report, 'kanidm oauth2 client', file, true);
}

/**
 * Kanidm-side first-boot material: server.toml (domain/origin = the public
 * issuer, so cookies and WebAuthn work through the wrapper), its loopback
 * TLS, then, with Kanidm running briefly: the idm_admin and admin passwords
 * into root-only files and Kiwi ID's OAuth2 client registration.
 */
export async function initUpstream(cfg: KiwiConfig): Promise<Report> {
  // Files first: they need no Kanidm binary, and with them the config is
  // complete (its default upstream_ca is the CA made here).
  const report: Report = [];
  writeServerConfig(cfg, report);
  writeServerTls(cfg, report);
  for (const bin of [cfg.upstream_bin, cfg.upstream_cli]) {
    if (!fs.existsSync(bin)) {
      throw new UpstreamNotInstalled(
        `upstream not installed: ${bin} (${bin === cfg.upstream_bin ? 'upstream_bin' : 'upstream_cli'} in ${cfg.config_file}); install it with scripts/install-upstream`,
        report,
      );
    }
  }
  if (!onlineStepsNeeded(cfg)) {
    for (const a of ['idm_admin', 'admin'] as const) step(report, `${a} password`, adminPasswordFile(cfg, a), false);
    step(report, 'kanidm oauth2 client', cfg.upstream_oauth2.client_secret_file, false);
    return report;
  }
  await verifyPinned(cfg.upstream_bin, cfg.compatibility_file);
  const newDatabase = !fs.existsSync(cfg.upstream_db_path);
  const dispatcher = undiciAgent(upstreamTls(cfg.upstream_addr, cfg.upstream_ca));
  try {
    await withKanidm({ bin: cfg.upstream_bin, config: cfg.upstream_config, upstreamAddr: cfg.upstream_addr, dispatcher }, async () => {
      const idmAdmin = await recoverAdmin(cfg, 'idm_admin', report);
      await recoverAdmin(cfg, 'admin', report);
      await registerKiwiClient(cfg, idmAdmin, report);
      // Federation's read-only directory account (only when [federation] configures something).
      if (readerAccountNeeded(cfg)) {
        await ensureReaderAccount(cfg, idmAdmin);
        step(report, 'kanidm federation reader', cfg.federation.kanidm_token_file, true);
      }
    });
  } finally {
    await dispatcher.close();
  }
  if (newDatabase) {
    // Kanidm 1.11.1 leaves a new database partly unindexed (see reindexDatabase).
    await reindexDatabase(cfg.upstream_bin, cfg.upstream_config);
    step(report, 'kanidm database index', cfg.upstream_db_path, true);
  }
  return report;
}
