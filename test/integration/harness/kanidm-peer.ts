// A second, real Kanidm (its own port, database and host name) serving the
// browser directly: the upstream IdP of federation tests. Put together from
// the wrapper's own parts, as first boot and `kiwi-id run` use them: its
// server.toml writer, certificate generator, the pinned-binary Supervisor,
// online account recovery and the Kanidm CLI. Nothing here imitates Kanidm.
//
// Its host name must differ from the local node's (localhost): browsers keep
// cookies per host, not per port, and both Kanidms use the same cookie names.
// It is this machine's host name, which Debian maps to a loopback address in
// /etc/hosts; the constructor checks that it does.
import dns from 'node:dns/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import { generateDevCertificate } from '../../../wrapper/src/crypto/tls-certs.js';
import { createLogger } from '../../../wrapper/src/telemetry/log.js';
import { renderServerToml } from '../../../wrapper/src/upstream/setup/server-toml.js';
import { KanidmCli } from '../../../wrapper/src/upstream/setup/kanidm-cli.js';
import { recoverAccount } from '../../../wrapper/src/upstream/setup/kanidmd-tasks.js';
import { Supervisor } from '../../../wrapper/src/upstream/supervisor.js';
import { freePort } from '../../e2e/net.js';
import { COMPATIBILITY, killStrays, UPSTREAM_PREFIX } from './kiwi-node.js';
import { setPassword } from './kanidm-people.js';

/** A host name of this machine that resolves to loopback and is not "localhost". */
export async function peerHostName(): Promise<string> {
  const host = os.hostname();
  const { address } = await dns.lookup(host).catch(() => ({ address: '' }));
  if (host === 'localhost' || !address.startsWith('127.')) {
    throw new Error(`the federation tests reach a second Kanidm as this machine's host name (${host}), which must resolve to a loopback address (Debian's /etc/hosts does: 127.0.1.1 ${host})`);
  }
  return host;
}

export class KanidmPeer {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-it-peer-'));
  readonly log: string[] = [];
  host = '';
  port = 0;
  private supervisor: Supervisor | undefined;
  private dispatcher: Agent | undefined;
  private cli: KanidmCli | undefined;
  private idmAdmin = '';

  get origin(): string {
    return `https://${this.host}:${this.port}`;
  }
  get caPath(): string {
    return path.join(this.root, 'tls/ca.pem');
  }
  private get config(): string {
    return path.join(this.root, 'server.toml');
  }

  async start(): Promise<void> {
    this.host = await peerHostName();
    this.port = await freePort();
    const tls = { chain: path.join(this.root, 'tls/chain.pem'), key: path.join(this.root, 'tls/key.pem') };
    generateDevCertificate({ certPath: tls.chain, keyPath: tls.key, caPath: this.caPath, hostnames: [this.host], ips: ['127.0.0.1'], days: 2 });
    // The wrapper's server.toml, minus the part that trusts a proxy in front: the browser comes straight here.
    const toml = renderServerToml({
      configPath: this.config, bind: `127.0.0.1:${this.port}`, dbPath: path.join(this.root, 'data/kanidm.db'),
      tlsChain: tls.chain, tlsKey: tls.key, domain: this.host, origin: this.origin, adminSocket: path.join(this.root, 'data/kanidmd.sock'),
    }).replace(/\n\[http_client_address_info\][\s\S]*$/, '\n');
    fs.mkdirSync(path.join(this.root, 'data'), { recursive: true, mode: 0o750 });
    fs.writeFileSync(this.config, toml, { mode: 0o640 });

    this.dispatcher = new Agent({ connect: { ca: fs.readFileSync(this.caPath) } });
    const log = createLogger({ level: 'info', destination: new Writable({ write: (c, _e, cb) => (this.log.push(String(c)), cb()) }) });
    this.supervisor = new Supervisor({
      bin: path.join(UPSTREAM_PREFIX, 'bin/kanidmd'), config: this.config, upstreamAddr: this.origin, dispatcher: this.dispatcher,
      compatibilityFile: COMPATIBILITY, intervalMs: 1_000, timeoutMs: 120_000, log,
    });
    await this.supervisor.start();
    await this.supervisor.waitHealthy();
    this.idmAdmin = await recoverAccount(path.join(UPSTREAM_PREFIX, 'bin/kanidmd'), this.config, 'idm_admin');
    this.cli = new KanidmCli({ cli: path.join(UPSTREAM_PREFIX, 'bin/kanidm'), url: this.origin, caPath: this.caPath });
    await this.cli.login('idm_admin', this.idmAdmin);
    // Test persons sign in with a password alone (Kanidm's default asks for MFA too).
    await this.kanidm('group', 'account-policy', 'credential-type-minimum', 'idm_all_persons', 'any');
  }

  kanidm(...args: string[]): Promise<string> {
    return this.cli!.run(args);
  }

  /** A person who can sign in with `password`; resolves to the person's UUID (the `sub` Kanidm asserts). */
  async person(name: string, password: string, mail?: string): Promise<string> {
    await this.kanidm('person', 'create', name, `${name} at the peer`);
    if (mail) await this.kanidm('person', 'update', name, '--mail', mail);
    await setPassword((args) => this.kanidm(...args), this.origin, this.dispatcher!, name, password);
    const got = await this.cli!.json<{ attrs: { uuid: string[] } }>(['person', 'get', name]);
    return got.attrs.uuid[0]!;
  }

  /** An OAuth2 client (confidential, PKCE); resolves to its basic secret. */
  async oauth2Client(id: string, landing: string, redirectUris: string[], scopes: string[]): Promise<string> {
    await this.kanidm('system', 'oauth2', 'create', id, `Client ${id}`, landing);
    for (const uri of redirectUris) await this.kanidm('system', 'oauth2', 'add-redirect-url', id, uri);
    await this.kanidm('system', 'oauth2', 'update-scope-map', id, 'idm_all_persons', ...scopes);
    return (await this.cli!.json<{ secret: string }>(['system', 'oauth2', 'show-basic-secret', id])).secret;
  }

  async close(): Promise<void> {
    await this.supervisor?.stop();
    this.cli?.close();
    await this.dispatcher?.close();
    await killStrays(this.root);
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
