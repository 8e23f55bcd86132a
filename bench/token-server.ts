// Child process for bench/token.ts: the issuer behind the front door, with
// `chains` signed-in grants ready to refresh. Prints {port, secret, tokens}.
//   token-server.ts chains [sqlite|memory] [heap_growing_percent]
// Its state store is Kiwi ID's SQLite store, or with `memory` a Map (the
// ceiling without durable state; bench/memory-state-store.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { addClient } from '../wrapper/src/clients/client-list.js';
import { saveClients } from '../wrapper/src/clients/clients-file.js';
import { generateSigningKeyPair, loadSigningKey } from '../wrapper/src/crypto/keys.js';
import { createLogger } from '../wrapper/src/telemetry/log.js';
import { Accounts } from '../wrapper/src/oidc/accounts.js';
import { ClientsSource } from '../wrapper/src/clients/clients-source.js';
import { createIssuer } from '../wrapper/src/oidc/issuer.js';
import { FrontDoor } from '../wrapper/src/server/front-door.js';
import { createMetrics } from '../wrapper/src/telemetry/metrics.js';
import { UpstreamProxy } from '../wrapper/src/server/proxy.js';
import { SqliteStateStore, type StateStore } from '../wrapper/src/state/store.js';
import { MemoryStateStore } from './memory-state-store.js';
import { generateDevCertificate } from '../wrapper/src/crypto/tls-certs.js';
import { proxyAgent, upstreamTls } from '../wrapper/src/upstream/tls.js';
import { tuneHeapGrowth } from '../wrapper/src/lifecycle/heap.js';
import { DEFAULT_HEAP_GROWING_PERCENT } from '../wrapper/src/config/config.js';

const chains = Number(process.argv[2] ?? 16);
const storeKind = process.argv[3] ?? 'sqlite';
// The heap growth `kiwi-id run` would set (lifecycle/heap.ts), by default its default.
tuneHeapGrowth(Number(process.argv[4] ?? DEFAULT_HEAP_GROWING_PERCENT));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-token-bench-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
process.on('SIGTERM', () => process.exit(0));
const tls = { certPath: path.join(dir, 'tls.crt'), keyPath: path.join(dir, 'tls.key'), caPath: path.join(dir, 'ca.crt'), hostnames: ['localhost'], ips: ['127.0.0.1'], days: 1 };
generateDevCertificate(tls);
await generateSigningKeyPair(path.join(dir, 'jwt.pem'), path.join(dir, 'jwt.pub'));
const key = await loadSigningKey(path.join(dir, 'jwt.pem'), path.join(dir, 'jwt.pub'));
const { clients, secret } = addClient([], { client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/cb'] });
saveClients(path.join(dir, 'clients.toml'), clients);
const log = createLogger({ level: 'info', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
const store: StateStore = storeKind === 'memory' ? new MemoryStateStore() : new SqliteStateStore({ dataDir: path.join(dir, 'data') });
const ttl = { access_token_ttl: 900, refresh_token_ttl: 86400, auth_code_ttl: 60, id_token_ttl: 900, session_ttl: 3600 };

const proxy = new UpstreamProxy({ target: 'https://127.0.0.1:1', agent: proxyAgent(upstreamTls('https://127.0.0.1:1', tls.caPath)), timeoutMs: 1000, maxBodySize: 65536, isHealthy: () => false, log });
let route: ReturnType<typeof createIssuer>['route'];
const front = new FrontDoor({
  host: '127.0.0.1', port: 0, tlsCert: tls.certPath, tlsKey: tls.keyPath, maxHeaderSize: 16384, drainTimeoutMs: 1000,
  log, metrics: createMetrics(), proxy, isReady: () => true,
  routes: [{ name: 'oidc', matches: (p) => route.matches(p), handle: (q, s, p) => route.handle(q, s, p) }],
});
const { port } = await front.listen();
const issuer = `https://localhost:${port}`;
const made = createIssuer({ issuer, key, store, clients: new ClientsSource(path.join(dir, 'clients.toml'), log), login: null, ttl, cookieKeys: [randomBytes(32).toString('base64url')], log });
route = made.route;
const { provider } = made;

// What finished logins leave behind: an account, a grant and a refresh token per chain.
const tokens: string[] = [];
const client = (await provider.Client.find('kiwi-mail'))!;
for (let i = 0; i < chains; i++) {
  const accountId = `user-${i}`;
  await new Accounts(store, 86400).save({ sub: accountId, preferred_username: `user${i}`, groups: ['mail_users'] });
  const grant = new provider.Grant({ accountId, clientId: 'kiwi-mail' });
  grant.addOIDCScope('openid offline_access profile groups');
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({ accountId, client, grantId, scope: 'openid offline_access profile groups', gty: 'authorization_code', iat: Math.floor(Date.now() / 1000) } as never);
  tokens.push(await rt.save());
}
process.stdout.write(JSON.stringify({ port, ca: fs.readFileSync(tls.caPath, 'utf8'), secret, tokens }) + '\n');
