// DPoP proof checks for services (crypto/dpop.ts, exposed through kiwi-id/verify).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { checkDpop, DpopError, MemoryReplayCache, verifyDpopProof } from '../../wrapper/src/crypto/dpop.js';

const AT = 'eyJ.access.token';
const URL_ = 'https://files.kiwi.test/api/x';

async function keys() {
  const pair = await generateKeyPair('ES256', { extractable: true });
  return { ...pair, jwk: await exportJWK(pair.publicKey) };
}

async function proof(k: Awaited<ReturnType<typeof keys>>, o: { claims?: Record<string, unknown>; header?: Record<string, unknown>; iat?: number } = {}) {
  const claims = { htm: 'GET', htu: URL_, jti: randomUUID(), ath: createHash('sha256').update(AT).digest('base64url'), ...o.claims };
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: k.jwk, ...o.header }).setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000)).sign(k.privateKey);
}

const check = (p: string, extra: object = {}) => ({ proof: p, method: 'GET', url: URL_, replay: new MemoryReplayCache(), ...extra });
const fails = (code: DpopError['code'], re?: RegExp) => (e: unknown) => e instanceof DpopError && e.code === code && (!re || re.test(e.message));

test('a good proof yields its key thumbprint; query and fragment of the URL do not matter', async () => {
  const k = await keys();
  const r = await verifyDpopProof(check(await proof(k), { url: URL_ + '?page=2#top' }), AT);
  assert.equal(r.jkt, await calculateJwkThumbprint(k.jwk));
});

test('proof problems are invalid_dpop_proof', async () => {
  const k = await keys();
  const cases: Array<[string, Promise<string> | string, RegExp]> = [
    ['typ', proof(k, { header: { typ: 'JWT' } }), /typ/],
    ['method', proof(k, { claims: { htm: 'POST' } }), /htm/],
    ['url', proof(k, { claims: { htu: 'https://files.kiwi.test/api/y' } }), /htu/],
    ['other origin', proof(k, { claims: { htu: 'https://evil.example/api/x' } }), /htu/],
    ['old', proof(k, { iat: Math.floor(Date.now() / 1000) - 400 }), /iat/],
    ['future', proof(k, { iat: Math.floor(Date.now() / 1000) + 120 }), /iat/],
    ['ath', proof(k, { claims: { ath: 'x' } }), /ath/],
    ['no jti', proof(k, { claims: { jti: undefined } }), /jti/],
    ['private key in header', proof(k, { header: { jwk: { ...k.jwk, d: 'AAAA' } as JWK } }), /public key/],
    ['not a JWS', 'garbage', /not a JWS/],
  ];
  for (const [what, p, re] of cases) {
    await assert.rejects(verifyDpopProof(check(await p), AT), fails('invalid_dpop_proof', re), what);
  }
  // A header key that did not sign the proof.
  const other = await keys();
  await assert.rejects(verifyDpopProof(check(await proof(k, { header: { jwk: other.jwk } })), AT), fails('invalid_dpop_proof', /signature/));
  // alg none / HMAC are never accepted.
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: k.jwk })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`;
  await assert.rejects(verifyDpopProof(check(none), AT), fails('invalid_dpop_proof', /alg/));
});

test('replays are refused; a full replay cache fails closed', async () => {
  const k = await keys();
  const p = await proof(k);
  const replay = new MemoryReplayCache();
  await verifyDpopProof(check(p, { replay }), AT);
  await assert.rejects(verifyDpopProof(check(p, { replay }), AT), fails('dpop_replay'));
  const tiny = new MemoryReplayCache(1);
  await verifyDpopProof(check(await proof(k), { replay: tiny }), AT);
  await assert.rejects(verifyDpopProof(check(await proof(k), { replay: tiny }), AT), fails('dpop_replay'));
});

test('nonce, when the service issued one', async () => {
  const k = await keys();
  await assert.rejects(verifyDpopProof(check(await proof(k), { nonce: 'n1' }), AT), fails('invalid_dpop_proof', /nonce/));
  await verifyDpopProof(check(await proof(k, { claims: { nonce: 'n1' } }), { nonce: 'n1' }), AT);
});

test('binding: cnf.jkt needs a proof by that key; a proof for an unbound token is refused', async () => {
  const k = await keys();
  const jkt = await calculateJwkThumbprint(k.jwk);
  await checkDpop({ cnf: { jkt } }, AT, check(await proof(k)));
  await assert.rejects(checkDpop({ cnf: { jkt } }, AT, undefined), fails('dpop_required'));
  await assert.rejects(checkDpop({ cnf: { jkt: 'other' } }, AT, check(await proof(k))), fails('dpop_binding_mismatch'));
  await assert.rejects(checkDpop({}, AT, check(await proof(k))), fails('dpop_binding_mismatch'));
  await checkDpop({}, AT, undefined);
});
