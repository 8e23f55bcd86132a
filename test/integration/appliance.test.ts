// The appliance with the real Kanidm inside: `lxc/build-rootfs` makes the
// sheet's layout, the appliance boots it (first boot, then `kiwi-id run` as
// the service user) in its own network namespace at 10.10.20.10, and from
// 10.10.20.11 a person signs in to a KiwiStack service whose only trust in
// Kiwi ID is jwt-public.pem. Kanidm's own listener is not reachable from
// there; a second boot changes no key and loses no user; an upstream binary
// that does not match the pin is refused while the running one keeps serving.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Appliance, APP_IP, ISSUER, unavailable } from './harness/appliance.js';
import { UPSTREAM_PREFIX } from './harness/kiwi-node.js';
import { readPin } from '../../wrapper/src/upstream/pin.js';

const skip = unavailable();
const app = new Appliance();
const REDIRECT = 'https://mail.kiwistack.internal/callback';
const PASSWORD = `${randomBytes(12).toString('base64url')}-Kiwi!`;
let clientSecret = '';
let otpauth = '';
let service: { ca: string; publicKey: string };

before(async () => {
  if (skip) return;
  await app.build();
  await app.network();
  await app.boot();
  // All a KiwiStack service gets from Kiwi ID: the CA of its listener and jwt-public.pem.
  const dir = path.join(app.dir, 'service');
  fs.mkdirSync(dir);
  service = { ca: path.join(dir, 'ca.crt'), publicKey: path.join(dir, 'jwt-public.pem') };
  fs.copyFileSync(app.file('/etc/kiwi/tls/ca.crt'), service.ca);
  fs.copyFileSync(app.file('/etc/kiwi/jwt-public.pem'), service.publicKey);
});
after(() => app.close());

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/** An operator command in the appliance, failing the test with its output when it fails. */
async function operator(cmd: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await app.exec(cmd, { env });
  assert.equal(r.exitCode, 0, `${cmd.join(' ')}: ${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

async function signIn() {
  return app.service<{ claims?: Record<string, unknown>; error?: string }>({
    action: 'signin', clientId: 'kiwi-mail', clientSecret, redirectUri: REDIRECT, username: 'alice', password: PASSWORD, otpauth, ...service,
  });
}

test("build-rootfs lays out the sheet's tree, first boot completes it, and the wrapper and Kanidm run as the service user", { skip }, () => {
  const pin = readPin(path.join(app.rootfs, 'opt/kiwi/compatibility.toml'));
  for (const bin of ['kanidmd', 'kanidm']) {
    assert.equal(`sha256:${sha256(path.join(app.rootfs, 'opt/upstream/bin', bin))}`, pin.checksums[`bin/${bin}`], `/opt/upstream/bin/${bin} is the pinned build`);
  }
  // Kanidm's UI files where its release_linux build profile compiled in their path.
  assert.deepEqual(fs.readdirSync(path.join(app.rootfs, 'usr/share/kanidm/ui/hpkg')).sort(), fs.readdirSync(path.join(UPSTREAM_PREFIX, 'share/kanidm/ui/hpkg')).sort());
  assert.equal(fs.readFileSync(path.join(app.rootfs, 'opt/kiwi/version'), 'utf8').trim(), JSON.parse(fs.readFileSync('package.json', 'utf8')).version);
  assert.ok(fs.statSync(path.join(app.rootfs, 'opt/kiwi/bin/kiwi-id')).mode & 0o111);
  // After first boot, the rest of the sheet's layout, at the sheet's paths.
  for (const f of ['/opt/upstream/etc/server.toml', '/etc/kiwi/config.toml', '/etc/kiwi/jwt-private.pem', '/etc/kiwi/jwt-public.pem', '/var/lib/upstream/kanidm.db', '/var/log/kiwi/kiwi-id.log']) {
    assert.ok(fs.existsSync(app.file(f)), `${f} exists`);
  }
  const toml = fs.readFileSync(app.file('/opt/upstream/etc/server.toml'), 'utf8');
  assert.match(toml, /^bindaddress = "127\.0\.0\.1:8443"$/m);
  assert.match(toml, /^db_path = "\/var\/lib\/upstream\/kanidm\.db"$/m);
  assert.match(toml, /^origin = "https:\/\/id\.kiwistack\.internal:8443"$/m);
  const kiwi = Number(/^kiwi:x:(\d+):/m.exec(fs.readFileSync(app.file('/etc/passwd'), 'utf8'))?.[1]);
  assert.ok(kiwi > 0, 'sysusers created the kiwi user');
  const priv = fs.statSync(app.file('/etc/kiwi/jwt-private.pem'));
  assert.equal(priv.mode & 0o777, 0o600);
  assert.equal(priv.uid, kiwi);
  const admin = fs.statSync(app.file('/etc/kiwi/idm_admin.password'));
  assert.equal(admin.mode & 0o777, 0o600);
  assert.equal(admin.uid, 0, "the recovered idm_admin password stays root's");
  // The running processes: the wrapper and its kanidmd, both as kiwi, never root.
  const wrapper = app.child!.pid!;
  assert.equal(uidOf(wrapper), kiwi);
  const kanidmd = app.lines().filter((l) => l.msg === 'upstream started').at(-1)?.pid as number;
  assert.equal(uidOf(kanidmd), kiwi);
  // Kanidm, running as kiwi, finds its config and TLS files read-only to it and not its own.
  const warnings = app.lines().map((l) => String(l.upstream_line ?? '')).filter((l) => /may not be secure|owned by the current uid|'everyone' permission/.test(l));
  assert.deepEqual(warnings, []);
});

test("the loopback routes the wrapper reaches Kanidm by acknowledge at once (no 40 ms delayed-ACK stalls)", { skip }, async () => {
  // kiwi-id-loopback, as root at boot: every local route on lo, Kanidm's 127.0.0.1 among them, with quickack.
  const routes = (await operator(['ip', '-4', 'route', 'show', 'table', 'local', 'type', 'local', 'dev', 'lo'])).trim().split('\n');
  assert.ok(routes.some((r) => /^local 127\.0\.0\.1 /.test(r)), routes.join('\n'));
  for (const r of routes) assert.match(r, / quickack 1\b/, r);
  // Idempotent: a second run (a service restart) leaves them as they are.
  await operator(['/usr/lib/kiwi-id/loopback-quickack']);
  assert.deepEqual((await operator(['ip', '-4', 'route', 'show', 'table', 'local', 'type', 'local', 'dev', 'lo'])).trim().split('\n'), routes);
});

test('from 10.10.20.11 a person signs in through 10.10.20.10:8443 (Kanidm password + TOTP), and the service validates the JWT with jwt-public.pem alone', { skip }, async () => {
  // The operator, inside the appliance: register the service, create the person, hand out a reset link.
  const added = await operator(['kiwi-id', 'client', 'add', 'kiwi-mail', '--redirect-uri', REDIRECT]);
  clientSecret = /^client_secret: (\S+)$/m.exec(added)?.[1] ?? '';
  assert.ok(clientSecret, `client secret shown once: ${added}`);
  // Written by root, for the service user that reads it.
  assert.equal(fs.statSync(app.file('/var/lib/kiwi/clients.toml')).uid, fs.statSync(app.file('/var/lib/kiwi')).uid);
  const password = fs.readFileSync(app.file('/etc/kiwi/idm_admin.password'), 'utf8').trim();
  await operator(['kiwi-id', 'kanidm', 'login', '-D', 'idm_admin'], { KANIDM_PASSWORD: password });
  await operator(['kiwi-id', 'kanidm', 'person', 'create', 'alice', 'Alice Appliance', '-D', 'idm_admin']);
  const link = (await operator(['kiwi-id', 'reset-link', 'alice', '-D', 'idm_admin'])).split('\n')[0]!;
  assert.equal(new URL(link).origin, ISSUER);

  // The person, at 10.10.20.11: sets a password and a TOTP on Kanidm's reset page, through the wrapper.
  const enrolled = await app.service<{ otpauth?: string; error?: string }>({ action: 'enrol', resetUrl: link, password: PASSWORD, ca: service.ca });
  assert.ok(enrolled.otpauth, enrolled.error);
  otpauth = enrolled.otpauth;

  const r = await signIn();
  assert.ok(r.claims, r.error);
  assert.equal(r.claims.iss, ISSUER);
  assert.equal(r.claims.aud, 'kiwi-mail');
  assert.equal(r.claims.preferred_username, 'alice');
  // The request reached the wrapper from the service's address (request lines are written
  // after the response, and read from the wrapper's output as they arrive).
  await app.until('the token request logged from 10.10.20.11', async () =>
    app.lines().some((l) => l.msg === 'request' && l.remote === '10.10.20.11' && String(l.url).startsWith('/oauth2/token')), 30_000);
});

test("Kanidm's 127.0.0.1:8443 is not reachable from 10.10.20.11: only the wrapper is bound to the bridge address", { skip }, async () => {
  const ss = await operator(['ss', '-Hltn']);
  const listening = ss.trim().split('\n').map((l) => l.trim().split(/\s+/)[3]).sort();
  assert.deepEqual(listening, [`${APP_IP}:8443`, '127.0.0.1:8443']);
  const wrapper = await app.service<{ status?: number; text?: string }>({ action: 'probe', url: `https://${APP_IP}:8443/readyz`, ca: service.ca });
  assert.equal(wrapper.text?.trim(), 'ready', 'the bridge address is the wrapper (only it has /readyz)');
  const kanidm = await app.service<{ error?: string }>({ action: 'probe', url: 'https://127.0.0.1:8443/status', ca: service.ca });
  assert.equal(kanidm.error, 'ECONNREFUSED');
  // Kanidm's UI files come from the layout (the host's copy is hidden in the appliance).
  const css = await app.service<{ status?: number; text?: string }>({ action: 'probe', url: `https://${APP_IP}:8443/pkg/style.css`, ca: service.ca });
  assert.equal(css.status, 200);
  assert.equal(css.text, fs.readFileSync(path.join(app.rootfs, 'usr/share/kanidm/ui/hpkg/style.css'), 'utf8'));
});

