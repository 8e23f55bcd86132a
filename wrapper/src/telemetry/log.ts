// Structured JSON logging. Logs are shipped off-box, so secrets are scrubbed here, at the
// source: structured fields via pino's redact, URLs and child-process text via helpers.

import fs from 'node:fs';
import path from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level: LogLevel;
  /** When set, logs also go to <logDir>/kiwi-id.log. */
  logDir?: string;
  component?: string;
  /** Replaces stdout; lets tests capture output. */
  destination?: DestinationStream;
}

const CENSOR = '[redacted]';
const SECRET_FIELDS = [
  'password', 'client_secret', 'code', 'refresh_token', 'access_token', 'id_token', 'token',
  'user_code', 'device_code', 'logout_token', 'registration_access_token',
];
const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
];

function censor(value: unknown, fieldPath: string[]): unknown {
  // "*.code" also matches err.code; errno-style codes (ECONNREFUSED, ERR_...) are
  // diagnostics, not OAuth codes, and hiding them would make failures undebuggable.
  const isErrnoCode = typeof value === 'string' && /^E[A-Z0-9_]+$/.test(value);
  return fieldPath[fieldPath.length - 1] === 'code' && isErrnoCode ? value : CENSOR;
}

export function createLogger(opts: LoggerOptions): Logger {
  // Synchronous writes (pino's default) so nothing is lost when the process dies.
  let stream: DestinationStream = opts.destination ?? pino.destination({ dest: 1, sync: true });
  if (opts.logDir) {
    fs.mkdirSync(opts.logDir, { recursive: true, mode: 0o750 });
    // Opened here (not lazily) so a bad log_dir fails at startup; 0640 keeps other users out.
    const fd = fs.openSync(path.join(opts.logDir, 'kiwi-id.log'), 'a', 0o640);
    stream = pino.multistream([
      { level: opts.level, stream },
      { level: opts.level, stream: pino.destination({ dest: fd, sync: true }) },
    ]);
  }
  const logger = pino(
    {
      level: opts.level,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor },
    },
    stream,
  );
  return opts.component ? childLogger(logger, opts.component) : logger;
}

export function childLogger(parent: Logger, component: string): Logger {
  return parent.child({ component });
}

const URL_SECRET_PARAMS = new Set([
  'code', 'access_token', 'refresh_token', 'id_token', 'token', 'client_secret', 'password',
  'code_verifier', 'id_token_hint', 'login_hint_token',
  // Device flow (verification_uri_complete carries the user code), logout and registration tokens.
  'user_code', 'device_code', 'logout_token', 'registration_access_token',
]);

function decodeParamName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' ')).toLowerCase();
  } catch {
    return name.toLowerCase();
  }
}

/**
 * Masks secret query (and fragment, where implicit-flow tokens travel) parameter values.
 * Works on the raw string so the rest of the URL is logged exactly as received.
 */
export function redactUrl(url: string): string {
  const start = url.search(/[?#]/);
  if (start < 0) return url;
  const tail = url.slice(start).replace(/([?&#])([^=&#]+)=([^&#]*)/g, (match, sep, name) =>
    URL_SECRET_PARAMS.has(decodeParamName(name)) ? `${sep}${name}=${CENSOR}` : match,
  );
  return url.slice(0, start) + tail;
}

// Key names whose values are secret in free text. Names are matched whole and checked in a
// callback: a keyword-inside-a-regex form backtracks quadratically on long lines.
const SECRET_NAME = /password|passwd|secret|token|session/i;
const maskIfSecret =
  (masked: (name: string, sep: string) => string) =>
  (match: string, name: string, sep: string): string =>
    SECRET_NAME.test(name) ? masked(name, sep) : match;

const LINE_RULES: Array<[RegExp, (match: string, ...groups: string[]) => string]> = [
  // "password":"x" (JSON) and password: "x" (Rust Debug output)
  [
    /(?<![\w-])("?[\w-]+"?)(\s*:\s*)"(?:[^"\\]|\\.)*"/g,
    maskIfSecret((name, sep) => `${name}${sep}"${CENSOR}"`),
  ],
  // password=x, session_id = "x y"
  [
    /(?<![\w-])([\w-]+)(\s*=\s*)(?:"[^"]*"|'[^']*'|[^\s&,;]+)/g,
    maskIfSecret((name, sep) => `${name}${sep}${CENSOR}`),
  ],
  // Cookie / Set-Cookie header values: everything to end of line or closing quote
  [/\b((?:set-)?cookie\s*[:=]\s*)[^\r\n"]+/gi, (_m, prefix) => `${prefix}${CENSOR}`],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, (_m, scheme) => `${scheme} ${CENSOR}`],
  // JWT-looking: three base64url segments of 10+ chars
  [/(?<![\w-])[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}/g, () => CENSOR],
];

/** Scrubs credentials from free text such as upstream stdout/stderr lines. */
export function redactLine(text: string): string {
  return LINE_RULES.reduce((out, [re, replacement]) => out.replace(re, replacement), text);
}
