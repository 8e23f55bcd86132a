// A service's back-channel logout endpoint, as a real relying party would run
// it: HTTPS, and every logout token verified with jose against the issuer's
// published JWKS (signature, iss, aud = its client_id, typ logout+jwt, the
// logout event, no nonce) before it counts. Tests choose how it answers.
import https from 'node:https';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload } from 'jose';
import { fetch as undiciFetch, type Dispatcher } from 'undici';

export interface Received {
  path: string;
  /** Verified claims, or undefined when verification failed. */
  claims?: JWTPayload;
  error?: string;
  answeredWith: number;
}

type Answer = (path: string, attempt: number) => number | Promise<number>;

export class LogoutReceiver {
  readonly received: Received[] = [];
  private server!: https.Server;
  private readonly attempts = new Map<string, number>();
  origin = '';
  /** How the service answers a (verified) token; default 200. */
  answer: Answer = () => 200;

  constructor(
    private readonly tls: { certPath: string; keyPath: string },
    private readonly issuer: () => string,
    private readonly dispatcher: Dispatcher,
  ) {}

  async start(): Promise<void> {
    this.server = https.createServer({ cert: fs.readFileSync(this.tls.certPath), key: fs.readFileSync(this.tls.keyPath) }, (req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => void this.handle(req.url ?? '/', req.headers['content-type'] ?? '', body).then((status) => res.writeHead(status, { 'cache-control': 'no-store' }).end()));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.origin = `https://localhost:${(this.server.address() as AddressInfo).port}`;
  }

  uri(path: string): string {
    return this.origin + path;
  }

  /** Verifies like a relying party (OIDC Back-Channel Logout 1.0, section 2.6). */
  async verify(token: string, audience: string): Promise<JWTPayload> {
    const jwks = createRemoteJWKSet(new URL(this.issuer() + '/oauth2/keys'), {
      [customFetch]: (url: string, init: object) => undiciFetch(url, { ...init, dispatcher: this.dispatcher }) as unknown as Promise<Response>,
    });
    const { payload } = await jwtVerify(token, jwks, { issuer: this.issuer(), audience, typ: 'logout+jwt', requiredClaims: ['iat', 'exp', 'jti', 'events'] });
    if (!payload.events || !('http://schemas.openid.net/event/backchannel-logout' in (payload.events as object))) throw new Error('no logout event');
    if ('nonce' in payload) throw new Error('nonce in logout token');
    if (!payload.sub && !payload.sid) throw new Error('neither sub nor sid');
    return payload;
  }

  private async handle(path: string, contentType: string, body: string): Promise<number> {
    const attempt = (this.attempts.get(path) ?? 0) + 1;
    this.attempts.set(path, attempt);
    const audience = path.split('/')[1] ?? '';
    const token = contentType.startsWith('application/x-www-form-urlencoded') ? new URLSearchParams(body).get('logout_token') : null;
    const entry: Received = { path, answeredWith: 400 };
    try {
      if (!token) throw new Error('no logout_token');
      entry.claims = await this.verify(token, audience);
      entry.answeredWith = await this.answer(path, attempt);
    } catch (err) {
      entry.error = (err as Error).message;
    }
    this.received.push(entry);
    return entry.answeredWith;
  }

  /** Verified tokens that were accepted (200) at `path`. */
  accepted(path: string): JWTPayload[] {
    return this.received.filter((r) => r.path === path && r.claims && r.answeredWith === 200).map((r) => r.claims!);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
