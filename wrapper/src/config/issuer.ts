// Config keys of the issuer's optional OAuth2 surface:
//   [clients] registration_token | registration_token_file — dynamic client
//     registration (RFC 7591/7592); absent = /oauth2/register is 404, as the
//     reference IdP's `registration_token`.
//   [backchannel_logout] ca_file, timeout, max_attempts — how logout tokens
//     reach services (OIDC Back-Channel Logout 1.0).
// config.ts calls `parseIssuerSettings` once; errors are ConfigErrors naming
// the file and the key like every other config problem.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config-error.js';
import { readSecretFile } from '../files/secret-file.js';
import { parseDuration } from './duration.js';
import { isTable, tomlType, type Table } from './toml-types.js';

/** Keys this module adds to `[clients]` (beside `file`). */
export const CLIENTS_REGISTRATION_KEYS = ['registration_token', 'registration_token_file'] as const;
const BACKCHANNEL_KEYS = ['ca_file', 'timeout', 'max_attempts'] as const;

/** A guessable token would open registration to anyone: ask for a generated one. */
export const MIN_REGISTRATION_TOKEN_LENGTH = 32;

export interface RegistrationSettings {
  /** The token inline in config.toml (the config file must then not be world-readable). */
  readonly registration_token?: string;
  /** Or a 0600 file holding it (read at start-up). */
  readonly registration_token_file?: string;
}

export interface BackchannelLogoutSettings {
  /** PEM CA(s) trusted for services' back-channel logout URIs; unset = the system roots. */
  readonly ca_file: string | undefined;
  /** Bound on one delivery attempt (connect + response). */
  readonly timeout_ms: number;
  /** Attempts per logout token before it is given up (and logged). */
  readonly max_attempts: number;
}

export const BACKCHANNEL_DEFAULTS = { timeout: '5s', max_attempts: 6 } as const;

export interface IssuerSettings {
  readonly registration: RegistrationSettings;
  readonly backchannel_logout: BackchannelLogoutSettings;
}

function section(raw: Table, file: string, key: string): Table {
  const v = raw[key] ?? {};
  if (!isTable(v)) throw new ConfigError(file, key, `expected a table, got ${tomlType(v)}`);
  return v;
}

function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_REGISTRATION_TOKEN_LENGTH) {
    return `must be at least ${MIN_REGISTRATION_TOKEN_LENGTH} characters (generate one: openssl rand -base64 32)`;
  }
  if (/\s/.test(token)) return 'must not contain whitespace';
  return undefined;
}

function registration(clients: Table, file: string, baseDir: string, checkFiles: boolean): RegistrationSettings {
  const err = (key: string, problem: string) => new ConfigError(file, `[clients].${key}`, problem);
  const inline = clients.registration_token;
  const fileKey = clients.registration_token_file;
  if (inline !== undefined && fileKey !== undefined) {
    throw err('registration_token_file', 'set either registration_token or registration_token_file, not both');
  }
  if (inline !== undefined) {
    if (typeof inline !== 'string') throw err('registration_token', `expected a string, got ${tomlType(inline)}`);
    const problem = tokenProblem(inline);
    if (problem) throw err('registration_token', problem);
    if (checkFiles) {
      // The token opens client registration: other local users must not read it.
      const mode = fs.statSync(file).mode & 0o777;
      if (mode & 0o007) {
        throw err('registration_token', `${file} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); run chmod o-rwx, or use registration_token_file`);
      }
    }
    return { registration_token: inline };
  }
  if (fileKey !== undefined) {
    if (typeof fileKey !== 'string' || fileKey === '') throw err('registration_token_file', `expected a path, got ${tomlType(fileKey)}`);
    const tokenFile = path.resolve(baseDir, fileKey);
    if (checkFiles) {
      try {
        const problem = tokenProblem(readSecretFile(tokenFile).trim());
        if (problem) throw new Error(`${tokenFile}: token ${problem}`);
      } catch (e) {
        throw err('registration_token_file', (e as Error).message);
      }
    }
    return { registration_token_file: tokenFile };
  }
  return {};
}

function backchannel(raw: Table, file: string, baseDir: string, checkFiles: boolean): BackchannelLogoutSettings {
  const t = section(raw, file, 'backchannel_logout');
  const err = (key: string, problem: string) => new ConfigError(file, `[backchannel_logout].${key}`, problem);
  for (const key of Object.keys(t)) if (!(BACKCHANNEL_KEYS as readonly string[]).includes(key)) throw err(key, 'unknown key');

  let ca_file: string | undefined;
  if (t.ca_file !== undefined) {
    if (typeof t.ca_file !== 'string' || t.ca_file === '') throw err('ca_file', `expected a path, got ${tomlType(t.ca_file)}`);
    ca_file = path.resolve(baseDir, t.ca_file);
    if (checkFiles && !fs.existsSync(ca_file)) throw err('ca_file', `${ca_file} does not exist`);
  }

  const timeout = t.timeout ?? BACKCHANNEL_DEFAULTS.timeout;
  if (typeof timeout !== 'string') throw err('timeout', `expected a duration string like "5s", got ${tomlType(timeout)}`);
  let timeout_ms: number;
  try {
    timeout_ms = parseDuration(timeout);
  } catch (e) {
    throw err('timeout', (e as Error).message);
  }
  if (timeout_ms <= 0) throw err('timeout', 'must be greater than 0');

  const attempts = t.max_attempts ?? BACKCHANNEL_DEFAULTS.max_attempts;
  if (typeof attempts !== 'number' || !Number.isSafeInteger(attempts) || attempts < 1 || attempts > 20) {
    throw err('max_attempts', `expected an integer from 1 to 20, got ${tomlType(attempts)} ${String(attempts)}`);
  }
  return Object.freeze({ ca_file, timeout_ms, max_attempts: attempts });
}

/** `raw` is the whole parsed config.toml; `[clients]` other keys are config.ts's. */
export function parseIssuerSettings(raw: Table, file: string, checkFiles: boolean): IssuerSettings {
  const baseDir = path.dirname(path.resolve(file));
  return {
    registration: Object.freeze(registration(section(raw, file, 'clients'), file, baseDir, checkFiles)),
    backchannel_logout: backchannel(raw, file, baseDir, checkFiles),
  };
}

/** The registration token in force, or undefined when registration is off. */
export function registrationToken(s: RegistrationSettings): string | undefined {
  if (s.registration_token !== undefined) return s.registration_token;
  if (s.registration_token_file === undefined) return undefined;
  const token = readSecretFile(s.registration_token_file).trim();
  const problem = tokenProblem(token);
  if (problem) throw new Error(`${s.registration_token_file}: token ${problem}`);
  return token;
}
