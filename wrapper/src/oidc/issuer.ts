// The KiwiStack OpenID Provider: one issuer, tokens signed with
// jwt_private_key, users signed in by Kanidm. Protocol work is oidc-provider's
// (OpenID certified); this module supplies configuration, persistence, client
// lookup and the two interaction steps (login at Kanidm, first-party consent).
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { verifySecretAsync } from '../clients/clients-file.js';
import type { TokenTtls } from '../config/config.js';
import type { SigningKey } from '../crypto/keys.js';
import { redactUrl } from '../telemetry/log.js';
import type { Route } from '../server/front-door.js';
import { sendErrorPage } from '../server/error-page.js';
import { adapterFactory, type OidcAdapter } from '../state/oidc-adapter.js';
import type { StateStore } from '../state/store.js';
import { Accounts, memberOfAny } from './accounts.js';
import { clientMetadata, type ClientsSource } from '../clients/clients-source.js';
import { errorPage, logoutDonePage, logoutPage } from './pages.js';
import { UpstreamLoginError, type LoginMethod } from './upstream-login.js';

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
}

export const PATHS = {
  authorization: '/oauth2/authorize',
  token: '/oauth2/token',
  userinfo: '/oauth2/userinfo',
  jwks: '/oauth2/keys',
  introspection: '/oauth2/introspect',
  revocation: '/oauth2/revoke',
  end_session: '/oauth2/logout',
} as const;
export const INTERACTION_PREFIX = '/oauth2/interaction/';
export const LOGIN_CALLBACK = '/oauth2/login/callback';
const DISCOVERY = '/.well-known/openid-configuration';

// Claims per scope. `groups` carries Kanidm's group SPNs and UUIDs.
const CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'preferred_username'],
  email: ['email', 'email_verified'],
  groups: ['groups'],
};
const USER_DATA_SCOPES = 'profile email groups';
// The issuer's pages (logout confirmation, errors) must not be framed
// (clickjacking) or leak codes through Referer; HTTPS is the only way in.
const SECURITY_HEADERS: ReadonlyArray<[string, string]> = [
  ['x-frame-options', 'DENY'],
  ['x-content-type-options', 'nosniff'],
  ['referrer-policy', 'no-referrer'],
  ['strict-transport-security', 'max-age=31536000'],
];
const ALLOWED_GROUPS = 'urn:kiwi:allowed_groups';

// oidc-provider's sub-paths: authorization resume (/authorize/:uid) and
// logout confirm/success. Kanidm has its own /oauth2/token/introspect etc.,
// so no other issuer path owns what lies below it.
const WITH_SUBPATHS = [PATHS.authorization + '/', PATHS.end_session + '/', INTERACTION_PREFIX];
const EXACT = new Set<string>([DISCOVERY, LOGIN_CALLBACK, ...Object.values(PATHS)]);

/** Paths the issuer owns on the shared origin; everything else is Kanidm's. */
export function isIssuerPath(pathname: string): boolean {
  return EXACT.has(pathname) || WITH_SUBPATHS.some((p) => pathname.startsWith(p));
}

/** Resource indicators (RFC 8707) are KiwiStack services: the origins of registered redirect URIs. */
function resourceServers(clients: ClientsSource): Set<string> {
  const out = new Set<string>();
  for (const c of clients.all()) for (const u of c.redirect_uris) out.add(new URL(u).origin);
  return out;
}

