// OIDC Back-Channel Logout 1.0: services registered with a
// backchannel_logout_uri get a signed logout token when the user's Kiwi ID
// session ends — RP-initiated logout, admin revocation, expiry. The receiving
// service (harness/logout-receiver.ts) verifies each token with jose against
// the issuer's JWKS, as a real relying party does. Delivery is retried with
// backoff, logged, and never holds up the logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { request } from 'undici';
import { revokeSessions } from '../../wrapper/src/oidc/logout/session-watch.js';
import { localCertificate } from './harness/certs.js';
import { IssuerHarness } from './harness/issuer.js';
import { LogoutReceiver } from './harness/logout-receiver.js';
import { ScriptedLogin } from './harness/scripted-login.js';
import type { Revalidation } from '../../wrapper/src/oidc/login/method.js';

/** The scripted login, plus the source's answer to "is this person still valid?" (Kanidm's refresh check in production). */
class RevalidatingLogin extends ScriptedLogin {
  invalid = new Set<string>();
  async revalidate(sub: string): Promise<Revalidation> {
    return this.invalid.has(sub) ? { status: 'invalid', reason: 'account disabled' } : { status: 'fresh' };
  }
}
import { authorize, eventually, logout, signIn } from './harness/sign-in.js';

let login!: RevalidatingLogin;
const h = new IssuerHarness((self) => (login = new RevalidatingLogin(self)));
// Sessions that end on their own after 3 s, checked every 100 ms.
const expiring = new IssuerHarness((self) => new ScriptedLogin(self), 'ES256', { ttl: { session_ttl: 3 }, sessionCheckIntervalMs: 100 });
let rp: LogoutReceiver;
let rpExpiring: LogoutReceiver;
// A service whose certificate the issuer does not trust.
let untrusted: LogoutReceiver;

const MAIL_CB = 'https://mail.kiwi.test/callback';
const CHAT_CB = 'https://chat.kiwi.test/cb';
const logLines = () => h.logLines.map((l) => JSON.parse(l) as Record<string, unknown>);

before(async () => {
  await Promise.all([h.start(), expiring.start()]);
  // The services use certificates from the CA the issuer's back-channel client trusts.
  rp = new LogoutReceiver(h.tls, () => h.issuer, h.dispatcher);
  rpExpiring = new LogoutReceiver(expiring.tls, () => expiring.issuer, expiring.dispatcher);
  untrusted = new LogoutReceiver(localCertificate(path.join(h.root, 'other-ca'), 'svc'), () => h.issuer, h.dispatcher);
  await Promise.all([rp.start(), rpExpiring.start(), untrusted.start()]);
  h.register({ client_id: 'kiwi-mail', redirect_uris: [MAIL_CB], post_logout_redirect_uris: ['https://mail.kiwi.test/bye'], backchannel_logout_uri: rp.uri('/kiwi-mail/backchannel') });
  h.register({ client_id: 'kiwi-chat', redirect_uris: [CHAT_CB], backchannel_logout_uri: rp.uri('/kiwi-chat/backchannel') });
  h.register({ client_id: 'kiwi-wiki', redirect_uris: ['https://wiki.kiwi.test/cb'] });
  h.register({ client_id: 'kiwi-bad-tls', redirect_uris: ['https://bad.kiwi.test/cb'], backchannel_logout_uri: untrusted.uri('/kiwi-bad-tls/backchannel') });
  expiring.register({ client_id: 'kiwi-mail', redirect_uris: [MAIL_CB], backchannel_logout_uri: rpExpiring.uri('/kiwi-mail/backchannel') });
});
after(async () => {
  await h.close();
  await expiring.close();
  await Promise.all([rp.close(), rpExpiring.close(), untrusted.close()]);
});

