// oidc-provider configuration for the KiwiStack issuer: which flows, which
// claims, which lifetimes, and how the provider reaches accounts, clients and
// persistence. Every feature is chosen here deliberately; anything not
// enabled is absent from discovery and answers the proper OAuth2 error.
import { randomBytes } from 'node:crypto';
import { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { GRANT_TYPES } from '../clients/client-record.js';
import { generateSecret } from '../clients/client-secret.js';
import { redirectUriProblem } from '../clients/validate-client.js';
import type { ClientsSource } from '../clients/clients-source.js';
import type { TokenTtls } from '../config/config.js';
import { DPOP_ALGORITHMS } from '../crypto/dpop.js';
import type { SigningKey } from '../crypto/keys.js';
import type { OidcAdapter } from '../state/oidc-adapter.js';
import type { Accounts } from './accounts.js';
import { deviceConfirmPage, deviceDonePage, deviceInputPage, errorPage, logoutDonePage, logoutPage } from './pages.js';
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
  /** Dynamic client registration is on exactly when this is set (`[clients] registration_token`). */
  registrationToken?: string;
}

/** Client ids handed out by /oauth2/register; lowercase like static ids, and recognisable. */
export function registeredClientId(): string {
  return 'reg-' + randomBytes(12).toString('hex');
}

type ClientFields = Record<string, unknown>;

/**
 * What registration (RFC 7591/7592) may ask for beyond oidc-provider's own
 * checks: the same URI rules as the clients file (exact https, or http on
 * loopback; no wildcards or fragments) and only the grants Kiwi ID offers.
 */
function validateRegisteredMetadata(m: ClientFields): void {
  const uris: Array<[string, unknown]> = [
    ...((m.redirect_uris as unknown[] | undefined) ?? []).map((u): [string, unknown] => ['redirect_uris', u]),
    ...((m.post_logout_redirect_uris as unknown[] | undefined) ?? []).map((u): [string, unknown] => ['post_logout_redirect_uris', u]),
    ...(m.backchannel_logout_uri !== undefined ? [['backchannel_logout_uri', m.backchannel_logout_uri] as [string, unknown]] : []),
  ];
  for (const [key, uri] of uris) {
    const problem = typeof uri === 'string' ? redirectUriProblem(uri) : `${key} entries must be strings`;
    if (!problem) continue;
    if (key === 'redirect_uris') throw new errors.InvalidRedirectUri(problem);
    throw new errors.InvalidClientMetadata(`${key}: ${problem}`);
  }
  for (const g of (m.grant_types as unknown[] | undefined) ?? []) {
    if (!(GRANT_TYPES as readonly unknown[]).includes(g)) throw new errors.InvalidClientMetadata(`grant_types: ${String(g)} is not offered by this issuer`);
  }
  const groups = m[ALLOWED_GROUPS];
  if (groups !== undefined && (!Array.isArray(groups) || !groups.every((x) => typeof x === 'string' && x !== ''))) {
    throw new errors.InvalidClientMetadata(`${ALLOWED_GROUPS} must be an array of group names`);
  }
}

/** Resource indicators (RFC 8707) are KiwiStack services: the origins of registered redirect URIs. */
function resourceServers(clients: ClientsSource): Set<string> {
  const out = new Set<string>();
  for (const c of clients.all()) for (const u of c.redirect_uris) out.add(new URL(u).origin);
  return out;
}

/** Token lifetimes from [tokens]; a grant lives as long as its refresh tokens. */
function lifetimes(ttl: ConfigurationDeps['ttl']): Configuration['ttl'] {
  return {
    AccessToken: ttl.access_token_ttl,
    ClientCredentials: ttl.access_token_ttl,
    AuthorizationCode: ttl.auth_code_ttl,
    IdToken: ttl.id_token_ttl,
    RefreshToken: ttl.refresh_token_ttl,
    Grant: ttl.refresh_token_ttl,
    Session: ttl.session_ttl,
    Interaction: 600,
    DeviceCode: ttl.device_code_ttl ?? 600,
  };
}