export function createIssuer(o: IssuerOptions): { provider: Provider; route: Route } {
  const accounts = new Accounts(o.store, Math.max(o.ttl.refresh_token_ttl, o.ttl.session_ttl));
  const StoreAdapter = adapterFactory(o.store);

  // Clients come from the clients file; everything else from the state store.
  class KiwiAdapter extends StoreAdapter {
    override async find(id: string) {
      if (this.name !== 'Client') return super.find(id);
      const rec = o.clients.find(id);
      if (!rec) return undefined;
      return Object.fromEntries(Object.entries(clientMetadata(rec)).filter(([, v]) => v !== undefined));
    }
  }

  const configuration: Configuration = {
    adapter: KiwiAdapter as unknown as new (name: string) => OidcAdapter as never,
    jwks: { keys: [o.key.privateJwk as never] },
    routes: PATHS,
    scopes: ['openid', 'offline_access', ...USER_DATA_SCOPES.split(' ')],
    claims: CLAIMS,
    // Services verify the id_token offline, so requested claims go into it
    // rather than only into userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: {
      methods: ['S256'],
      // Public clients cannot keep a secret: PKCE is what binds the code to them.
      required: (_ctx, client) => client.tokenEndpointAuthMethod === 'none',
    },
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: o.key.alg,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    extraClientMetadata: { properties: [ALLOWED_GROUPS] },
    enabledJWA: {
      idTokenSigningAlgValues: [o.key.alg],
      userinfoSigningAlgValues: [o.key.alg],
      introspectionSigningAlgValues: [o.key.alg],
      authorizationSigningAlgValues: [o.key.alg],
      clientAuthSigningAlgValues: ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'],
    },
    cookies: {
      keys: o.cookieKeys,
      // Kanidm shares the origin; prefixed names keep the two apart.
      names: { session: 'kiwi_session', interaction: 'kiwi_interaction', resume: 'kiwi_resume' },
      long: { signed: true, sameSite: 'lax' },
      short: { signed: true, sameSite: 'lax' },
    },
    ttl: {
      AccessToken: o.ttl.access_token_ttl,
      ClientCredentials: o.ttl.access_token_ttl,
      AuthorizationCode: o.ttl.auth_code_ttl,
      IdToken: o.ttl.id_token_ttl,
      RefreshToken: o.ttl.refresh_token_ttl,
      Grant: o.ttl.refresh_token_ttl,
      Session: o.ttl.session_ttl,
      Interaction: 600,
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Every refresh rotates; a rotated-out token used again revokes the grant.
    rotateRefreshToken: true,
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.type = 'html';
          ctx.body = logoutPage(ctx.host, form);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = logoutDonePage();
        },
      },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx, resource) => {
          if (!resourceServers(o.clients).has(resource)) {
            throw new errors.InvalidTarget('resource is not a registered KiwiStack service');
          }
          return {
            scope: USER_DATA_SCOPES,
            audience: resource,
            accessTokenTTL: o.ttl.access_token_ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: o.key.alg } },
          };
        },
      },
    },
    // JWT access tokens carry who the user is, so services need no userinfo call.
    extraTokenClaims: async (_ctx, token) => {
      const accountId = (token as { accountId?: string }).accountId;
      if (!accountId) return undefined;
      const a = await accounts.find(accountId);
      return a ? { preferred_username: a.preferred_username, groups: a.groups } : undefined;
    },
    findAccount: async (_ctx, sub) => {
      const a = await accounts.find(sub);
      return a ? { accountId: sub, claims: async () => ({ ...a }) } : undefined;
    },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
    renderError: async (ctx, out) => {
      // Never a stack; the OAuth2 error code and description are what the user and the logs need.
      ctx.type = 'html';
      ctx.body = errorPage(String(out.error), String(out.error_description ?? ''));
    },
  };

  const provider = new Provider(o.issuer, configuration);
  // Client secrets exist only as scrypt hashes at rest.
  provider.Client.prototype.compareClientSecret = function (this: { clientSecret?: string }, actual: string) {
    return this.clientSecret ? verifySecretAsync(actual, this.clientSecret) : Promise.resolve(false);
  } as never;
  provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
    o.log.error({ err_message: err.message, stack: err.stack, url: redactUrl(ctx.url) }, 'issuer server_error');
  });
  for (const ev of ['grant.error', 'introspection.error', 'revocation.error', 'userinfo.error', 'authorization.error'] as const) {
    provider.on(ev, (_ctx: KoaContextWithOIDC, err: Error & { error_description?: string }) => {
      o.log.info({ event: ev, error: err.message, error_description: err.error_description }, 'oauth2 error');
    });
  }
  if (o.countEvent) {
    const count = o.countEvent;
    for (const ev of [
      'authorization.success', 'authorization.error', 'grant.success', 'grant.error', 'grant.revoked',
      'end_session.success', 'introspection.error', 'revocation.error', 'userinfo.error', 'server_error',
    ]) {
      provider.on(ev, () => count(ev));
    }
  }
  provider.on('grant.revoked', (_ctx: KoaContextWithOIDC, grantId: string) => o.log.warn({ grant_id: grantId }, 'grant revoked'));

  const callback = provider.callback();

  async function interaction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      return sendErrorPage(req, res, 400, 'This sign-in has expired or was started in another browser. Please start again from the service.');
    }
    const clientId = String(details.params.client_id);
    if (details.prompt.name === 'login') {
      if (!o.login) return sendErrorPage(req, res, 503, 'Sign-in is not configured on this Kiwi ID yet (see the operator log).');
      const to = await o.login.begin(details.uid);
      res.writeHead(303, { location: to.href, 'cache-control': 'no-store' }).end();
      return;
    }
    // Consent: KiwiStack services are first-party, so the grant is given
    // without a page, but only to members of the client's allowed groups.
    const accountId = details.session!.accountId;
    const client = o.clients.find(clientId);
    const account = await accounts.find(accountId);
    if (client?.allowed_groups && !memberOfAny(account?.groups, client.allowed_groups)) {
      o.log.info({ client_id: clientId, sub: accountId }, 'access denied by allowed_groups');
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'you are not a member of a group allowed to use this service',
      }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId });
    if (!grant) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
    const missing = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  async function loginCallback(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!o.login) return sendErrorPage(req, res, 503, 'Sign-in is not configured on this Kiwi ID yet.');
    let uid: string;
    let result: Record<string, unknown>;
    try {
      const done = await o.login.complete(new URL(req.url ?? '/', o.issuer));
      await accounts.save(done.claims);
      uid = done.uid;
      result = { login: { accountId: done.claims.sub } };
    } catch (err) {
      if (!(err instanceof UpstreamLoginError) || !err.uid) {
        o.log.warn({ err_message: (err as Error).message }, 'login callback rejected');
        return sendErrorPage(req, res, 400, 'This sign-in could not be completed. Please start again from the service.');
      }
      uid = err.uid;
      result = { error: err.error, error_description: err.message };
    }
    // The interaction cookie is scoped to the interaction path, so the result
    // is stored by uid; the browser binding is still checked by oidc-provider
    // at the resume step (its resume cookie).
    const pending = await provider.Interaction.find(uid);
    if (!pending) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
    pending.result = 'error' in result ? result : { ...pending.lastSubmission, ...result };
    await pending.save(Math.max(1, pending.exp - Math.floor(Date.now() / 1000)));
    res.writeHead(303, { location: pending.returnTo, 'cache-control': 'no-store' }).end();
  }

  const route: Route = {
    name: 'oidc',
    matches: isIssuerPath,
    handle: (req, res, pathname) => {
      for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
      if (pathname.startsWith(INTERACTION_PREFIX) && req.method === 'GET') return interaction(req, res);
      if (pathname === LOGIN_CALLBACK && req.method === 'GET') return loginCallback(req, res);
      return callback(req, res);
    },
  };
  return { provider, route };
}
