// Sign-in attempts per source address, limited in front of Kanidm (the
// reference IdP's `auth_rate_limit`: N attempts per address in any rolling
// five minutes). Kanidm's own per-account soft lock still applies behind it;
// this one stops a single address from trying many accounts or guessing fast.
//
// An attempt is a POST to a Kanidm login step that can carry a credential:
// the first step (its form accepts username, password and TOTP at once), the
// password, TOTP, backup-code and passkey/security-key steps, and the
// authentication API (/v1/auth, one step per request). A full password + TOTP
// sign-in through the UI is three attempts.
//
// The attempts themselves are kept in an AttemptLog (state/sign-in-attempts.ts)
// that all worker processes share, so the budget is per address, not per
// process.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AttemptLog } from '../state/sign-in-attempts.js';
import { sendErrorPage } from './error-page.js';

export const AUTH_WINDOW_MS = 5 * 60_000;
const CREDENTIAL_STEPS = new Set(['/ui/login/begin', '/ui/login/pw', '/ui/login/totp', '/ui/login/backup_code', '/ui/login/passkey', '/ui/login/seckey', '/v1/auth']);
const SWEEP_MS = 60_000;

export interface AuthRateLimitOptions {
  /** Attempts per address per window; 0 turns the limit off. */
  limit: number;
  /** Where attempts are counted (closed with the limiter). */
  attempts: AttemptLog;
  windowMs?: number;
  now?: () => number;
  log?: Logger;
  /** Counted refusals (Prometheus). */
  onLimited?: () => void;
}

export function isCredentialStep(method: string | undefined, pathname: string): boolean {
  return method === 'POST' && CREDENTIAL_STEPS.has(pathname);
}

export class AuthRateLimit {
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly o: AuthRateLimitOptions) {
    this.windowMs = o.windowMs ?? AUTH_WINDOW_MS;
    this.now = o.now ?? Date.now;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  /** Records an attempt; returns 0 if allowed, else the seconds until one is. */
  take(address: string): number {
    if (this.o.limit <= 0) return 0;
    const now = this.now();
    const oldest = this.o.attempts.take(address, now, this.windowMs, this.o.limit);
    return oldest === null ? 0 : Math.max(1, Math.ceil((oldest + this.windowMs - now) / 1000));
  }

  /** Front-door guard: answers 429 (and returns true) when the address is over its limit. */
  guard(req: IncomingMessage, res: ServerResponse, pathname: string, requestId: string): boolean {
    if (!isCredentialStep(req.method, pathname)) return false;
    const address = normalise(req.socket.remoteAddress ?? '');
    const retryAfter = this.take(address);
    if (retryAfter === 0) return false;
    this.o.onLimited?.();
    this.o.log?.warn({ remote: address, path: pathname, retry_after_s: retryAfter }, 'sign-in attempts limited');
    // The unread body must not be parsed as the next request.
    res.setHeader('connection', 'close');
    sendErrorPage(req, res, 429, `Too many sign-in attempts from your address. Please wait ${retryAfter} seconds and try again.`, {
      retryAfterSeconds: retryAfter,
      requestId,
    });
    return true;
  }

  private sweep(): void {
    try {
      this.o.attempts.sweep(this.now() - this.windowMs);
    } catch (err) {
      // A busy or unwritable file is retried at the next sweep; never a crash.
      this.o.log?.warn({ err_message: (err as Error).message }, 'sign-in attempts sweep failed');
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.o.attempts.close();
  }
}

function normalise(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
