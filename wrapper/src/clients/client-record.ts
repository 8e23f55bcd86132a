// What a registered relying party ("service": kiwi-mail, kiwi-files, ...) is: the record the
// clients file holds for it, what an operator supplies to create one, and the defaults.
// Validation is validate-client.ts; the file itself, clients-file.ts.

/** RFC 8628: CLI tools on KiwiStack hosts sign their user in through a browser elsewhere. */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
// jwt-bearer: RFC 7523 assertions from trusted issuers about linked identities (federation/jwt-bearer.ts).
export const GRANT_TYPES = [
  'authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:jwt-bearer', DEVICE_CODE_GRANT,
] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] as const;
export type TokenEndpointAuthMethod = (typeof AUTH_METHODS)[number];

export const DEFAULT_GRANT_TYPES: readonly GrantType[] = Object.freeze(['authorization_code', 'refresh_token']);
export const DEFAULT_SCOPES: readonly string[] = Object.freeze(['openid', 'profile', 'email', 'groups', 'offline_access']);
/** Used when token_endpoint_auth_method is not written (the OAuth 2.0 default). */
export const DEFAULT_AUTH_METHOD: TokenEndpointAuthMethod = 'client_secret_basic';

export interface Jwks {
  readonly keys: readonly Readonly<Record<string, unknown>>[];
}

export interface ClientRecord {
  readonly client_id: string;
  readonly client_name?: string;
  /** Exact strings as written; compared byte-for-byte at the authorization endpoint. */
  readonly redirect_uris: readonly string[];
  readonly post_logout_redirect_uris: readonly string[];
  readonly grant_types: readonly GrantType[];
  readonly token_endpoint_auth_method: TokenEndpointAuthMethod;
  /** Present exactly for client_secret_basic / client_secret_post. */
  readonly client_secret_hash?: string;
  /** Present exactly for private_key_jwt (public keys only). */
  readonly jwks?: Jwks;
  /** When present, only members of one of these groups may get tokens for this client. */
  readonly allowed_groups?: readonly string[];
  readonly scopes: readonly string[];
  /** OIDC Back-Channel Logout 1.0: where the service receives logout tokens. */
  readonly backchannel_logout_uri?: string;
  /** RFC 9126: authorization requests only through PAR. */
  readonly require_pushed_authorization_requests?: boolean;
  /** RFC 9449: access tokens only DPoP-bound. */
  readonly dpop_bound_access_tokens?: boolean;
}

/** What an operator supplies to addClient(); the secret (if any) is generated, never supplied. */
export interface ClientInput {
  client_id: string;
  client_name?: string;
  redirect_uris?: readonly string[];
  post_logout_redirect_uris?: readonly string[];
  grant_types?: readonly GrantType[];
  /** Default client_secret_basic. `none` makes a public client (PKCE is mandatory). */
  token_endpoint_auth_method?: TokenEndpointAuthMethod;
  jwks?: Jwks;
  allowed_groups?: readonly string[];
  scopes?: readonly string[];
  backchannel_logout_uri?: string;
  require_pushed_authorization_requests?: boolean;
  dpop_bound_access_tokens?: boolean;
}