test('a second boot changes no key, no certificate, no secret, and loses no user', { skip }, async () => {
  const kept = [
    '/etc/kiwi/jwt-private.pem', '/etc/kiwi/jwt-public.pem', '/etc/kiwi/tls/wrapper.crt', '/etc/kiwi/tls/wrapper.key', '/etc/kiwi/tls/ca.crt',
    '/etc/kiwi/idm_admin.password', '/etc/kiwi/admin.password', '/var/lib/kiwi/upstream-oauth2.secret', '/var/lib/kiwi/cookie-keys',
    '/opt/upstream/etc/server.toml', '/opt/upstream/etc/tls/chain.pem', '/opt/upstream/etc/tls/key.pem',
  ];
  const before = Object.fromEntries(kept.map((f) => [f, sha256(app.file(f))]));
  assert.equal(await app.stop(), 0, 'SIGTERM: clean stop');
  const from = app.out.length;
  await app.boot();
  const firstboot = app.out.slice(from).join('');
  assert.doesNotMatch(firstboot, /^created/m, firstboot);
  for (const f of kept) assert.equal(sha256(app.file(f)), before[f], `${f} unchanged`);
  const r = await signIn();
  assert.ok(r.claims, r.error);
  assert.equal(r.claims.preferred_username, 'alice');
});

