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
import type { KiwiConfig } from '../config/config.js';
import { generateSigningKeyPair, writeNewFilesAtomic } from '../crypto/keys.js';
import { loadOrCreateCookieKeys } from '../oidc/cookie-keys.js';
import { generateDevCertificate } from '../crypto/tls-certs.js';
import { certGenerate, recoverAccount, writeServerToml } from '../upstream/files.js';

export type StepResult = 'created' | 'kept';
export type Report = Array<{ step: string; result: StepResult; path: string }>;

export class UpstreamNotInstalled extends Error {}

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
  const host = url.hostname.replace(/^\[|\]$/g, '');
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

/**
 * Kanidm-side first-boot material: server.toml (domain/origin = the public
 * issuer URL, so WebAuthn works through the proxy), its loopback TLS, and the
 * idm_admin password recovered into a root-only file next to config.toml.
 */
export async function initUpstream(cfg: KiwiConfig): Promise<Report> {
  if (!fs.existsSync(cfg.upstream_bin)) {
    throw new UpstreamNotInstalled(
      `upstream not installed: ${cfg.upstream_bin} (upstream_bin in ${cfg.config_file}); install it with scripts/install-upstream`,
    );
  }
  const report: Report = [];
  const root = path.dirname(cfg.upstream_config);
  const wrote = writeServerToml({
    configPath: cfg.upstream_config,
    bind: new URL(cfg.upstream_addr).host,
    dbPath: cfg.upstream_db_path,
    tlsCa: path.join(root, 'tls', 'ca.pem'),
    tlsCert: path.join(root, 'tls', 'cert.pem'),
    tlsKey: path.join(root, 'tls', 'key.pem'),
  });
  step(report, 'kanidm server.toml', cfg.upstream_config, wrote);
  step(report, 'kanidm TLS certificate', path.join(root, 'tls'), await certGenerate(cfg.upstream_bin, cfg.upstream_config));
  const pwFile = path.join(path.dirname(cfg.config_file), 'idm_admin.password');
  const recover = !fs.existsSync(pwFile);
  if (recover) {
    const password = await recoverAccount(cfg.upstream_bin, cfg.upstream_config, 'idm_admin');
    writeNewFilesAtomic([{ path: pwFile, data: password + '\n', mode: 0o600 }]);
  }
  step(report, 'idm_admin password', pwFile, recover);
  return report;
}
