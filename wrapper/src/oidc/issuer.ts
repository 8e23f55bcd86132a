// The KiwiStack OpenID Provider: one issuer, tokens signed with
// jwt_private_key, users signed in by Kanidm. Protocol work is oidc-provider's
// (OpenID certified); this module composes it with the pieces Kiwi ID
// supplies: configuration, persistence, client lookup, interaction steps.
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { verifySecretAsync } from '../clients/client-secret.js';
import type { ClientsSource } from '../clients/clients-source.js';
import { StoreRegisteredClients, type RegisteredClients } from '../clients/registered-clients.js';
import type { TokenTtls } from '../config/config.js';
import type { SigningKey } from '../crypto/keys.js';
import type { Route } from '../server/front-door.js';
import type { StateStore } from '../state/store.js';
import { Accounts } from './accounts.js';
import { issuerConfiguration } from './configuration.js';
import { reportEvents } from './events.js';
import type { IssuerExtensionFactory } from './extension.js';
import { loginCallbackHandler } from './interactions/login-callback.js';
import { promptHandler } from './interactions/prompt.js';
import { recordJwtAccessTokens } from './jwt-access-tokens.js';
import type { LoginMethod } from './login/method.js';
import { BackchannelLogout } from './logout/backchannel.js';
import { SessionWatch } from './logout/session-watch.js';
import { INTERACTION_PREFIX, isIssuerPath, LOGIN_CALLBACK, PATHS } from './paths.js';
import { adapterClass } from './persistence.js';
import { correctResponses } from './responses.js';
import { acceptRepeatedClientSecret } from './registration-update.js';

export { INTERACTION_PREFIX, isIssuerPath, LOGIN_CALLBACK, PATHS } from './paths.js';

export interface IssuerOptions {
  issuer: string;
  key: SigningKey;
  store: StateStore;
  clients: ClientsSource;
  /** null: login is not configured yet (pages say so; machine endpoints still work). */
  login: LoginMethod | null;
  ttl: TokenTtls;
  cookieKeys: string[];
  log: Logger;
  /** Counts issuer events by name (Prometheus `kiwi_oidc_events_total`). */
  countEvent?: (event: string) => void;
  /** Capabilities beside the issuer (federation): their paths and the sign-in step. */
  extensions?: IssuerExtensionFactory[];
  /** Dynamic client registration is on exactly when set (`[clients] registration_token`). */
  registrationToken?: string;
  /** Where registered clients live; default: the state store. */
  registered?: RegisteredClients;
  /** Default: system roots, 5 s per attempt, 6 attempts. */
  backchannel?: {
    /** undici dispatcher with the CAs trusted for services' logout URIs; default: system roots. */
    dispatcher?: Dispatcher;
    timeoutMs: number;
    maxAttempts: number;
    /** First retry delay (doubles per attempt). Default 1 s. */
    firstRetryMs?: number;
  };
  /** How often ended sessions (expired, revoked by an admin) are looked for. Default 5 s. */
  sessionCheckIntervalMs?: number;
}

export interface Issuer {
  provider: Provider;
  route: Route;
  backchannel: BackchannelLogout;
  sessions: SessionWatch;
  registered: RegisteredClients;
  /** Stops the session timer and pending back-channel retries. */
  close(): void;
}

// The issuer's pages (logout confirmation, errors) must not be framed
// (clickjacking) or leak codes through Referer; HTTPS is the only way in.
const SECURITY_HEADERS: ReadonlyArray<[string, string]> = [
  ['x-frame-options', 'DENY'],
  ['x-content-type-options', 'nosniff'],
  ['referrer-policy', 'no-referrer'],
  ['strict-transport-security', 'max-age=31536000'],
];

const REGISTRATION_CLIENT_PREFIX = PATHS.registration + '/';

