// Kanidm through the wrapper's listen_addr, held against Kanidm used
// directly on its loopback listener: its UI (login page, static files,
// credential reset), its /v1 API, its session cookies, its CSRF guard and its
// origin behave the same, and its audit log names the client the wrapper saw,
// never an address the client claimed.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { Agent, Client, request } from 'undici';
import { UPSTREAM_IDLE_MS } from '../../wrapper/src/upstream/tls.js';
import { HttpBrowser } from './harness/http-browser.js';
import { enrolAtResetPage, KanidmApi, signInAtKanidmUi } from './harness/kanidm-api.js';
import { KiwiNode, UPSTREAM_PREFIX } from './harness/kiwi-node.js';

const node = new KiwiNode({ name: 'proxy' });
let direct: Agent;
let api: KanidmApi;
let admin: string; // idm_admin bearer token (privileged), obtained through the wrapper
// One connection straight to Kanidm, opened first and used again by the last
// test: its idle time overlaps the other tests' (see that test).
let idleProbe: { client: Client; connects: number; idleSince: number } | undefined;
before(async () => {
  await node.init();
  await node.start();
  const ca = fs.readFileSync(node.upstreamCaPath);
  direct = new Agent({ connect: { ca } });
  const client = new Client(node.upstreamUrl, { connect: { ca }, keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 });
  idleProbe = { client, connects: 0, idleSince: 0 };
  client.on('connect', () => idleProbe!.connects++);
  await (await client.request({ path: '/status', method: 'GET' })).body.text();
  idleProbe.idleSince = Date.now();
  api = new KanidmApi(node.base, node.dispatcher!);
  admin = await api.login('idm_admin', { password: node.password('idm_admin') }, { privileged: true });
});
after(async () => {
  await idleProbe?.client.destroy();
  await direct?.close();
  await node.close();
});

/** GET through the wrapper and straight from Kanidm. */
async function both(path: string, headers: Record<string, string> = {}) {
  const get = async (base: string, dispatcher: Agent) => {
    const res = await request(base + path, { dispatcher, headers });
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
  };
  return { proxied: await get(node.base, node.dispatcher!), upstream: await get(node.upstreamUrl, direct) };
}

// Per-response or per-hop headers; everything else Kanidm sends must arrive unchanged.
const VARYING = new Set(['date', 'x-kanidm-opid', 'x-request-id', 'connection', 'keep-alive', 'set-cookie']);
// Values compared without surrounding whitespace, which is not part of a field value (RFC 9110 §5.5).
const endToEnd = (h: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(h).filter(([k]) => !VARYING.has(k)).sort().map(([k, v]) => [k, String(v).trim()]));

test("Kanidm's login page and every static file it names come through byte for byte, with Kanidm's own headers and SRI hashes intact", async () => {
  const page = await both('/ui/login');
  assert.equal(page.proxied.status, 200);
  assert.equal(page.upstream.status, 200);
  assert.deepEqual(endToEnd(page.proxied.headers), endToEnd(page.upstream.headers), 'security headers (CSP, HSTS, ...) as Kanidm sent them');
  const html = page.proxied.body.toString();
  assert.match(html, /<form id="login" action="\/ui\/login\/begin"/);
  // Every /pkg/ file the page loads, with the integrity hash the browser will enforce.
  const refs = new Map<string, string | undefined>();
  for (const m of html.matchAll(/(?:href|src)="(\/pkg\/[^"]+)"(?:\s+integrity="([^"]+)")?/g)) refs.set(m[1]!, m[2]);
  assert.ok(refs.size >= 5, `expected the page to load its static files, found ${[...refs.keys()]}`);
  assert.ok([...refs.values()].some(Boolean), 'some files carry an SRI hash');
  for (const [path, integrity] of refs) {
    const f = await both(path);
    assert.equal(f.proxied.status, 200, path);
    assert.equal(f.upstream.status, 200, path);
    assert.ok(f.proxied.body.equals(f.upstream.body), `${path}: body differs from Kanidm's`);
    assert.deepEqual(endToEnd(f.proxied.headers), endToEnd(f.upstream.headers), `${path}: headers`);
    if (integrity) {
      const [alg, want] = integrity.split(/-(.*)/s) as [string, string];
      assert.equal(createHash(alg).update(f.proxied.body).digest('base64'), want, `${path}: SRI ${alg}`);
    }
  }
  // Compressed, as a browser asks for it: the same bytes once decoded.
  const css = [...refs.keys()].find((p) => p.includes('.css'))!;
  const gz = await both(css, { 'accept-encoding': 'gzip, br' });
  assert.equal(gz.proxied.headers['content-encoding'], gz.upstream.headers['content-encoding']);
});

