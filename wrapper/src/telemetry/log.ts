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

/** Where a logger's lines go: the sync fd destinations it opened, or the caller's stream. */
const SINKS = Symbol('kiwi.logSinks');
/** The logger createLogger made, for childLogger. */
const ROOT = Symbol('kiwi.rootLogger');
type Sink = DestinationStream & { fd?: number };

/**
 * pino's isoTime, formatted once per millisecond: under load Kanidm's relayed
 * output alone is several lines per request (~0.9 KB per `/ui/login`), and
 * `toISOString` per line was 6 % of the relay's CPU in a profile (1–3 of
 * 44 µs per request measured). Same text as isoTime.
 */
let isoAt = -1;
let isoText = '';
function isoTimeCached(): string {
  const now = Date.now();
  if (now !== isoAt) {
    isoAt = now;
    isoText = `,"time":"${new Date(now).toISOString()}"`;
  }
  return isoText;
}

function loggerOptions(level: LogLevel) {
  return {
    level,
    timestamp: isoTimeCached,
    formatters: { level: (label: string) => ({ level: label }) },
  };
}

export function createLogger(opts: LoggerOptions): Logger {
  // Synchronous writes (pino's default) so nothing is lost when the process dies.
  const sinks: Sink[] = [opts.destination ?? pino.destination({ dest: 1, sync: true })];
  if (opts.logDir) {
    fs.mkdirSync(opts.logDir, { recursive: true, mode: 0o750 });
    // Opened here (not lazily) so a bad log_dir fails at startup; 0640 keeps other users out.
    const fd = fs.openSync(path.join(opts.logDir, 'kiwi-id.log'), 'a', 0o640);
    sinks.push(pino.destination({ dest: fd, sync: true }));
  }
  const stream =
    sinks.length === 1 ? sinks[0]! : pino.multistream(sinks.map((s) => ({ level: opts.level, stream: s })));
  const logger = pino({ ...loggerOptions(opts.level), redact: { paths: REDACT_PATHS, censor } }, stream);
  Object.defineProperty(logger, SINKS, { value: sinks });
  Object.defineProperty(logger, ROOT, { value: logger });
  return opts.component ? childLogger(logger, opts.component) : logger;
}

/**
 * A logger for one part of the wrapper: the parent's bindings with
 * `component` replaced, not added again (pino would write both keys, and a
 * JSON line should not name a field twice). Children come from the root
 * logger, which every descendant reaches through its prototype chain.
 */
export function childLogger(parent: Logger, component: string): Logger {
  const root = (parent as unknown as Record<symbol, Logger | undefined>)[ROOT] ?? parent;
  return root.child({ ...parent.bindings(), component });
}

// A batch stays below PIPE_BUF (4096 on Linux), so a write of it to a pipe
// is atomic and lines of several processes sharing stdout never interleave.
const BATCH_BYTES = 3584;

/**
 * Info lines on the hot paths (one per proxied request, and Kanidm's own
 * output, several lines per request), at a cost that fits there. The lines
 * have the shape and destinations of the parent logger's, with two
 * differences, both for speed (bench/proxy.ts, README):
 * - no redaction pass: callers pass only fields they have made safe
 *   themselves (redactUrl, redactLine); pino's redaction cost more than the
 *   rest of the line;
 * - lines to the log's own fds (stdout, the log_dir file) are gathered for
 *   the rest of the event-loop turn and written together (one write per
 *   turn, or per ~3.5 KiB), instead of one synchronous write each. They are
 *   flushed at exit; a kill -9 can lose the lines of the turn it lands in
 *   (warnings and errors go through the parent logger, one write each).
 *   A caller-supplied destination stream gets each line at once.
 */
export class BatchedLog {
  private readonly logger: Logger;
  private readonly fdSinks: Sink[];
  private readonly streamSinks: Sink[];
  private batch = '';
  private batchBytes = 0;
  private scheduled: NodeJS.Immediate | null = null;
  private readonly flushOnExit = () => this.flush();

  constructor(parent: Logger) {
    const sinks: Sink[] = (parent as unknown as Record<symbol, Sink[]>)[SINKS] ?? [];
    this.fdSinks = sinks.filter((s) => typeof s.fd === 'number');
    this.streamSinks = sinks.filter((s) => typeof s.fd !== 'number');
    const level = (parent.isLevelEnabled('info') ? 'info' : 'silent') as LogLevel;
    this.logger = pino(loggerOptions(level), { write: (line: string) => this.write(line) }).child(parent.bindings());
    if (this.fdSinks.length > 0) process.on('exit', this.flushOnExit);
  }

  /** `fields` must hold nothing secret: they are written as given. */
  info(fields: object, msg: string): void {
    this.logger.info(fields, msg);
  }

  /** Writes out what is gathered. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    if (this.batchBytes === 0) return;
    const chunk = this.batch;
    this.batch = '';
    this.batchBytes = 0;
    for (const s of this.fdSinks) s.write(chunk);
  }

  /** Flushes and stops the exit hook. */
  close(): void {
    this.flush();
    process.off('exit', this.flushOnExit);
  }

  private write(line: string): void {
    for (const s of this.streamSinks) s.write(line);
    if (this.fdSinks.length === 0) return;
    const bytes = Buffer.byteLength(line);
    if (this.batchBytes + bytes > BATCH_BYTES) this.flush();
    this.batch += line;
    this.batchBytes += bytes;
    if (this.batchBytes >= BATCH_BYTES) this.flush();
    else this.scheduled ??= setImmediate(() => this.flush());
  }
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

// Each rule with a cheap necessary condition: a line without the character
// (or word) a rule needs skips its regex. Kanidm writes several lines per
// request, so this is on the hot path.
const LINE_RULES: Array<[(line: string) => boolean, RegExp, (match: string, ...groups: string[]) => string]> = [
  // "password":"x" (JSON) and password: "x" (Rust Debug output). These two
  // rules mask only values whose name is a secret's, so a line that has no
  // such name anywhere cannot change: most of Kanidm's lines skip both.
  [
    (l) => l.includes('"') && SECRET_NAME.test(l),
    /(?<![\w-])("?[\w-]+"?)(\s*:\s*)"(?:[^"\\]|\\.)*"/g,
    maskIfSecret((name, sep) => `${name}${sep}"${CENSOR}"`),
  ],
  // password=x, session_id = "x y"
  [
    (l) => l.includes('=') && SECRET_NAME.test(l),
    /(?<![\w-])([\w-]+)(\s*=\s*)(?:"[^"]*"|'[^']*'|[^\s&,;]+)/g,
    maskIfSecret((name, sep) => `${name}${sep}${CENSOR}`),
  ],
  // Cookie / Set-Cookie header values: everything to end of line or closing quote
  [(l) => /cookie/i.test(l), /\b((?:set-)?cookie\s*[:=]\s*)[^\r\n"]+/gi, (_m, prefix) => `${prefix}${CENSOR}`],
  [(l) => /bearer|basic/i.test(l), /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, (_m, scheme) => `${scheme} ${CENSOR}`],
  // JWT-looking: three base64url segments of 10+ chars
  [(l) => l.includes('.'), /(?<![\w-])[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}/g, () => CENSOR],
];

/** Scrubs credentials from free text such as upstream stdout/stderr lines. */
export function redactLine(text: string): string {
  let out = text;
  for (const [needed, re, replacement] of LINE_RULES) if (needed(out)) out = out.replace(re, replacement);
  return out;
}