const rpConfig = (x: IssuerHarness, id: string) => x.rp(id, oidc.ClientSecretBasic(x.secrets[id]));
/** Resolves (for `eventually`) when `r` has accepted a logout token for `sid` at `p`. */
const tokensFor = (r: LogoutReceiver, p: string, sid: unknown) => async () => {
  const found = r.accepted(p).filter((c) => c.sid === sid);
  return found.length ? found : undefined;
};
const idClaims = (idToken: string) => JSON.parse(Buffer.from(idToken.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

test('discovery advertises back-channel logout with sid; every id_token carries sid', async () => {
  const d = JSON.parse((await h.http('/.well-known/openid-configuration')).text);
  assert.equal(d.backchannel_logout_supported, true);
  assert.equal(d.backchannel_logout_session_supported, true);
  // Also for a service without a back-channel URI.
  const wiki = await rpConfig(h, 'kiwi-wiki');
  const { tokens } = await signIn(h, wiki, { redirect_uri: 'https://wiki.kiwi.test/cb' });
  assert.match(String(idClaims(tokens.id_token!).sid), /^[\w-]{10,}$/);
});

test('RP-initiated logout: each service of the session gets a verified logout token with its sid; a slow service does not hold up the logout', async () => {
  const mail = await rpConfig(h, 'kiwi-mail');
  const chat = await rpConfig(h, 'kiwi-chat');
  const { tokens: mailTokens, browser } = await signIn(h, mail, { redirect_uri: MAIL_CB });
  const { tokens: chatTokens } = await signIn(h, chat, { redirect_uri: CHAT_CB }, {}, browser);
  const mailSid = idClaims(mailTokens.id_token!).sid;
  const chatSid = idClaims(chatTokens.id_token!).sid;

  // kiwi-chat's endpoint hangs until the logout has completed in the browser.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  rp.answer = async (p) => {
    if (p === '/kiwi-chat/backchannel') await released;
    return 200;
  };
  try {
    const done = await logout(browser, mail, mailTokens.id_token!, 'https://mail.kiwi.test/bye');
    assert.equal(done.url.href.startsWith('https://mail.kiwi.test/bye'), true, 'logout finished while a service was still answering');
    assert.equal(rp.accepted('/kiwi-chat/backchannel').filter((c) => c.sid === chatSid).length, 0);
  } finally {
    release();
  }
  const [mailLogout] = await eventually('kiwi-mail logout token', tokensFor(rp, '/kiwi-mail/backchannel', mailSid));
  const [chatLogout] = await eventually('kiwi-chat logout token', tokensFor(rp, '/kiwi-chat/backchannel', chatSid));
  assert.equal(mailLogout!.sub, 'u-alice');
  assert.equal(mailLogout!.aud, 'kiwi-mail');
  assert.equal(chatLogout!.sub, 'u-alice');
  assert.equal(chatLogout!.aud, 'kiwi-chat');
  rp.answer = () => 200;
});

test('the receiving service\'s signature check is real: a logout token not signed by the issuer is refused', async () => {
  const { privateKey } = await generateKeyPair('ES256');
  const forged = await new SignJWT({ sub: 'u-alice', sid: 'x', events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, jti: 'f1' })
    .setProtectedHeader({ alg: 'ES256', typ: 'logout+jwt', kid: h.key.kid })
    .setIssuer(h.issuer).setAudience('kiwi-mail').setIssuedAt().setExpirationTime('2m')
    .sign(privateKey);
  const res = await request(rp.uri('/kiwi-mail/backchannel'), {
    method: 'POST', dispatcher: h.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: forged }).toString(),
  });
  await res.body.dump();
  assert.equal(res.statusCode, 400);
  assert.match(rp.received.at(-1)!.error ?? '', /signature/);
});

test('a failing service is retried with backoff until it answers, and every failure is logged', async () => {
  const mail = await rpConfig(h, 'kiwi-mail');
  const { tokens, browser } = await signIn(h, mail, { redirect_uri: MAIL_CB });
  const sid = idClaims(tokens.id_token!).sid;
  let calls = 0;
  const deliveredLines = () => logLines().filter((l) => l.msg === 'back-channel logout delivered' && l.client_id === 'kiwi-mail');
  const deliveredBefore = deliveredLines().length;
  rp.answer = (p) => (p === '/kiwi-mail/backchannel' && ++calls <= 2 ? 503 : 200);
  try {
    await logout(browser, mail, tokens.id_token!);
    await eventually('delivery after two failures', async () => rp.accepted('/kiwi-mail/backchannel').some((c) => c.sid === sid));
    // The service has answered; the issuer logs the delivery once that answer reaches it.
    await eventually('the delivery logged', async () => deliveredLines().length > deliveredBefore);
  } finally {
    rp.answer = () => 200;
  }
  const failures = logLines().filter((l) => l.msg === 'back-channel logout delivery failed' && l.client_id === 'kiwi-mail' && l.status === 503);
  assert.deepEqual(failures.slice(-2).map((l) => l.attempt), [1, 2]);
  assert.deepEqual(deliveredLines().slice(deliveredBefore).map((l) => l.attempt), [3]);
  assert.ok((h.events['backchannel.delivered'] ?? 0) >= 1);
});

test('TLS is verified: a service with an untrusted certificate gets nothing; the attempts are logged and given up; logout is unaffected', async () => {
  const bad = await rpConfig(h, 'kiwi-bad-tls');
  const { tokens, browser } = await signIn(h, bad, { redirect_uri: 'https://bad.kiwi.test/cb' });
  const done = await logout(browser, bad, tokens.id_token!);
  assert.equal(done.status, 200, 'the signed-out page');
  const givenUp = await eventually('the delivery to be given up', async () =>
    logLines().find((l) => l.msg?.toString().startsWith('back-channel logout given up') && l.client_id === 'kiwi-bad-tls'));
  assert.match(String(givenUp.last_problem), /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|certificate/i);
  assert.equal(untrusted.received.length, 0, 'no request body ever reached the untrusted service');
  const attempts = logLines().filter((l) => l.msg === 'back-channel logout delivery failed' && l.client_id === 'kiwi-bad-tls');
  assert.equal(attempts.length, 4, 'max_attempts (4 in this harness)');
  assert.ok((h.events['backchannel.failed'] ?? 0) >= 1);
});