test('/v1 API: idm_admin signs in, creates a person and reads it back through listen_addr; Kanidm itself holds the same entry', async () => {
  await api.createPerson(admin, 'proxy_alice', 'Alice via proxy');
  const got = await api.getPerson(admin, 'proxy_alice');
  assert.deepEqual(got?.attrs.displayname, ['Alice via proxy']);
  const upstream = new KanidmApi(node.upstreamUrl, direct);
  assert.deepEqual((await upstream.getPerson(admin, 'proxy_alice'))?.attrs.uuid, got?.attrs.uuid);
  // Kanidm's own errors pass through as Kanidm wrote them.
  const err = await request(`${node.base}/v1/person/proxy_nobody`, { dispatcher: node.dispatcher, headers: { authorization: `Bearer ${admin}` } });
  const errDirect = await request(`${node.upstreamUrl}/v1/person/proxy_nobody`, { dispatcher: direct, headers: { authorization: `Bearer ${admin}` } });
  assert.equal(err.statusCode, errDirect.statusCode);
  assert.equal(await err.body.text(), await errDirect.body.text());
  const anon = await request(`${node.base}/v1/person`, { dispatcher: node.dispatcher });
  assert.equal(anon.statusCode, 401);
  await anon.body.dump();
});

/** A cookie as the browser's jar holds it for the public origin. */
async function jarCookie(browser: HttpBrowser, name: string) {
  return (await browser.jar.getCookies(node.base)).find((c) => c.key === name);
}

test("credential reset through the wrapper: `kiwi-id reset-link` opens Kanidm's reset page at the public origin, the person sets a password and a TOTP there, commits, and signs in", async () => {
  await api.createPerson(admin, 'proxy_carol', 'Carol Reset');
  await node.loginIdmAdmin();
  const link = await node.kiwi(['reset-link', 'proxy_carol', '-D', 'idm_admin']);
  assert.equal(link.exitCode, 0, link.stderr);
  const resetUrl = new URL(link.stdout.split('\n')[0]!);
  assert.equal(resetUrl.origin, node.base, 'the link is on the public origin');
  assert.equal(resetUrl.pathname, '/ui/reset');
  const browser = new HttpBrowser(node.dispatcher!, [node.base]);
  const page = await browser.go(resetUrl);
  assert.equal(page.status, 200, page.text.slice(0, 500));
  assert.match(page.text, /hx-post="\/ui\/reset\/add_password"/);
  // The update session: a Strict, Secure, HttpOnly cookie for the public name.
  const cu = await jarCookie(browser, 'cu-session-token');
  assert.ok(cu, 'cu-session-token cookie');
  assert.equal(cu.sameSite, 'strict');
  assert.equal(cu.secure, true);
  assert.equal(cu.httpOnly, true);
  assert.equal(cu.domain, 'localhost');

  // Kanidm's CSRF guard: its partials answer only htmx requests. The same
  // refusal through the wrapper as from Kanidm directly.
  const password = `proxy-carol-${randomInt(1e9)}-Pass!`;
  const form = { new_password: password, new_password_check: password };
  const unguarded = await browser.fetch(`${node.base}/ui/reset/add_password`, { form });
  const unguardedDirect = await new HttpBrowser(direct, [node.upstreamUrl]).fetch(`${node.upstreamUrl}/ui/reset/add_password`, { form });
  assert.notEqual(unguarded.status, 200, 'a non-htmx POST is not accepted');
  assert.equal(unguarded.status, unguardedDirect.status);
  assert.equal(unguarded.headers.location, unguardedDirect.headers.location);

  const totp = await enrolAtResetPage(browser, node.base, password);

  // Carol now signs in through the wrapper with what she set on that page.
  const bearer = await api.login('proxy_carol', { password, totp });
  const self = await api.call<{ youare: { attrs: Record<string, string[]> } }>('GET', '/v1/self', { token: bearer });
  assert.deepEqual(self.data.youare.attrs.name, ['proxy_carol']);
});

test("Kanidm's UI sign-in through the wrapper: its session cookie is bound to the public name and opens the UI; without it Kanidm refuses, as it does directly", async () => {
  await api.createPerson(admin, 'proxy_dave', 'Dave UI');
  const creds = await api.setPasswordAndTotp(admin, 'proxy_dave', `proxy-dave-${randomInt(1e9)}-Pass!`);
  const browser = new HttpBrowser(node.dispatcher!, [node.base]);
  const landed = await signInAtKanidmUi(browser, node.base, 'proxy_dave', creds);
  assert.equal(landed.url.pathname, '/ui/apps');
  assert.equal(landed.status, 200);
  const bearer = await jarCookie(browser, 'bearer');
  assert.ok(bearer, 'Kanidm set its bearer cookie');
  assert.equal(bearer.domain, 'localhost');
  assert.equal(bearer.secure, true);
  assert.equal(bearer.httpOnly, true);
  assert.equal(bearer.sameSite, 'lax');
  assert.equal(bearer.path, '/');

  const profile = await browser.go(`${node.base}/ui/profile`);
  assert.equal(profile.status, 200);
  assert.match(profile.text, /proxy_dave/);
  // Without the cookie: Kanidm's refusal, the same as from Kanidm directly.
  const refused = await new HttpBrowser(node.dispatcher!, [node.base]).fetch(`${node.base}/ui/profile`);
  const refusedDirect = await new HttpBrowser(direct, [node.upstreamUrl]).fetch(`${node.upstreamUrl}/ui/profile`);
  assert.equal(refused.status, 401);
  assert.equal(refused.status, refusedDirect.status);
  assert.doesNotMatch(refused.text, /proxy_dave/);
});

