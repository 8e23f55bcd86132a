// The clients file (config `[clients].file`): the registered relying parties, one [[client]]
// table per service, read, written atomically (0600) and changed under a lock by the CLI.
// Its records are validated by validate-client.ts; secrets are only ever stored as hashes.

import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify, TomlError } from 'smol-toml';
import { ownerForRootWrite, replaceFileAtomic } from '../files/atomic-file.js';
import { tomlType, type Table } from '../config/toml-types.js';
import { ClientError, ClientsFileError } from './client-errors.js';
import type { ClientRecord } from './client-record.js';
import { CLIENT_KEYS, validateClients } from './validate-client.js';

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
