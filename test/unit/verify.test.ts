import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import fc from 'fast-check';
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

// ---------------------------------------------------------------------------
// verify() checks tokens itself (node:crypto for the signature, for speed);
// jose's jwtVerify is the reference its verdicts are held to.

import { jwtVerify, type JWK } from 'jose';
import { thumbprint, verifySync } from '../../wrapper/src/crypto/verify.js';

const now = () => Math.floor(Date.now() / 1000);

/** A compact JWS over arbitrary header and claims, signed with `key` (ES256 unless the header says EdDSA). */
function rawToken(header: Record<string, unknown>, claims: unknown, key = ec.privateKey): string {
  const input = `${b64(header)}.${typeof claims === 'string' ? claims : b64(claims)}`;
  const sig = cryptoSign(header.alg === 'EdDSA' ? null : 'sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

const good = () => ({ sub: 'alice', iss: ISS, aud: AUD, iat: now(), exp: now() + 300 });
const hdr = { alg: 'ES256', kid: thumbprint(ec.publicKey) };

/** Outcome as a comparable string: "ok" or the error code. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

test('verdicts match jose jwtVerify across valid and malformed tokens', async () => {
  const valid = await sign();
  const [h, p, s] = valid.split('.') as [string, string, string];
  const cases: Record<string, string> = {
    valid,
    'tampered payload': `${h}.${b64({ ...good(), sub: 'mallory' })}.${s}`,
    'tampered signature': `${h}.${p}.${s.slice(0, -4)}AAAA`,
    'short signature': `${h}.${p}.${s.slice(0, 40)}`,
    'four parts': `${valid}.x`,
    'two parts': `${h}.${p}`,
    'signature not base64url': `${h}.${p}.${s}+/`,
    'signature of a length base64 cannot have': `${h}.${p}.${s}AAA`,
    'header of a length base64 cannot have': `${h}${'A'.repeat(((1 - (h.length % 4)) + 4) % 4 || 4)}.${p}.${s}`,
    'payload of a length base64 cannot have': `${h}.${p}${'A'.repeat(((1 - (p.length % 4)) + 4) % 4 || 4)}.${s}`,
    'header not an object': rawToken([] as never, good()),
    'payload not JSON': rawToken(hdr, b64('x').slice(0, 3)),
    'payload an array': rawToken(hdr, [1, 2]),
    'alg ES384 header on a P-256 key': rawToken({ ...hdr, alg: 'ES384' }, good()),
    'alg missing': rawToken({ kid: hdr.kid }, good()),
    'unknown crit': rawToken({ ...hdr, crit: ['exp'], exp: 1 }, good()),
    'iss wrong': rawToken(hdr, { ...good(), iss: 'https://evil.example' }),
    'aud array containing ours': rawToken(hdr, { ...good(), aud: ['kiwi-chat', AUD] }),
    'aud array without ours': rawToken(hdr, { ...good(), aud: ['kiwi-chat'] }),
    'aud not a string': rawToken(hdr, { ...good(), aud: 7 }),
    'sub missing': rawToken(hdr, { ...good(), sub: undefined }),
    'iat missing': rawToken(hdr, { ...good(), iat: undefined }),
    'iat a string': rawToken(hdr, { ...good(), iat: 'yesterday' }),
    'exp a string': rawToken(hdr, { ...good(), exp: String(now() + 300) }),
    'expired beyond tolerance': rawToken(hdr, { ...good(), exp: now() - 31 }),
    'expired within tolerance': rawToken(hdr, { ...good(), exp: now() - 20 }),
    'nbf in the future': rawToken(hdr, { ...good(), nbf: now() + 120 }),
    'nbf within tolerance': rawToken(hdr, { ...good(), nbf: now() + 20 }),
    'nbf a string': rawToken(hdr, { ...good(), nbf: 'soon' }),
  };
  const o = { issuer: ISS, audience: AUD };
  for (const [name, token] of Object.entries(cases)) {
    const ours = await outcome(verify(token, pubPem, o));
    const jose = await outcome(
      jwtVerify(token, ec.publicKey, { algorithms: ['ES256'], issuer: ISS, audience: AUD, clockTolerance: 30, requiredClaims: ['iss', 'aud', 'exp', 'iat', 'sub'] }),
    );
    assert.equal(ours, jose, `${name}: kiwi-id says ${ours}, jose says ${jose}`);
  }
  // Stricter than jose, which lets the signature check catch it: a payload
  // that is not base64url is refused before any crypto.
  await rejects(verify(`${h}.${p}+/.${s}`, pubPem, o), /ERR_JWS_INVALID/);
});

test('typ is checked when asked for, the way jose compares it', async () => {
  const at = rawToken({ ...hdr, typ: 'at+jwt' }, good());
  assert.equal((await verify(at, pubPem, { issuer: ISS, audience: AUD, typ: 'application/at+jwt' })).sub, 'alice');
  await rejects(verify(at, pubPem, { issuer: ISS, audience: AUD, typ: 'JWT' }), /CLAIM_VALIDATION/);
  await rejects(verify(rawToken(hdr, good()), pubPem, { issuer: ISS, audience: AUD, typ: 'at+jwt' }), /CLAIM_VALIDATION/);
});

test('kid picks the key from a key set; a kid naming no key fails', async () => {
  const second = generateKeyPairSync('ed25519');
  const jwks = {
    keys: [ec.publicKey.export({ format: 'jwk' }), { ...second.publicKey.export({ format: 'jwk' }), kid: 'rotated-2' }],
  };
  const o = { issuer: ISS, audience: AUD };
  // By thumbprint (what Kiwi ID puts in its tokens) and by the JWK's own kid.
  assert.equal((await verify(rawToken(hdr, good()), jwks, o)).sub, 'alice');
  const ed = rawToken({ alg: 'EdDSA', kid: 'rotated-2' }, good(), second.privateKey);
  assert.equal((await verify(ed, jwks, o)).sub, 'alice');
  assert.equal((await verify(ed, [pubPem, second.publicKey], o).catch((e) => e.code)), 'ERR_JWKS_NO_MATCHING_KEY', 'kid "rotated-2" names no key in a list without JWK kids');
  // No kid: each key of the token's algorithm is tried.
  assert.equal((await verify(rawToken({ alg: 'EdDSA' }, good(), second.privateKey), [pubPem, second.publicKey], o)).sub, 'alice');
  // A set does not try a key the kid does not name, even before its signature is looked at.
  await rejects(verify(rawToken({ ...hdr, kid: thumbprint(other.publicKey) }, good()), [pubPem], o), /NO_MATCHING_KEY/);
  // A key on its own: the signature decides, whatever the kid (as jose does).
  assert.equal((await verify(rawToken({ ...hdr, kid: 'k1' }, good()), pubPem, o)).sub, 'alice');
  // The token's algorithm must be the one of the key its kid names.
  await rejects(verify(rawToken({ ...hdr, alg: 'EdDSA' }, good()), jwks, o), /ALG_NOT_ALLOWED/);
});

test('the kid is the RFC 7638 thumbprint jose computes', async () => {
  const { calculateJwkThumbprint } = await import('jose');
  for (const kp of [ec, generateKeyPairSync('ed25519'), generateKeyPairSync('rsa', { modulusLength: 2048 })]) {
    assert.equal(thumbprint(kp.publicKey), await calculateJwkThumbprint(kp.publicKey.export({ format: 'jwk' }) as JWK));
  }
});

test('ES384 keys verify; short RSA keys and private JWKs are refused', async () => {
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const t = await sign({}, p384.privateKey, 'ES384');
  assert.equal(verifySync(t, p384.publicKey, { issuer: ISS, audience: AUD }).sub, 'alice');
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
  assert.throws(() => verifySync(t, rsa1024.publicKey, { issuer: ISS, audience: AUD }), (e: unknown) => e instanceof TokenError && e.code === 'unsupported_key');
  assert.throws(() => verifySync(t, ec.privateKey.export({ format: 'jwk' }), { issuer: ISS, audience: AUD }), (e: unknown) => e instanceof TokenError && e.code === 'unsupported_key');
});

test('claims of any size and script come back as signed (every base64url length, UTF-8)', async () => {
  // Payload lengths cover all three unpadded base64url remainders; strings
  // include multi-byte characters split across base64 quanta.
  const o = { issuer: ISS, audience: AUD };
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !['iss', 'aud', 'exp', 'iat', 'sub', 'nbf', 'cnf', '__proto__'].includes(k)), fc.string({ unit: 'grapheme', maxLength: 40 }), { maxKeys: 6 }), async (extra) => {
      const claims = await verify(await sign(extra), pubPem, o);
      for (const [k, v] of Object.entries(extra)) assert.equal(claims[k], v);
    }),
    { numRuns: 60 },
  );
});

test('a header is judged alike the first time and after (kept headers, refused ones, more than are kept)', async () => {
  // verify() keeps the checked form of headers it has seen (crypto/verify.ts);
  // what it answers must not depend on what it has seen before.
  const o = { issuer: ISS, audience: AUD };
  const refused = rawToken({ ...hdr, crit: ['exp'], exp: 1 }, good());
  const typed = rawToken({ ...hdr, typ: 'at+jwt' }, good());
  for (let round = 0; round < 2; round++) {
    await rejects(verify(refused, pubPem, o), /ERR_JOSE_NOT_SUPPORTED/);
    await rejects(verify(typed, pubPem, { ...o, typ: 'JWT' }), /CLAIM_VALIDATION/);
    assert.equal((await verify(typed, pubPem, { ...o, typ: 'at+jwt' })).sub, 'alice');
    // 200 headers, far more than are kept: each verifies, and a tampered
    // signature under each still fails.
    for (let i = 0; i < 200; i++) {
      const t = rawToken({ ...hdr, n: i }, good());
      assert.equal((await verify(t, pubPem, o)).sub, 'alice');
      await rejects(verify(`${t.slice(0, -4)}AAAA`, pubPem, o), /SIGNATURE_VERIFICATION_FAILED/);
    }
  }
});
