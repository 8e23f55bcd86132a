// oidc-provider configuration for the KiwiStack issuer: which flows, which
// claims, which lifetimes, and how the provider reaches accounts, clients and
// persistence. Every feature is chosen here deliberately; anything not
// enabled is absent from discovery and answers the proper OAuth2 error.
import { errors, type Configuration } from 'oidc-provider';
import type { ClientsSource } from '../clients/clients-source.js';
import type { TokenTtls } from '../config/config.js';
import type { SigningKey } from '../crypto/keys.js';
import type { OidcAdapter } from '../state/oidc-adapter.js';
import type { Accounts } from './accounts.js';
import { errorPage, logoutDonePage, logoutPage } from './pages.js';
import { PATHS, INTERACTION_PREFIX } from './paths.js';

// Claims per scope. `groups` carries Kanidm's group SPNs and UUIDs.
const CLAIMS = {
  // acr/amr: how the user signed in (a federated sign-in carries amr "fed"); present only when known.
  openid: ['sub', 'acr', 'amr'],
  profile: ['name', 'preferred_username'],
  email: ['email', 'email_verified'],
  groups: ['groups'],
};
export const USER_DATA_SCOPES = 'profile email groups';
export const ALLOWED_GROUPS = 'urn:kiwi:allowed_groups';

export interface ConfigurationDeps {
  key: SigningKey;
  clients: ClientsSource;
  accounts: Accounts;
  ttl: TokenTtls;
  cookieKeys: string[];
  adapter: new (name: string) => OidcAdapter;
}

/** Resource indicators (RFC 8707) are KiwiStack services: the origins of registered redirect URIs. */
function resourceServers(clients: ClientsSource): Set<string> {
  const out = new Set<string>();
  for (const c of clients.all()) for (const u of c.redirect_uris) out.add(new URL(u).origin);
  return out;
}

export function issuerConfiguration(d: ConfigurationDeps): Configuration {
  return {
    adapter: d.adapter as never,
    jwks: { keys: [d.key.privateJwk as never] },
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
      id_token_signed_response_alg: d.key.alg,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    extraClientMetadata: { properties: [ALLOWED_GROUPS] },
    enabledJWA: {
      idTokenSigningAlgValues: [d.key.alg],
      userinfoSigningAlgValues: [d.key.alg],
      introspectionSigningAlgValues: [d.key.alg],
      authorizationSigningAlgValues: [d.key.alg],
      clientAuthSigningAlgValues: ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'],
    },
    cookies: {
      keys: d.cookieKeys,
      // Kanidm shares the origin; prefixed names keep the two apart.
      names: { session: 'kiwi_session', interaction: 'kiwi_interaction', resume: 'kiwi_resume' },
      long: { signed: true, sameSite: 'lax' },
      short: { signed: true, sameSite: 'lax' },
    },
    ttl: {
      AccessToken: d.ttl.access_token_ttl,
      ClientCredentials: d.ttl.access_token_ttl,
      AuthorizationCode: d.ttl.auth_code_ttl,
      IdToken: d.ttl.id_token_ttl,
      RefreshToken: d.ttl.refresh_token_ttl,
      Grant: d.ttl.refresh_token_ttl,
      Session: d.ttl.session_ttl,
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
          if (!resourceServers(d.clients).has(resource)) {
            throw new errors.InvalidTarget('resource is not a registered KiwiStack service');
          }
          return {
            scope: USER_DATA_SCOPES,
            audience: resource,
            accessTokenTTL: d.ttl.access_token_ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: d.key.alg } },
          };
        },
      },
    },
    // JWT access tokens carry who the user is, so services need no userinfo call.
    extraTokenClaims: async (_ctx, token) => {
      const accountId = (token as { accountId?: string }).accountId;
      if (!accountId) return undefined;
      const a = await d.accounts.find(accountId);
      return a ? { preferred_username: a.preferred_username, groups: a.groups } : undefined;
    },
    findAccount: async (_ctx, sub) => {
      const a = await d.accounts.find(sub);
      return a ? { accountId: sub, claims: async () => ({ ...a }) } : undefined;
    },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
    renderError: async (ctx, out) => {
      // Never a stack; the OAuth2 error code and description are what the user and the logs need.
      ctx.type = 'html';
      ctx.body = errorPage(String(out.error), String(out.error_description ?? ''));
    },
  };

}
