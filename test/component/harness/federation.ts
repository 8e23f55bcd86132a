// Two real Kiwi ID issuers: "local" federates, "upstream B" is the upstream
// IdP (its own keys, state, CA and host name) where local is registered as a
// private_key_jwt client. Both run the real issuer over real TLS; only the
// Kanidm parts are replaced: each issuer's own user login is the scripted
// step (scripted-login.ts), and local's person directory is FixedDirectory.
// The same flows run against real Kanidm peers in test/integration.
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import { parseFederation, type FederationConfig } from '../../../wrapper/src/config/federation.js';
import { loadClientAssertionKey } from '../../../wrapper/src/federation/client-key.js';
import type { Person, PersonDirectory } from '../../../wrapper/src/federation/directory.js';
import { createFederation, type Federation } from '../../../wrapper/src/federation/index.js';
import { createMetrics, type Metrics } from '../../../wrapper/src/telemetry/metrics.js';
import { createLogger } from '../../../wrapper/src/telemetry/log.js';
import { IssuerHarness } from './issuer.js';
import { ScriptedLogin } from './scripted-login.js';
import { WebBrowser } from './web-browser.js';

/** Stands in for Kanidm's person records (read by KanidmDirectory in production). */
export class FixedDirectory implements PersonDirectory {
  readonly persons = new Map<string, Person>();
  lookups = 0;

  add(p: Partial<Person> & { uuid: string; name: string }): Person {
    const full: Person = { spn: `${p.name}@idm.kiwi.test`, mails: [], groups: [], valid: true, ...p };
    this.persons.set(full.uuid, full);
    return full;
  }

  async person(id: string): Promise<Person | undefined> {
    this.lookups++;
    return [...this.persons.values()].find((p) => p.uuid === id || p.name === id || p.spn === id);
  }

  async personsWithEmail(email: string): Promise<Person[]> {
    return [...this.persons.values()].filter((p) => p.mails.some((m) => m.toLowerCase() === email.toLowerCase()));
  }
}

export interface FederationSetup {
  /** Extra `[federation]` keys (read when local starts) and extra `[[federation.upstream_idps]]` tables. */
  federation?: (pair: FederatedPair) => Record<string, unknown>;
  idpB?: Record<string, unknown>;
  extraIdps?: (pair: FederatedPair) => Record<string, unknown>[];
}

export class FederatedPair {
  readonly directory = new FixedDirectory();
  localLogin!: ScriptedLogin;
  upstreamLogin!: ScriptedLogin;
  readonly upstream = new IssuerHarness((h) => (this.upstreamLogin = new ScriptedLogin(h)), 'ES256', { host: '127.0.0.1' });
  readonly local: IssuerHarness;
  federation!: Federation;
  fedConfig!: FederationConfig;
  readonly metrics: Metrics = createMetrics({ processMetrics: false });
  readonly fedLog: string[] = [];
  clientKeyPath = '';
  /** Origins a WebBrowser loads (everything else is a service's redirect URI). */
  readonly extraOrigins: string[] = [];
  readonly extraCas: Buffer[] = [];

  constructor(private readonly setup: FederationSetup = {}) {
    this.local = new IssuerHarness((h) => (this.localLogin = new ScriptedLogin(h)), 'ES256', {
      extensions: (h) => {
        this.fedConfig = parseFederation({
          ca_file: this.upstream.tls.caPath,
          ...this.setup.federation?.(this),
          upstream_idps: [
            {
              id: 'kiwi-b',
              issuer: this.upstream.issuer,
              client_id: 'kiwi-fed',
              private_key_path: this.clientKeyPath,
              scopes: ['openid', 'profile', 'email'],
              default_groups: ['partners'],
              display_name: 'Partner Kiwi ID',
              ...this.setup.idpB,
            },
            ...(this.setup.extraIdps?.(this) ?? []),
          ],
        }, { baseDir: h.root, dataDir: path.join(h.root, 'data') });
        const log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => (this.fedLog.push(String(c)), cb()) }) });
        this.federation = createFederation({ config: this.fedConfig, issuer: h.issuer, store: h.store, directory: this.directory, log, registry: this.metrics.registry });
        return this.federation.extension ? [this.federation.extension] : [];
      },
    });
  }

  get callback(): string {
    return `${this.local.issuer}/oauth2/federation/kiwi-b/callback`;
  }

  async start(): Promise<void> {
    await this.upstream.start();
    this.clientKeyPath = path.join(this.upstream.root, 'kiwi-fed-client.pem');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    fs.writeFileSync(this.clientKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await this.local.start();
    // Local registered at B the way an operator would: its public key, its callback.
    const key = await loadClientAssertionKey(this.clientKeyPath);
    this.upstream.register({
      client_id: 'kiwi-fed',
      client_name: 'Local Kiwi ID',
      redirect_uris: [this.callback],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [key.publicJwk as never] },
      scopes: ['openid', 'profile', 'email', 'groups'],
    });
  }

  browser(): WebBrowser {
    const ca = [fs.readFileSync(this.local.tls.caPath), fs.readFileSync(this.upstream.tls.caPath), ...this.extraCas];
    return new WebBrowser(new Agent({ connect: { ca } }), () => [this.local.issuer, this.upstream.issuer, ...this.extraOrigins]);
  }

  async metric(name: string): Promise<string> {
    const text = await this.metrics.registry.metrics();
    return text.split('\n').filter((l) => l.startsWith(name)).join('\n');
  }

  async close(): Promise<void> {
    await this.federation?.close();
    await this.local.close();
    await this.upstream.close();
  }
}
