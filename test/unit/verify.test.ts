import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { verify, algorithmFor, TokenError } from '../../wrapper/src/crypto/verify.js';

const ISS = 'https://id.example.com';
const AUD = 'kiwi-mail';
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pubPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });

function sign(claims: Record<string, unknown> = {}, key = ec.privateKey, alg = 'ES256') {
  return new SignJWT({ sub: 'alice', ...claims })
    .setProtectedHeader({ alg, kid: 'k1' })
    .setIssuer((claims.iss as string) ?? ISS)
    .setAudience((claims.aud as string) ?? AUD)
    .setIssuedAt()
    .setExpirationTime((claims.exp as number) ?? '5m')
    .sign(key);
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function rejects(p: Promise<unknown>, code: RegExp) {
  await assert.rejects(p, (e: unknown) => e instanceof TokenError && code.test(e.code));
}

test('valid ES256 token verifies offline with the public key PEM alone', async () => {
  const claims = await verify(await sign({ groups: ['staff'] }), pubPem, { issuer: ISS, audience: AUD });
  assert.equal(claims.sub, 'alice');
  assert.deepEqual(claims.groups, ['staff']);
});

test('algorithm follows the key type', () => {
  assert.equal(algorithmFor(ec.publicKey), 'ES256');
  assert.equal(algorithmFor(generateKeyPairSync('ed25519').publicKey), 'EdDSA');
  assert.equal(algorithmFor(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey), 'RS256');
});

test('EdDSA and RS256 keys verify their own tokens', async () => {
  for (const [type, alg] of [['ed25519', 'EdDSA'], ['rsa', 'RS256']] as const) {
    const kp = type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
    const pem = kp.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const t = await sign({}, kp.privateKey, alg);
    assert.equal((await verify(t, pem, { issuer: ISS, audience: AUD })).sub, 'alice');
  }
});

test('alg none is rejected', async () => {
  const now = Math.floor(Date.now() / 1000);
  const t = `${b64({ alg: 'none' })}.${b64({ sub: 'mallory', iss: ISS, aud: AUD, iat: now, exp: now + 300 })}.`;
  await rejects(verify(t, pubPem, { issuer: ISS, audience: AUD }), /ERR_J/);
});

test('HS256 signed with the public key PEM as secret is rejected', async () => {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256' })}.${b64({ sub: 'mallory', iss: ISS, aud: AUD, iat: now, exp: now + 300 })}`;
  const sig = createHmac('sha256', pubPem).update(input).digest('base64url');
  await rejects(verify(`${input}.${sig}`, pubPem, { issuer: ISS, audience: AUD }), /ERR_J/);
});

test('wrong issuer, wrong audience, expired and wrong key are rejected', async () => {
  const o = { issuer: ISS, audience: AUD };
  await rejects(verify(await sign({ iss: 'https://evil.example' }), pubPem, o), /CLAIM_VALIDATION/);
  await rejects(verify(await sign({ aud: 'kiwi-chat' }), pubPem, o), /CLAIM_VALIDATION/);
  await rejects(verify(await sign({ exp: Math.floor(Date.now() / 1000) - 3600 }), pubPem, o), /EXPIRED/);
  await rejects(verify(await sign({}, other.privateKey), pubPem, o), /SIGNATURE/);
});

test('key material that is not a PEM key is refused', async () => {
  await assert.rejects(verify(await sign(), 'not a key', { issuer: ISS, audience: AUD }));
});
