// Kanidm's own config file (server.toml, format version 2 of Kanidm 1.11).
// Kiwi ID writes it once at first boot and never overwrites it: an operator
// may tune it afterwards. The wrapper reads back only what it relies on.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'smol-toml';

export interface ServerTomlLayout {
  configPath: string;
  /** "127.0.0.1:8443": loopback only, the wrapper is the only thing on the network. */
  bind: string;
  dbPath: string;
  tlsChain: string;
  tlsKey: string;
  /** The public issuer's host: cookies and the WebAuthn RP id are bound to it. */
  domain: string;
  /** The public URL the browser sees (the issuer), served by the wrapper. */
  origin: string;
  adminSocket: string;
  /** Directory of declarative provisioning files (HJSON), if any. */
  migrationPath?: string;
  logLevel?: 'info' | 'debug' | 'trace';
}

const q = (s: string) => JSON.stringify(s); // TOML basic strings share JSON escaping

/** server.toml for the pinned Kanidm (server/core/src/config.rs, ServerConfigV2). */
export function renderServerToml(l: ServerTomlLayout): string {
  return [
    '# Kanidm server config, written once by `kiwi-id init` (never overwritten).',
    '# Kanidm listens on loopback only; the Kiwi ID wrapper is its public face.',
    'version = "2"',
    `bindaddress = ${q(l.bind)}`,
    `db_path = ${q(l.dbPath)}`,
    `tls_chain = ${q(l.tlsChain)}`,
    `tls_key = ${q(l.tlsKey)}`,
    '# The browser reaches Kanidm through the wrapper at this origin, so cookies,',
    '# CSRF checks and WebAuthn (RP id = domain) are bound to the public name.',
    `domain = ${q(l.domain)}`,
    `origin = ${q(l.origin)}`,
    `adminbindpath = ${q(l.adminSocket)}`,
    ...(l.migrationPath ? [`migration_path = ${q(l.migrationPath)}`] : []),
    `log_level = ${q(l.logLevel ?? 'info')}`,
    '',
    '# The wrapper on 127.0.0.1 states the real client address in X-Forwarded-For',
    '# (and drops any a client sent); nobody else can reach this listener.',
    '[http_client_address_info]',
    'x-forward-for = ["127.0.0.1"]',
    '',
  ].join('\n');
}

/** Writes server.toml unless it exists (never overwrites an operator's file). */
export function writeServerToml(l: ServerTomlLayout): boolean {
  if (existsSync(l.configPath)) return false;
  mkdirSync(dirname(l.configPath), { recursive: true });
  mkdirSync(dirname(l.dbPath), { recursive: true, mode: 0o750 });
  writeFileSync(l.configPath, renderServerToml(l), { mode: 0o640 });
  return true;
}

export interface ServerTomlFacts {
  bind: string;
  dbPath: string;
  tlsChain: string;
  tlsKey: string;
  adminSocket: string | undefined;
}

/** Reads the parts of an existing server.toml that the wrapper relies on. */
export function readServerToml(configPath: string): ServerTomlFacts {
  const doc = parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  const rel = (p: unknown, key: string) => {
    if (typeof p !== 'string' || !p) throw new Error(`${configPath}: ${key} is missing`);
    return isAbsolute(p) ? p : join(dirname(configPath), p);
  };
  const bind = Array.isArray(doc.bindaddress) ? doc.bindaddress[0] : doc.bindaddress;
  return {
    bind: typeof bind === 'string' ? bind : '127.0.0.1:8443',
    dbPath: rel(doc.db_path, 'db_path'),
    tlsChain: rel(doc.tls_chain, 'tls_chain'),
    tlsKey: rel(doc.tls_key, 'tls_key'),
    adminSocket: typeof doc.adminbindpath === 'string' ? doc.adminbindpath : undefined,
  };
}
