// The paths the issuer owns on the public origin it shares with Kanidm.
export const PATHS = {
  authorization: '/oauth2/authorize',
  token: '/oauth2/token',
  userinfo: '/oauth2/userinfo',
  jwks: '/oauth2/keys',
  introspection: '/oauth2/introspect',
  revocation: '/oauth2/revoke',
  end_session: '/oauth2/logout',
  // Kanidm has /oauth2/device (its own device flow), hence the longer name.
  device_authorization: '/oauth2/device_authorization',
  code_verification: '/oauth2/activate',
  pushed_authorization_request: '/oauth2/par',
  registration: '/oauth2/register',
} as const;
export const INTERACTION_PREFIX = '/oauth2/interaction/';
export const LOGIN_CALLBACK = '/oauth2/login/callback';
export const DISCOVERY = '/.well-known/openid-configuration';

// oidc-provider's sub-paths: authorization resume (/authorize/:uid), logout
// confirm/success, device resume (/activate/:uid), client configuration
// (/register/:client_id). Paths of features that are off (registration
// without a token) still belong to the issuer, which answers 404. Kanidm has
// its own /oauth2/token/introspect etc., so no other issuer path owns what
// lies below it.
const WITH_SUBPATHS = [
  PATHS.authorization + '/', PATHS.end_session + '/', INTERACTION_PREFIX,
  PATHS.code_verification + '/', // device flow resume after sign-in
  PATHS.registration + '/', // RFC 7592 client configuration endpoint
];
const EXACT = new Set<string>([DISCOVERY, LOGIN_CALLBACK, ...Object.values(PATHS)]);

/** Paths the issuer owns on the shared origin; everything else is Kanidm's. */
export function isIssuerPath(pathname: string): boolean {
  return EXACT.has(pathname) || WITH_SUBPATHS.some((p) => pathname.startsWith(p));
}
