// A service's sign-in through the real issuer, driven by openid-client and a
// cookie-keeping browser; the login step is whatever the harness was given
// (ScriptedLogin in component tests).
import * as oidc from 'openid-client';
import { CookieBrowser } from './cookie-browser.js';
import type { IssuerHarness } from './issuer.js';

export async function authorize(browser: CookieBrowser, config: oidc.Configuration, params: { redirect_uri: string } & Record<string, string>) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    scope: 'openid profile email groups offline_access',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...params,
  });
  const landed = await browser.go(url.href);
  return { landed: landed.url, verifier, state, nonce };
}

/** Signs in (new browser unless given) and redeems the code; `tokenParams` go to the token request (e.g. resource). */
export async function signIn(
  h: IssuerHarness,
  config: oidc.Configuration,
  params: { redirect_uri: string } & Record<string, string>,
  tokenParams: Record<string, string> = {},
  browser = new CookieBrowser(h),
): Promise<{ tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers; browser: CookieBrowser }> {
  const { landed, verifier, state, nonce } = await authorize(browser, config, params);
  if (!landed.searchParams.get('code')) throw new Error(`no code: ${landed.href}`);
  const tokens = await oidc.authorizationCodeGrant(config, landed, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce }, tokenParams);
  return { tokens, browser };
}

/** RP-initiated logout in `browser`, confirming "sign me out". Returns where the browser landed. */
export async function logout(browser: CookieBrowser, config: oidc.Configuration, idToken: string, postLogout?: string) {
  const end = oidc.buildEndSessionUrl(config, { id_token_hint: idToken, ...(postLogout && { post_logout_redirect_uri: postLogout }) });
  const page = await browser.go(end.href);
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.text)?.[1];
  const action = /action="([^"]+)"/.exec(page.text)?.[1];
  if (!xsrf || !action) throw new Error(`no logout form: ${page.status} ${page.text.slice(0, 200)}`);
  return browser.go(action, { method: 'POST', body: new URLSearchParams({ xsrf, logout: 'yes' }).toString() });
}

/** Waits (bounded) for `check` to return a value; polls, never sleeps blindly. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