test("Kanidm's origin is the public issuer: its OAuth2 discovery for Kiwi ID names the wrapper's origin, through the wrapper and directly alike", async () => {
  const path = '/oauth2/openid/kiwi-id/.well-known/openid-configuration';
  const d = await both(path);
  assert.equal(d.proxied.status, 200);
  const proxied = JSON.parse(d.proxied.body.toString());
  const upstream = JSON.parse(d.upstream.body.toString());
  assert.equal(proxied.issuer, `${node.base}/oauth2/openid/kiwi-id`);
  assert.deepEqual(proxied, upstream);
  assert.equal(new URL(proxied.authorization_endpoint).origin, node.base);
});

test("Kanidm's audit log names the address the wrapper saw, never one the client claimed", async () => {
  // A client on another loopback address, claiming to be someone else in every header there is.
  const clientIp = `127.0.${randomInt(1, 255)}.${randomInt(2, 255)}`;
  const claimant = new Agent({ localAddress: clientIp, connect: { ca: fs.readFileSync(node.caPath) } });
  try {
    const res = await request(`${node.base}/v1/auth`, {
      dispatcher: claimant,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-forwarded-for': '203.0.113.7',
        forwarded: 'for=203.0.113.8',
        'x-real-ip': '203.0.113.9',
      },
      body: JSON.stringify({ step: { init2: { username: 'proxy_alice', issue: 'token', privileged: false } } }),
    });
    await res.body.dump();
    const opid = String(res.headers['x-kanidm-opid']);
    assert.match(opid, /^[0-9a-f-]{36}$/);
    let line: string | undefined;
    await node.until(`Kanidm's request log for ${opid}`, async () => {
      line = node.lines().map((l) => String(l.upstream_line ?? '')).find((l) => l.startsWith(opid) && /uri: \/v1\/auth/.test(l));
      return line !== undefined;
    }, 10_000);
    assert.match(line!, new RegExp(`client_address: "${clientIp.replaceAll('.', '\\.')}"`), line);
    assert.doesNotMatch(line!, /203\.0\.113/);
    // And the wrapper's own request log agrees.
    await node.until('the wrapper request log line for that client', async () =>
      node.lines().some((l) => l.msg === 'request' && l.url === '/v1/auth' && String(l.remote).endsWith(clientIp)), 10_000);
  } finally {
    await claimant.close();
  }
});

test("`kiwi-id kanidm` keeps this instance's login tokens apart: logins to other Kanidms in the user's token cache do not make `-D idm_admin` ambiguous", async () => {
  await node.loginIdmAdmin();
  const ownDir = path.join(node.cliHome, '.cache/kiwi-id/kanidm-tokens');
  const own = fs.readdirSync(ownDir);
  assert.equal(own.length, 1, 'one token file for this config');
  assert.equal(fs.statSync(path.join(ownDir, own[0]!)).mode & 0o777, 0o600);
  const store = JSON.parse(fs.readFileSync(path.join(ownDir, own[0]!), 'utf8'));
  const tokens = store.instances[''].tokens as Record<string, string>;
  assert.deepEqual(Object.keys(tokens).map((spn) => spn.split('@')[0]), ['idm_admin']);

  // Kanidm's default cache of the same user holds idm_admin of two other domains,
  // as logging in to two other Kanidms leaves it.
  const token = Object.values(tokens)[0]!;
  store.instances[''].tokens = { 'idm_admin@one.example': token, 'idm_admin@two.example': token };
  fs.writeFileSync(path.join(node.cliHome, '.cache/kanidm_tokens'), JSON.stringify(store), { mode: 0o600 });
  // Control: Kanidm's CLI on that cache cannot tell which idm_admin is meant.
  const bare = await execa(path.join(UPSTREAM_PREFIX, 'bin/kanidm'), ['person', 'list', '-D', 'idm_admin'], {
    env: { HOME: node.cliHome, KANIDM_URL: node.upstreamUrl, KANIDM_CA_PATH: node.upstreamCaPath },
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  assert.notEqual(bare.exitCode, 0);
  assert.match(bare.stderr + bare.stdout, /Multiple authentication tokens/);

  const listed = await node.kanidm(['person', 'list']);
  assert.equal(listed.exitCode, 0, listed.stderr);
});

// Last in this file: by now the probe has been idle through the tests above.
test("Kanidm keeps an idle connection open longer than the wrapper's pool keeps one (so pooled requests never meet Kanidm's idle close)", async () => {
  const probe = idleProbe!;
  // The idle time is what is under test; only the part the tests above did not use up is waited here.
  const idleFor = UPSTREAM_IDLE_MS + 2_000;
  const left = probe.idleSince + idleFor - Date.now();
  if (left > 0) await new Promise((r) => setTimeout(r, left));
  const res = await probe.client.request({ path: '/status', method: 'GET' });
  assert.equal(res.statusCode, 200);
  await res.body.text();
  assert.equal(probe.connects, 1, `Kanidm closed a connection idle for ${idleFor / 1000} s; the pool's UPSTREAM_IDLE_MS must be below Kanidm's idle close`);
});
