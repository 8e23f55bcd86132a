// Shared setup for the issuer component tests: keys, state store, clients
// file, the real front door with the issuer mounted, and small HTTP helpers.
// The Kanidm upstream is absent (its paths answer 503); how users log in is
// chosen by each test file (`login`).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Agent, fetch as undiciFetch, request } from 'undici';
import * as oidc from 'openid-client';
import type Provider from 'oidc-provider';
import { addClient } from '../../../wrapper/src/clients/client-list.js';
import type { ClientInput, ClientRecord } from '../../../wrapper/src/clients/client-record.js';
import { saveClients } from '../../../wrapper/src/clients/clients-file.js';
import { generateSigningKeyPair, loadSigningKey, type SigningKey } from '../../../wrapper/src/crypto/keys.js';
import { createLogger } from '../../../wrapper/src/telemetry/log.js';
import { localCertificate } from './certs.js';
import { closeAll } from './cleanup.js';
import { SqliteStateStore } from '../../../wrapper/src/state/store.js';
import { FrontDoor, type Route } from '../../../wrapper/src/server/front-door.js';
import { createMetrics } from '../../../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../../../wrapper/src/server/proxy.js';
import { proxyAgent, upstreamTls } from '../../../wrapper/src/upstream/tls.js';
import { ClientsSource } from '../../../wrapper/src/clients/clients-source.js';
import { createIssuer, type Issuer } from '../../../wrapper/src/oidc/issuer.js';
import type { TokenTtls } from '../../../wrapper/src/config/config.js';
import type { LoginMethod } from '../../../wrapper/src/oidc/login/method.js';
import type { IssuerExtensionFactory } from '../../../wrapper/src/oidc/extension.js';

export interface IssuerHarnessOptions {
  /** Host name in the issuer URL (default localhost; a second issuer uses 127.0.0.1 so browser cookies stay apart). */
  host?: 'localhost' | '127.0.0.1';
  /** Extensions plugged into the issuer (federation), made when the issuer URL is known. */
  extensions?: (h: IssuerHarness) => IssuerExtensionFactory[];
  ttl?: Partial<TokenTtls>;
  /** Turns dynamic client registration on. */
  registrationToken?: string;
  /** Back-channel retry schedule (the default starts at 1 s). */
  firstRetryMs?: number;
  maxAttempts?: number;
  sessionCheckIntervalMs?: number;
}

export const TTL: TokenTtls = { access_token_ttl: 300, refresh_token_ttl: 3600, auth_code_ttl: 60, id_token_ttl: 300, session_ttl: 3600, device_code_ttl: 600 };

export type HttpInit = Parameters<typeof request>[1];

export class IssuerHarness {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-issuer-'));
  readonly logLines: string[] = [];
  readonly secrets: Record<string, string> = {};
  /** What the issuer reported through countEvent (feeds kiwi_oidc_events_total in production). */
  readonly events: Record<string, number> = {};
  readonly clientsFile = path.join(this.root, 'clients.toml');
  readonly dispatcher: Agent;
  issuer = '';
  key!: SigningKey;
  store!: SqliteStateStore;
  provider!: Provider;
  issuerInstance!: Issuer;
  private clients: ClientRecord[] = [];
  private route!: Route;
  private front!: FrontDoor;
  private readonly cookieKeys = [randomBytes(32).toString('base64url')];
  private readonly log = createLogger({
    level: 'info',
    destination: new Writable({ write: (c, _e, cb) => (this.logLines.push(String(c)), cb()) }),
  });
  readonly tls = localCertificate(path.join(this.root, 'tls'), 'server');

  constructor(
    private readonly login: (h: IssuerHarness) => LoginMethod | null,
    private readonly alg: 'ES256' | 'EdDSA' | 'RS256' = 'ES256',
    private readonly opts: IssuerHarnessOptions = {},
  ) {
    this.dispatcher = new Agent({ connect: { ca: fs.readFileSync(this.tls.caPath) } });
  }

