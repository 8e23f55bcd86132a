// The KiwiStack OpenID Provider: one issuer, tokens signed with
// jwt_private_key, users signed in by Kanidm. Protocol work is oidc-provider's
// (OpenID certified); this module composes it with the pieces Kiwi ID
// supplies: configuration, persistence, client lookup, interaction steps.
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { verifySecretAsync } from '../clients/clients-file.js';
import { clientMetadata, type ClientsSource } from '../clients/clients-source.js';
import type { TokenTtls } from '../config/config.js';
import type { SigningKey } from '../crypto/keys.js';
import type { Route } from '../server/front-door.js';
import { adapterFactory, type OidcAdapter } from '../state/oidc-adapter.js';
import type { StateStore } from '../state/store.js';
import { Accounts } from './accounts.js';
import { issuerConfiguration } from './configuration.js';
import { reportEvents } from './events.js';
import type { IssuerExtensionFactory } from './extension.js';
import { loginCallbackHandler } from './interactions/login-callback.js';
import { promptHandler } from './interactions/prompt.js';
import type { LoginMethod } from './login/method.js';
import { INTERACTION_PREFIX, isIssuerPath, LOGIN_CALLBACK } from './paths.js';

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
}

// The issuer's pages (logout confirmation, errors) must not be framed
// (clickjacking) or leak codes through Referer; HTTPS is the only way in.
const SECURITY_HEADERS: ReadonlyArray<[string, string]> = [
  ['x-frame-options', 'DENY'],
  ['x-content-type-options', 'nosniff'],
  ['referrer-policy', 'no-referrer'],
  ['strict-transport-security', 'max-age=31536000'],
];

/** Persistence for oidc-provider: clients from the clients file, everything else from the state store. */
function adapterClass(store: StateStore, clients: ClientsSource) {
  const StoreAdapter = adapterFactory(store);
  return class KiwiAdapter extends StoreAdapter {
    override async find(id: string) {
      if (this.name !== 'Client') return super.find(id);
      const rec = clients.find(id);
      if (!rec) return undefined;
      return Object.fromEntries(Object.entries(clientMetadata(rec)).filter(([, v]) => v !== undefined));
    }
  } as unknown as new (name: string) => OidcAdapter;
}

export function createIssuer(o: IssuerOptions): { provider: Provider; route: Route } {
  const accounts = new Accounts(o.store, Math.max(o.ttl.refresh_token_ttl, o.ttl.session_ttl));
  const provider = new Provider(o.issuer, issuerConfiguration({
    key: o.key,
    clients: o.clients,
    accounts,
    ttl: o.ttl,
    cookieKeys: o.cookieKeys,
    adapter: adapterClass(o.store, o.clients),
  }));
  // Client secrets exist only as hashes at rest.
  provider.Client.prototype.compareClientSecret = function (this: { clientSecret?: string }, actual: string) {
    return this.clientSecret ? verifySecretAsync(actual, this.clientSecret) : Promise.resolve(false);
  } as never;
  reportEvents(provider, o.log, o.countEvent);
  if (o.login?.endSession) {
    const endSession = o.login.endSession.bind(o.login);
    provider.on('end_session.success', (ctx: KoaContextWithOIDC) => endSession(ctx.req, ctx.res));
  }

  const callback = provider.callback();
  const extensions = (o.extensions ?? []).map((make) => make({ provider, accounts, issuer: o.issuer, log: o.log }));
  const prompt = promptHandler({ provider, login: o.login, accounts, clients: o.clients, log: o.log, extensions });
  const loginCallback = loginCallbackHandler({ provider, login: o.login, accounts, issuer: o.issuer, log: o.log });

  const route: Route = {
    name: 'oidc',
    matches: (pathname: string) => isIssuerPath(pathname) || extensions.some((e) => e.matches?.(pathname)),
    handle: (req: IncomingMessage, res: ServerResponse, pathname: string) => {
      for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
      if (pathname.startsWith(INTERACTION_PREFIX) && (req.method === 'GET' || req.method === 'POST')) return prompt(req, res);
      if (pathname === LOGIN_CALLBACK && req.method === 'GET') return loginCallback(req, res);
      const ext = isIssuerPath(pathname) ? undefined : extensions.find((e) => e.matches?.(pathname));
      if (ext?.handle) return ext.handle(req, res, pathname);
      return callback(req, res);
    },
  };
  return { provider, route };
}