/** What Kiwi ID signs with is its one key's algorithm; what it accepts from clients is a fixed safe set. */
function algorithms(alg: string): Configuration['enabledJWA'] {
  return {
    idTokenSigningAlgValues: [alg],
    userinfoSigningAlgValues: [alg],
    introspectionSigningAlgValues: [alg],
    authorizationSigningAlgValues: [alg],
    clientAuthSigningAlgValues: ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'],
    // The same set kiwi-id/verify accepts from services' clients.
    dPoPSigningAlgValues: [...DPOP_ALGORITHMS],
  } as Configuration['enabledJWA'];
}

/** RFC 8628, for CLI tools on KiwiStack hosts. The user signs in on the verification page through the same login as every other sign-in. */
function deviceFlow(): NonNullable<Configuration['features']>['deviceFlow'] {
  return {
    enabled: true,
    charset: 'base-20',
    mask: '****-****',
    userCodeInputSource: async (ctx, form, _out, err) => {
      ctx.type = 'html';
      ctx.body = deviceInputPage(form, err ? (err as Error).name : undefined);
    },
    userCodeConfirmSource: async (ctx, form, client, _deviceInfo, userCode) => {
      ctx.type = 'html';
      ctx.body = deviceConfirmPage(form, client.clientName ?? client.clientId, userCode);
    },
    successSource: async (ctx) => {
      ctx.type = 'html';
      ctx.body = deviceDonePage(ctx.oidc.client?.clientName ?? ctx.oidc.client?.clientId ?? 'The device');
    },
  };
}

/** RFC 8707: a JWT access token for a registered KiwiStack service, which it verifies offline. */
function resourceIndicators(d: ConfigurationDeps): NonNullable<Configuration['features']>['resourceIndicators'] {
  return {
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
  };
}

function features(d: ConfigurationDeps): Configuration['features'] {
  return {
    devInteractions: { enabled: false },
    // Any confidential client (a resource server) may introspect; a public client only its own tokens.
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === ctx.oidc.client?.clientId,
    },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: deviceFlow(),
    // RFC 9126: available to every client, required per client (require_pushed_authorization_requests).
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false, allowUnregisteredRedirectUris: false },
    // RFC 9449: available to every client, required per client (dpop_bound_access_tokens); proofs are single-use.
    dPoP: { enabled: true, allowReplay: false },
    // OIDC Back-Channel Logout 1.0; delivery is Kiwi ID's (logout/backchannel.ts).
    backchannelLogout: { enabled: true },
    // RFC 7591/7592, only with a registration token (absent: /oauth2/register is 404).
    registration: d.registrationToken
      ? {
          enabled: true,
          initialAccessToken: d.registrationToken,
          idFactory: registeredClientId,
          secretFactory: () => generateSecret(),
        }
      : { enabled: false },
    registrationManagement: { enabled: !!d.registrationToken, rotateRegistrationAccessToken: true },
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
    resourceIndicators: resourceIndicators(d),
  };
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
    extraClientMetadata: {
      properties: [ALLOWED_GROUPS],
      // ctx is set only while a client registers or updates itself (static clients are validated by the clients file).
      validator: (ctx: KoaContextWithOIDC | undefined, key: string, _value: unknown, metadata: ClientFields) => {
        if (ctx && key === ALLOWED_GROUPS) validateRegisteredMetadata(metadata);
      },
    } as Configuration['extraClientMetadata'],
    enabledJWA: algorithms(d.key.alg),
    cookies: {
      keys: d.cookieKeys,
      // Kanidm shares the origin; prefixed names keep the two apart.
      names: { session: 'kiwi_session', interaction: 'kiwi_interaction', resume: 'kiwi_resume' },
      long: { signed: true, sameSite: 'lax' },
      short: { signed: true, sameSite: 'lax' },
    },
    ttl: lifetimes(d.ttl),
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Every refresh rotates; a rotated-out token used again revokes the grant.
    rotateRefreshToken: true,
    features: features(d),
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
