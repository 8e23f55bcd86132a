// The paths the issuer owns on the public origin it shares with Kanidm.
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
export const DISCOVERY = '/.well-known/openid-configuration';

// oidc-provider's sub-paths: authorization resume (/authorize/:uid) and
// logout confirm/success. Kanidm has its own /oauth2/token/introspect etc.,
// so no other issuer path owns what lies below it.
const WITH_SUBPATHS = [PATHS.authorization + '/', PATHS.end_session + '/', INTERACTION_PREFIX];
const EXACT = new Set<string>([DISCOVERY, LOGIN_CALLBACK, ...Object.values(PATHS)]);

/** Paths the issuer owns on the shared origin; everything else is Kanidm's. */
export function isIssuerPath(pathname: string): boolean {
  return EXACT.has(pathname) || WITH_SUBPATHS.some((p) => pathname.startsWith(p));
}
