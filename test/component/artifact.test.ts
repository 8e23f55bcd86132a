// The self-contained artifact (scripts/build-artifact) runs with nothing from
// the repository or the system Node: bundle, addon and runtime only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { form } from './harness/issuer.js';
import { WrapperProcess } from './harness/wrapper-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-artifact-'));
const kiwi = path.join(root, 'opt/kiwi/bin/kiwi-id');
const bundle = path.join(root, 'opt/kiwi/lib/kiwi-id.mjs');
// No PATH, no HOME, cwd outside the repository: only the artifact's own files can be used.
const run = (args: string[]) => spawnSync(kiwi, args, { encoding: 'utf8', env: { PATH: '/nonexistent' }, cwd: root });

before(() => {
  const b = spawnSync('bash', ['scripts/build-artifact', root], { encoding: 'utf8' });
  assert.equal(b.status, 0, b.stderr);
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

test('layout: launcher, one bundle, the SQLite addon, the runtime, version and pins', () => {
  const kiwiDir = path.join(root, 'opt/kiwi');
  assert.deepEqual(fs.readdirSync(path.join(kiwiDir, 'lib')).sort(), ['better_sqlite3.node', 'kiwi-id.mjs']);
  assert.equal(fs.existsSync(path.join(kiwiDir, 'node/bin/node')), true);
  assert.equal(fs.readFileSync(path.join(kiwiDir, 'version'), 'utf8').trim(), JSON.parse(fs.readFileSync('package.json', 'utf8')).version);
  assert.equal(fs.readFileSync(path.join(kiwiDir, 'compatibility.toml'), 'utf8'), fs.readFileSync('compatibility.toml', 'utf8'));
  assert.equal(fs.existsSync(path.join(kiwiDir, 'licenses/kiwi-id-LICENSE')), true);
  // The bundled packages' legal comments, moved out of the bundle (next test).
  assert.match(fs.readFileSync(path.join(kiwiDir, 'licenses/bundled-npm-packages-LEGAL.txt'), 'utf8'), /license/i);
});

test('the bundle is ASCII-only: V8 keeps its whole source in the heap, one byte per character only then', () => {
  const bytes = fs.readFileSync(bundle);
  const at = bytes.findIndex((b) => b > 0x7f);
  assert.equal(at, -1, `non-ASCII byte at ${at}: ${bytes.subarray(Math.max(0, at - 40), at + 20).toString('utf8')}`);
});

test("the bundle has no Intl.ListFormat: its stand-in keeps ICU's locale data out of the process", () => {
  const source = fs.readFileSync(bundle, 'utf8');
  assert.equal(source.includes('Intl.ListFormat'), false);
  assert.match(source, /new EnglishListFormat\("en",\{type:"conjunction"\}\)/);
});

test('runs without the repository: version, init, check-config, state (native addon)', () => {
  const v = run(['version']);
  assert.equal(v.status, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).wrapper, JSON.parse(fs.readFileSync('package.json', 'utf8')).version);

  const dev = path.join(root, 'dev');
  const init = run(['init', '--dev', dev]);
  assert.equal(init.status, 3, init.stderr); // stops at the missing upstream, after the wrapper's own material
  assert.match(init.stdout, /created +jwt signing key pair/);
  const cfg = path.join(dev, 'config.toml');
  assert.match(fs.readFileSync(cfg, 'utf8'), new RegExp(`compatibility_file = "${root}/opt/kiwi/compatibility.toml"`));
  assert.equal(run(['-c', cfg, 'check-config']).status, 0);

  const stats = run(['-c', cfg, 'state', 'stats']);
  assert.equal(stats.status, 0, stats.stderr);
  assert.deepEqual(JSON.parse(stats.stdout), {});
  assert.equal(fs.existsSync(path.join(dev, 'data/state.db')), true);
});

test('the bundled wrapper runs: issuer + proxy + SQLite state; its JWTs verify with jwt-public.pem alone; SIGTERM exits 0', async () => {
  const dir = path.join(root, 'run');
  fs.mkdirSync(dir);
  // The scripted upstream is test scaffolding and needs the system node on PATH;
  // the wrapper itself runs on the artifact's own runtime.
  const w = new WrapperProcess(dir, [kiwi], { PATH: process.env.PATH });
  try {
    await w.start();
    assert.equal(w.cli('client', 'add', 'kiwi-mail', '--redirect-uri', 'https://mail.kiwi.test/cb').status, 0);
    const secret = w.addServiceAccount('svc');
    const token = async (extra: Record<string, string>) => {
      const t = await w.get('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc', client_secret: secret, ...extra }));
      assert.equal(t.status, 200, t.text);
      return JSON.parse(t.text).access_token as string;
    };
    const jwt = await token({ resource: 'https://mail.kiwi.test' });
    const claims = await verify(jwt, fs.readFileSync(path.join(dir, 'jwt-public.pem'), 'utf8'), { issuer: w.base, audience: 'https://mail.kiwi.test' });
    assert.equal(claims.client_id, 'svc');
    await token({}); // opaque: stored in SQLite
    // oidc-provider's error texts list names with Intl.ListFormat, which the bundle replaces (bundle/list-format.ts).
    const dupes = await w.get('/oauth2/token', { ...form({}), body: `grant_type=client_credentials&client_id=svc&client_secret=${encodeURIComponent(secret)}&scope=a&scope=b` });
    assert.deepEqual([dupes.status, JSON.parse(dupes.text)], [400, { error: 'invalid_request', error_description: "'scope' parameter must not be provided twice" }]);
    // Both are in SQLite: the opaque token, and the JWT's record (what introspection and revocation look up).
    assert.equal(JSON.parse(w.cli('state', 'stats').stdout).ClientCredentials, 2);
    assert.equal(await w.stop(), 0);
  } finally {
    await w.close();
  }
});