test('a service that rejects the token (4xx) is not retried', async () => {
  const chat = await rpConfig(h, 'kiwi-chat');
  const { tokens, browser } = await signIn(h, chat, { redirect_uri: CHAT_CB });
  const sid = idClaims(tokens.id_token!).sid;
  rp.answer = () => 400;
  try {
    await logout(browser, chat, tokens.id_token!);
    await eventually('the delivery to be given up', async () => logLines().some((l) => l.msg?.toString().startsWith('back-channel logout given up') && l.client_id === 'kiwi-chat'));
  } finally {
    rp.answer = () => 200;
  }
  assert.equal(rp.received.filter((r) => r.path === '/kiwi-chat/backchannel' && r.claims?.sid === sid).length, 1);
});

test('admin revocation: the user\'s sessions end, their services are told, and their refresh tokens stop working', async () => {
  login.user = { ...login.user, sub: 'u-bob', preferred_username: 'bob' };
  try {
    const mail = await rpConfig(h, 'kiwi-mail');
    const { tokens } = await signIn(h, mail, { redirect_uri: MAIL_CB });
    const sid = idClaims(tokens.id_token!).sid;
    const ended = await revokeSessions(h.store, new Set(['u-bob']));
    assert.equal(ended.length, 1);
    assert.deepEqual(ended[0]!.clients, ['kiwi-mail']);
    // The running issuer notices at its next session check.
    const [claims] = await eventually('logout token after admin revocation', tokensFor(rp, '/kiwi-mail/backchannel', sid));
    assert.equal(claims!.sub, 'u-bob');
    await assert.rejects(oidc.refreshTokenGrant(mail, tokens.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
    // Logged once the service's answer reaches the issuer (after the service recorded the token).
    await eventually('the delivery logged', async () => logLines().some((l) => l.msg === 'back-channel logout delivered' && l.reason === 'admin'));
    assert.deepEqual(await revokeSessions(h.store, new Set(['u-bob'])), [], 'nothing left to revoke');
  } finally {
    login.user = { ...login.user, sub: 'u-alice', preferred_username: 'alice' };
  }
});

test('a session that stops being the person\'s (account invalid at the source): its services are told at once', async () => {
  login.user = { ...login.user, sub: 'u-carol', preferred_username: 'carol' };
  try {
    const mail = await rpConfig(h, 'kiwi-mail');
    const chat = await rpConfig(h, 'kiwi-chat');
    const { tokens, browser } = await signIn(h, mail, { redirect_uri: MAIL_CB });
    const sid = idClaims(tokens.id_token!).sid;
    // Carol is disabled at Kanidm; her next authorization in this browser finds out.
    login.invalid.add('u-carol');
    const refused = await authorize(browser, chat, { redirect_uri: CHAT_CB });
    assert.equal(refused.landed.searchParams.get('error'), 'access_denied');
    const [claims] = await eventually('logout token for the invalidated session', tokensFor(rp, '/kiwi-mail/backchannel', sid));
    assert.equal(claims!.sub, 'u-carol');
    await eventually('the delivery logged', async () => logLines().some((l) => l.msg === 'back-channel logout delivered' && l.reason === 'invalidated' && l.client_id === 'kiwi-mail'));
  } finally {
    login.invalid.clear();
    login.user = { ...login.user, sub: 'u-alice', preferred_username: 'alice' };
  }
});

test('session expiry: when the Kiwi ID session ends on its own, its services are told', async () => {
  const mail = await rpConfig(expiring, 'kiwi-mail');
  const { tokens } = await signIn(expiring, mail, { redirect_uri: MAIL_CB });
  const { sid, iat } = idClaims(tokens.id_token!) as { sid: string; iat: number };
  const [claims] = await eventually('logout token at session expiry', tokensFor(rpExpiring, '/kiwi-mail/backchannel', sid));
  assert.ok(claims!.iat! >= iat, 'sent after the sign-in');
  // The reason logged says why the session ended.
  await eventually('the delivery logged with its reason', async () => expiring.logLines.some((l) => /"reason":"expired"/.test(l) && /back-channel logout delivered/.test(l)));
});

test('no logout token, secret or code appears in the log', () => {
  const all = h.logLines.join('') + expiring.logLines.join('');
  assert.doesNotMatch(all, /eyJ[\w-]{10,}\.[\w-]{10,}\./, 'a JWT in the log');
  for (const s of Object.values(h.secrets)) assert.equal(all.includes(s), false);
});