  async start(): Promise<void> {
    const priv = path.join(this.root, 'jwt-private.pem');
    const pub = path.join(this.root, 'jwt-public.pem');
    await generateSigningKeyPair(priv, pub, this.alg);
    this.key = await loadSigningKey(priv, pub);
    this.store = new SqliteStateStore({ dataDir: path.join(this.root, 'data') });
    const upstream = 'https://127.0.0.1:1';
    this.front = new FrontDoor({
      host: '127.0.0.1',
      port: 0,
      tlsCert: this.tls.certPath,
      tlsKey: this.tls.keyPath,
      maxHeaderSize: 16384,
      drainTimeoutMs: 1000,
      log: this.log,
      metrics: createMetrics({ processMetrics: false }),
      proxy: new UpstreamProxy({
        target: upstream,
        agent: proxyAgent(upstreamTls(upstream, this.tls.caPath)),
        timeoutMs: 1000,
        maxBodySize: 65536,
        isHealthy: () => false, // no Kanidm here: its paths answer 503
        log: this.log,
      }),
      isReady: () => true,
      // The issuer URL contains the port, known only after listen(): delegate.
      routes: [{ name: 'oidc', matches: (p) => this.route.matches(p), handle: (q, s, p) => this.route.handle(q, s, p) }],
    });
    const addr = await this.front.listen();
    this.issuer = `https://${this.opts.host ?? 'localhost'}:${addr.port}`;
    this.startIssuer();
  }

  /** A new provider over the same store file: what a wrapper restart does. */
  async restart(): Promise<void> {
    this.issuerInstance.close();
    await this.store.close();
    this.store = new SqliteStateStore({ dataDir: path.join(this.root, 'data') });
    this.startIssuer();
  }

  private startIssuer(): void {
    const made = createIssuer({
      issuer: this.issuer,
      key: this.key,
      store: this.store,
      clients: new ClientsSource(this.clientsFile, this.log),
      login: this.login(this),
      ttl: { ...TTL, ...this.opts.ttl },
      cookieKeys: this.cookieKeys,
      log: this.log,
      countEvent: (e) => (this.events[e] = (this.events[e] ?? 0) + 1),
      extensions: this.opts.extensions?.(this),
      registrationToken: this.opts.registrationToken,
      // Services' logout URIs are trusted through the same test CA as the issuer.
      backchannel: { dispatcher: this.dispatcher, timeoutMs: 2000, maxAttempts: this.opts.maxAttempts ?? 4, firstRetryMs: this.opts.firstRetryMs ?? 50 },
      sessionCheckIntervalMs: this.opts.sessionCheckIntervalMs,
    });
    this.issuerInstance = made;
    this.provider = made.provider;
    this.route = made.route;
  }

  register(input: ClientInput): void {
    const r = addClient(this.clients, input);
    this.clients = r.clients;
    if (r.secret) this.secrets[input.client_id] = r.secret;
    saveClients(this.clientsFile, this.clients);
  }

  /** Edits the clients file the way `kiwi-id client remove` does, under the running issuer. */
  unregister(id: string): void {
    this.clients = this.clients.filter((c) => c.client_id !== id);
    saveClients(this.clientsFile, this.clients);
  }

  /** Closes whatever start() got to open, even after a failed start or test. */
  close(): Promise<void> {
    return closeAll(
      () => this.issuerInstance?.close(),
      () => this.front?.drain(),
      () => this.store?.close(),
      () => this.dispatcher.close(),
      () => fs.rmSync(this.root, { recursive: true, force: true }),
    );
  }

  async http(p: string, init: HttpInit = {}) {
    const res = await request(p.startsWith('https:') ? p : this.issuer + p, { dispatcher: this.dispatcher, ...init });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  }

  basic(id: string): string {
    return 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(this.secrets[id]!)}`).toString('base64');
  }

  /** openid-client configuration for one registered client, trusting the test CA. */
  rp(clientId: string, auth: oidc.ClientAuth): Promise<oidc.Configuration> {
    return oidc.discovery(new URL(this.issuer), clientId, undefined, auth, {
      [oidc.customFetch]: (url: string, init: object) =>
        undiciFetch(url, { ...init, dispatcher: this.dispatcher }) as unknown as Promise<Response>,
    } as oidc.DiscoveryRequestOptions);
  }
}

export function form(fields: Record<string, string>, headers: Record<string, string> = {}) {
  return {
    method: 'POST' as const,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  };
}
