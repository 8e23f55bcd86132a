// oidc-provider's per-instance cache (keystore, served JWKS); see cluster/keys.ts.
declare module 'oidc-provider/lib/helpers/weak_cache.js' {
  const instance: (provider: object) => Record<string, unknown>;
  export default instance;
}