/** RFC 7592 management of a static client: never through the API (the clients file is the operator's). */
function staticClientRefused(res: ServerResponse, clientId: string): void {
  const body = JSON.stringify({
    error: 'invalid_request',
    error_description: `client ${clientId} is configured in the clients file and cannot be read or changed through registration (use kiwi-id client)`,
  });
  res.writeHead(403, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(body);
}

/** Changes to oidc-provider's models that make them fit Kiwi ID. */
function adaptModels(provider: Provider, backchannel: BackchannelLogout): void {
  // Client secrets exist only as hashes at rest.
  provider.Client.prototype.compareClientSecret = function (this: { clientSecret?: string }, actual: string) {
    return this.clientSecret ? verifySecretAsync(actual, this.clientSecret) : Promise.resolve(false);
  } as never;
  // Every id_token carries sid, so a service can match a later logout token to its session.
  (provider.Client.prototype as unknown as { includeSid(): boolean }).includeSid = () => true;
  // The end_session endpoint hands logout tokens to our queue instead of waiting on each service.
  (provider.Client.prototype as unknown as { backchannelLogout(sub: string, sid: string): Promise<void> }).backchannelLogout =
    async function (this: { clientId: string }, sub: string, sid: string) {
      backchannel.notify(this.clientId, sub, sid, 'logout');
    };
  recordJwtAccessTokens(provider);
  correctResponses(provider);
}

export function createIssuer(o: IssuerOptions): Issuer {
  const accounts = new Accounts(o.store, Math.max(o.ttl.refresh_token_ttl, o.ttl.session_ttl));
  const registered = o.registered ?? new StoreRegisteredClients(o.store);
  // The provider exists only after its adapter does; the queue reaches it late.
  let providerRef: Provider | undefined;
  const backchannel = new BackchannelLogout({
    get provider() {
      return providerRef!;
    },
    log: o.log,
    countEvent: o.countEvent,
    timeoutMs: 5000,
    maxAttempts: 6,
    ...o.backchannel,
  });
  const sessions = new SessionWatch(o.store, (c, sub, sid, why) => backchannel.notify(c, sub, sid, why), o.log);
  const provider = new Provider(o.issuer, issuerConfiguration({
    key: o.key,
    clients: o.clients,
    accounts,
    ttl: o.ttl,
    cookieKeys: o.cookieKeys,
    adapter: adapterClass({ store: o.store, clients: o.clients, registered, sessions }),
    registrationToken: o.registrationToken,
  }));
  providerRef = provider;
  adaptModels(provider, backchannel);
  reportEvents(provider, o.log, o.countEvent);
  sessions.start(o.sessionCheckIntervalMs ?? 5000);
  if (o.registrationToken) {
    acceptRepeatedClientSecret(provider, registered);
    o.log.info({ endpoint: PATHS.registration }, 'dynamic client registration is on (registration_token set)');
  }
  if (o.login?.endSession) {
    const endSession = o.login.endSession.bind(o.login);
    provider.on('end_session.success', (ctx: KoaContextWithOIDC) => endSession(ctx.req, ctx.res));
  }

  const callback = provider.callback();
  const extensions = (o.extensions ?? []).map((make) => make({ provider, accounts, issuer: o.issuer, log: o.log }));
  const prompt = promptHandler({ provider, login: o.login, accounts, log: o.log, extensions });
  const loginCallback = loginCallbackHandler({ provider, login: o.login, accounts, issuer: o.issuer, log: o.log });

  const route: Route = {
    name: 'oidc',
    matches: (pathname: string) => isIssuerPath(pathname) || extensions.some((e) => e.matches?.(pathname)),
    handle: (req: IncomingMessage, res: ServerResponse, pathname: string) => {
      for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
      if (pathname.startsWith(INTERACTION_PREFIX) && (req.method === 'GET' || req.method === 'POST')) return prompt(req, res);
      if (pathname === LOGIN_CALLBACK && req.method === 'GET') return loginCallback(req, res);
      if (pathname.startsWith(REGISTRATION_CLIENT_PREFIX)) {
        const clientId = pathname.slice(REGISTRATION_CLIENT_PREFIX.length);
        if (o.registrationToken && o.clients.find(clientId)) return staticClientRefused(res, clientId);
      }
      const ext = isIssuerPath(pathname) ? undefined : extensions.find((e) => e.matches?.(pathname));
      if (ext?.handle) return ext.handle(req, res, pathname);
      return callback(req, res);
    },
  };
  const close = () => {
    sessions.stop();
    backchannel.close();
  };
  return { provider, route, backchannel, sessions, registered, close };
}
