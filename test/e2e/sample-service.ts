// A sample KiwiStack service: an independent relying party written the way a
// service team would, with openid-client and the published `kiwi-id/verify`
// helper — none of the wrapper's own code. Browser tests drive it; the
// Kanidm end-to-end tests will use it unchanged.
//   GET /login     → authorization request (PKCE S256, state, nonce)
//   GET /callback  → code exchange, offline id_token verification, session
//   GET /          → "Hello <preferred_username>" or "Signed out"
//   GET /userinfo  → the issuer's userinfo for the session (JSON)
//   GET /refresh   → refresh grant (rotation)
//   GET /logout    → RP-initiated logout, back to /bye
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import { verify } from 'kiwi-id/verify';

export interface SampleServiceOptions {
  issuer: string;
  clientId: string;
  /** Omitted: a public client (PKCE only). */
  clientSecret?: string;
  scope: string;
  /** The issuer's jwt_public_key (PEM): the only thing needed to trust its tokens. */
  publicKeyPem: string;
  tls: { cert: Buffer; key: Buffer };
  /** CA that signed the issuer's certificate. */
  ca: Buffer;
  port: number;
}

interface Session {
  claims: Record<string, unknown>;
  idToken: string;
  accessToken: string;
  refreshToken?: string;
}

const html = (body: string) => `<!doctype html><html><head><meta charset="utf-8"><title>sample</title></head><body>${body}</body></html>`;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function cookies(header: string | undefined): Record<string, string> {
  return Object.fromEntries((header ?? '').split(';').map((c) => c.trim().split('=')).filter((p) => p.length === 2)) as Record<string, string>;
}

export async function startSampleService(o: SampleServiceOptions): Promise<{ url: string; close: () => Promise<void> }> {
  const dispatcher = new Agent({ connect: { ca: o.ca } });
  const auth = o.clientSecret ? oidc.ClientSecretBasic(o.clientSecret) : oidc.None();
  const config = await oidc.discovery(new URL(o.issuer), o.clientId, undefined, auth, {
    [oidc.customFetch]: (url: string, init: object) => undiciFetch(url, { ...init, dispatcher }) as unknown as Promise<Response>,
  } as oidc.DiscoveryRequestOptions);
  const url = `https://localhost:${o.port}`;
  const pending = new Map<string, { verifier: string; nonce: string }>();
  // Cookies ignore ports, and every test service is on localhost: names must differ per service.
  const sidCookie = `${o.clientId.replace(/\W/g, '_')}_sid`;
  const stateCookie = `${o.clientId.replace(/\W/g, '_')}_state`;
  const sessions = new Map<string, Session>();

  const server = https.createServer({ cert: o.tls.cert, key: o.tls.key }, async (req, res) => {
    const here = new URL(req.url ?? '/', url);
    const jar = cookies(req.headers.cookie);
    const session = jar[sidCookie] ? sessions.get(jar[sidCookie]!) : undefined;
    const send = (status: number, body: string, headers: Record<string, string | string[]> = {}) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(html(body));
    };
    const redirect = (to: string, headers: Record<string, string | string[]> = {}) => res.writeHead(302, { location: to, ...headers }).end();
    try {
      switch (here.pathname) {
        case '/login': {
          const verifier = oidc.randomPKCECodeVerifier();
          const state = oidc.randomState();
          const nonce = oidc.randomNonce();
          pending.set(state, { verifier, nonce });
          const to = oidc.buildAuthorizationUrl(config, {
            redirect_uri: `${url}/callback`,
            scope: o.scope,
            state,
            nonce,
            code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
            code_challenge_method: 'S256',
          });
          return redirect(to.href, { 'set-cookie': `${stateCookie}=${state}; Path=/; Secure; HttpOnly; SameSite=Lax` });
        }
        case '/callback': {
          if (here.searchParams.get('error')) return send(403, `<p id="result">denied: ${esc(here.searchParams.get('error')!)}</p>`);
          const state = here.searchParams.get('state') ?? '';
          const p = pending.get(state);
          if (!p || jar[stateCookie] !== state) return send(400, '<p id="result">bad state</p>');
          pending.delete(state);
          const tokens = await oidc.authorizationCodeGrant(config, here, { pkceCodeVerifier: p.verifier, expectedState: state, expectedNonce: p.nonce });
          // Offline: only the issuer's public key, no call to the issuer.
          const claims = await verify(tokens.id_token!, o.publicKeyPem, { issuer: o.issuer, audience: o.clientId });
          const sid = randomBytes(16).toString('base64url');
          sessions.set(sid, { claims, idToken: tokens.id_token!, accessToken: tokens.access_token, refreshToken: tokens.refresh_token });
          return redirect('/', { 'set-cookie': `${sidCookie}=${sid}; Path=/; Secure; HttpOnly; SameSite=Lax` });
        }
        case '/':
          return session
            ? send(200, `<p id="result">Hello ${esc(String(session.claims.preferred_username))}</p><p id="groups">${esc(JSON.stringify(session.claims.groups ?? []))}</p><p id="amr">${esc(JSON.stringify(session.claims.amr ?? []))}</p>`)
            : send(200, '<p id="result">Signed out</p>');
        case '/userinfo': {
          if (!session) return send(401, 'no session');
          const info = await oidc.fetchUserInfo(config, session.accessToken, String(session.claims.sub));
          return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info));
        }
        case '/refresh': {
          if (!session?.refreshToken) return send(400, '<p id="result">no refresh token</p>');
          const t = await oidc.refreshTokenGrant(config, session.refreshToken);
          const claims = await verify(t.id_token!, o.publicKeyPem, { issuer: o.issuer, audience: o.clientId });
          Object.assign(session, { claims, idToken: t.id_token!, accessToken: t.access_token, refreshToken: t.refresh_token });
          return send(200, `<p id="result">refreshed ${esc(String(claims.preferred_username))}</p>`);
        }
        case '/logout': {
          if (!session) return redirect('/');
          const to = oidc.buildEndSessionUrl(config, { id_token_hint: session.idToken, post_logout_redirect_uri: `${url}/bye` });
          return redirect(to.href);
        }
        case '/bye':
          if (jar[sidCookie]) sessions.delete(jar[sidCookie]!);
          return send(200, '<p id="result">Signed out</p>', { 'set-cookie': `${sidCookie}=; Path=/; Max-Age=0; Secure` });
        default:
          return send(404, 'not found');
      }
    } catch (err) {
      return send(500, `<p id="result">error: ${esc((err as Error).message)}</p>`);
    }
  });
  await new Promise<void>((r) => server.listen(o.port, '127.0.0.1', r));
  return {
    url,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await dispatcher.close();
    },
  };
}
