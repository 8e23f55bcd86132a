// Everything Kanidm needs on disk before it can run: its server.toml, the
// loopback TLS material (made by `kanidmd cert-generate`) and the recovered
// admin password. Used by `kiwi-id dev`, first boot and the tests.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'smol-toml';

const run = promisify(execFile);

export interface UpstreamLayout {
  configPath: string; // server.toml
  bind: string; // "127.0.0.1:8443"
  dbPath: string;
  tlsCa: string;
  tlsCert: string;
  tlsKey: string;
  logLevel?: string;
}

/** server.toml in the format of the pinned kanidmd (see upstream-pins/src/config.rs). */
export function renderServerToml(l: UpstreamLayout): string {
  const q = (s: string) => JSON.stringify(s); // TOML basic strings share JSON escaping
  return [
    '# Kanidm server config, written by kiwi-id. Loopback only: the wrapper is the',
    '# only thing on the network.',
    `bindaddress = ${q(l.bind)}`,
    `db_path = ${q(l.dbPath)}`,
    `tls_ca = ${q(l.tlsCa)}`,
    `tls_cert = ${q(l.tlsCert)}`,
    `tls_key = ${q(l.tlsKey)}`,
    `log_level = ${q(l.logLevel ?? 'default')}`,
    '',
  ].join('\n');
}

/** Writes server.toml unless it exists (never overwrites an operator's file). */
export function writeServerToml(l: UpstreamLayout): boolean {
  if (existsSync(l.configPath)) return false;
  mkdirSync(dirname(l.configPath), { recursive: true });
  mkdirSync(dirname(l.dbPath), { recursive: true });
  writeFileSync(l.configPath, renderServerToml(l), { mode: 0o640 });
  return true;
}

/** Reads the parts of an existing server.toml that the wrapper relies on. */
export function readServerToml(configPath: string): { bind: string; tlsCa: string; dbPath: string } {
  const doc = parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  const rel = (p: unknown, key: string) => {
    if (typeof p !== 'string' || !p) throw new Error(`${configPath}: ${key} is missing`);
    return isAbsolute(p) ? p : join(dirname(configPath), p);
  };
  return {
    bind: typeof doc.bindaddress === 'string' ? doc.bindaddress : '127.0.0.1:8443',
    tlsCa: rel(doc.tls_ca, 'tls_ca'),
    dbPath: rel(doc.db_path, 'db_path'),
  };
}

export async function certGenerate(kanidmd: string, configPath: string): Promise<boolean> {
  const { stdout } = await run(kanidmd, ['cert-generate', '-c', configPath]);
  return JSON.parse(stdout).created === true;
}

/** Sets a fresh random password on `name` (offline: the server must be stopped). */
export async function recoverAccount(kanidmd: string, configPath: string, name: string): Promise<string> {
  const { stdout } = await run(kanidmd, ['recover-account', name, '-c', configPath], {
    maxBuffer: 1 << 20,
  });
  const line = stdout.trim().split('\n').pop() ?? '';
  const out = JSON.parse(line);
  if (typeof out.password !== 'string') throw new Error(`recover-account ${name}: no password in output`);
  return out.password;
}