test('upgrade path: an upstream binary that does not match the pin is refused with a clear error; nothing changes and the running Kanidm keeps serving', { skip }, async () => {
  const running = app.lines().filter((l) => l.msg === 'upstream started').at(-1)?.pid as number;
  const installed = sha256(app.file('/opt/upstream/bin/kanidmd'));
  const pinned = readPin(app.file('/opt/kiwi/compatibility.toml')).checksums['bin/kanidmd'];
  // A "new" Kanidm staged in the appliance: any build but the pinned one (here: one byte more).
  await operator(['sh', '-c', 'mkdir -p /var/tmp/kanidm-new/bin && cp /opt/upstream/bin/kanidm /opt/upstream/bin/kanidmd /var/tmp/kanidm-new/bin/ && printf x >> /var/tmp/kanidm-new/bin/kanidmd']);
  const other = `sha256:${sha256(app.file('/var/tmp/kanidm-new/bin/kanidmd'))}`;

  const refused = await app.exec(['kiwi-id', 'upstream', 'install', '/var/tmp/kanidm-new']);
  assert.equal(refused.exitCode, 1, refused.stdout);
  assert.equal(
    refused.stderr.trim(),
    `kiwi-id: upstream install: refused, nothing was changed (the running Kanidm keeps serving): /var/tmp/kanidm-new/bin/kanidmd does not match the pin of this Kiwi ID: expected ${pinned} (/opt/kiwi/compatibility.toml), got ${other}`,
  );
  assert.equal(sha256(app.file('/opt/upstream/bin/kanidmd')), installed, 'the installed binary is untouched');
  assert.ok(fs.existsSync(`/proc/${running}`), 'the running kanidmd was not stopped');
  const r = await signIn();
  assert.ok(r.claims, `still serving: ${r.error}`);

  // Placed by hand past the check, the wrong binary is named by `upstream verify`; the
  // running Kanidm still serves, and the pinned build goes back through `upstream install`.
  await operator(['sh', '-c', 'mkdir -p /var/tmp/kanidm-pinned/bin && cp /opt/upstream/bin/kanidm /opt/upstream/bin/kanidmd /var/tmp/kanidm-pinned/bin/ && install -m 0755 /var/tmp/kanidm-new/bin/kanidmd /opt/upstream/bin/kanidmd']);
  const verify = await app.exec(['kiwi-id', 'upstream', 'verify']);
  assert.equal(verify.exitCode, 1);
  assert.match(verify.stderr, new RegExp(`/opt/upstream/bin/kanidmd does not match the pin of this Kiwi ID: expected ${pinned} .* got ${other}`));
  assert.ok((await signIn()).claims, 'the running Kanidm keeps serving');
  assert.match(await operator(['kiwi-id', 'upstream', 'install', '/var/tmp/kanidm-pinned']), /^installed \/opt\/upstream\/bin\/kanidmd$/m);
  assert.match(await operator(['kiwi-id', 'upstream', 'verify']), /^verified \/opt\/upstream\/bin\/kanidmd /m);
  assert.ok(fs.existsSync(`/proc/${running}`), 'the same kanidmd served throughout');
});
