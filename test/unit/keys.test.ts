import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, jwtVerify, importSPKI, calculateJwkThumbprint, type JWK } from 'jose';
import { generateSigningKeyPair, loadSigningKey, publicJwks, type GeneratedAlg } from '../../wrapper/src/crypto/keys.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-keys-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function paths() {
  const dir = path.join(root, `case-${++n}`);
  return { dir, priv: path.join(dir, 'secret', 'jwt.key'), pub: path.join(dir, 'public', 'jwt.pub') };
}

const mode = (f: string) => fs.statSync(f).mode & 0o777;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

test('generation writes PKCS#8 0600 private and SPKI 0644 public keys, private dir 0700', async () => {
  const { priv, pub } = paths();
  assert.deepEqual(await generateSigningKeyPair(priv, pub), { created: true });
  assert.equal(mode(priv), 0o600);
  assert.equal(mode(pub), 0o644);
  assert.equal(mode(path.dirname(priv)), 0o700);
  assert.match(fs.readFileSync(priv, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  assert.match(fs.readFileSync(pub, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
  assert.deepEqual(fs.readdirSync(path.dirname(priv)), ['jwt.key'], 'no temp files left behind');
  assert.equal((await loadSigningKey(priv, pub)).alg, 'ES256', 'ES256 is the default');
});

test('existing private dir keeps its mode', async () => {
  const { dir } = paths();
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  await generateSigningKeyPair(path.join(dir, 'k.pem'), path.join(dir, 'k.pub'));
  assert.equal(mode(dir), 0o755);
});

test('never overwrites: second call returns created:false and leaves both files unchanged', async () => {
  const { priv, pub } = paths();
  await generateSigningKeyPair(priv, pub);
  const before = [fs.readFileSync(priv, 'utf8'), fs.readFileSync(pub, 'utf8')];
  assert.deepEqual(await generateSigningKeyPair(priv, pub, 'RS256'), { created: false });
  assert.deepEqual([fs.readFileSync(priv, 'utf8'), fs.readFileSync(pub, 'utf8')], before);
});

test('half a pair is an error naming the missing file, and nothing is written', async () => {
  for (const missing of ['pub', 'priv'] as const) {
    const kept = missing === 'pub' ? 'priv' : 'pub';
    const p = paths();
    await generateSigningKeyPair(p.priv, p.pub);
    fs.rmSync(p[missing]);
    const keptBefore = fs.readFileSync(p[kept], 'utf8');
    await assert.rejects(generateSigningKeyPair(p.priv, p.pub), (e: Error) => e.message.startsWith(p[missing]));
    assert.equal(fs.existsSync(p[missing]), false);
    assert.equal(fs.readFileSync(p[kept], 'utf8'), keptBefore);
  }
});

test('unknown algorithm is refused', async () => {
  const { priv, pub } = paths();
  await assert.rejects(generateSigningKeyPair(priv, pub, 'HS256' as GeneratedAlg), /unsupported signing algorithm/);
  assert.equal(fs.existsSync(priv), false);
});

for (const [alg, kty, crv] of [
  ['ES256', 'EC', 'P-256'],
  ['EdDSA', 'OKP', 'Ed25519'],
  ['RS256', 'RSA', undefined],
] as const) {
  test(`${alg}: load derives alg, kid is the jose thumbprint and stable, JWT verifies with only the public PEM`, async () => {
    const { priv, pub } = paths();
    await generateSigningKeyPair(priv, pub, alg);
    const key = await loadSigningKey(priv, pub);
    assert.equal(key.alg, alg);
    assert.equal(key.publicJwk.kty, kty);
    assert.equal(key.publicJwk.crv, crv);
    if (alg === 'RS256') assert.equal(key.publicKey.asymmetricKeyDetails?.modulusLength, 3072);

    assert.equal(key.kid, await calculateJwkThumbprint(key.publicJwk, 'sha256'));
    assert.match(key.kid, /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await loadSigningKey(priv, pub)).kid, key.kid, 'kid stable across loads');

    for (const jwk of [key.publicJwk, key.privateJwk]) {
      assert.equal(jwk.kid, key.kid);
      assert.equal(jwk.alg, alg);
      assert.equal(jwk.use, 'sig');
    }
    assert.ok(key.privateJwk.d, 'private JWK carries the private scalar');
    assert.equal(key.publicPem, fs.readFileSync(pub, 'utf8'));

    const token = await new SignJWT({ sub: 'alice' })
      .setProtectedHeader({ alg: key.alg, kid: key.kid })
      .setIssuer('https://id.example.test')
      .setAudience('kiwi-mail')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(key.privateKey);
    const verifyKey = await importSPKI(fs.readFileSync(pub, 'utf8'), alg);
    const { payload, protectedHeader } = await jwtVerify(token, verifyKey, {
      issuer: 'https://id.example.test',
      audience: 'kiwi-mail',
      algorithms: [alg],
    });
    assert.equal(payload.sub, 'alice');
    assert.equal(protectedHeader.kid, key.kid);

    // The JWKS document alone verifies it as well, and holds no private members.
    const jwks = publicJwks(key);
    assert.equal(jwks.keys.length, 1);
    for (const m of PRIVATE_MEMBERS) assert.equal(m in jwks.keys[0]!, false, `JWKS must not contain "${m}"`);
    assert.deepEqual(JSON.parse(JSON.stringify(jwks)), jwks);
  });
}

/** Writes an EC key pair made outside Kiwi ID (as an operator might bring one). */
function writeExternalEcPair(namedCurve: string): { priv: string; pub: string } {
  const { dir } = paths();
  fs.mkdirSync(dir);
  const kp = generateKeyPairSync('ec', { namedCurve });
  const priv = path.join(dir, 'k.pem');
  const pub = path.join(dir, 'k.pub');
  fs.writeFileSync(priv, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  fs.writeFileSync(pub, kp.publicKey.export({ type: 'spki', format: 'pem' }));
  return { priv, pub };
}

test('loads an externally created P-384 key as ES384', async () => {
  const { priv, pub } = writeExternalEcPair('P-384');
  assert.equal((await loadSigningKey(priv, pub)).alg, 'ES384');
});

test('unsupported key types are refused', async () => {
  const { priv, pub } = writeExternalEcPair('secp256k1');
  await assert.rejects(loadSigningKey(priv, pub), /unsupported EC curve/);
});

test('mismatched public key is refused, naming both files', async () => {
  const a = paths();
  const b = paths();
  await generateSigningKeyPair(a.priv, a.pub);
  await generateSigningKeyPair(b.priv, b.pub);
  await assert.rejects(loadSigningKey(a.priv, b.pub), (e: Error) => {
    assert.ok(e.message.includes(a.priv) && e.message.includes(b.pub), e.message);
    assert.match(e.message, /mismatch/);
    return true;
  });
});

test('a private key in the public key file is refused', async () => {
  const { priv, pub } = paths();
  await generateSigningKeyPair(priv, pub);
  fs.copyFileSync(priv, pub);
  await assert.rejects(loadSigningKey(priv, pub), (e: Error) => e.message.startsWith(pub) && /PRIVATE/.test(e.message));
});

test('group- or other-accessible private key is refused with a message naming the file', async () => {
  const { priv, pub } = paths();
  await generateSigningKeyPair(priv, pub);
  for (const m of [0o640, 0o604, 0o620, 0o601]) {
    fs.chmodSync(priv, m);
    await assert.rejects(loadSigningKey(priv, pub), (e: Error) => {
      assert.ok(e.message.includes(priv), e.message);
      assert.match(e.message, /chmod 600/);
      return true;
    });
  }
  fs.chmodSync(priv, 0o400);
  assert.equal((await loadSigningKey(priv, pub)).alg, 'ES256');
});

test('missing or garbage key files are errors naming the file', async () => {
  const { dir, priv, pub } = paths();
  await assert.rejects(loadSigningKey(priv, pub), (e: Error) => e.message.startsWith(priv));
  await generateSigningKeyPair(priv, pub);
  await assert.rejects(loadSigningKey(priv, path.join(dir, 'nope.pub')), (e: Error) => e.message.startsWith(path.join(dir, 'nope.pub')));
  fs.writeFileSync(priv, 'not a key\n');
  await assert.rejects(loadSigningKey(priv, pub), (e: Error) => e.message.startsWith(priv));
});

test('publicJwks refuses a JWK with private members', () => {
  const leaky = { publicJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'secret', kid: 'k' } as JWK };
  assert.throws(() => publicJwks(leaky), /private member "d"/);
});
