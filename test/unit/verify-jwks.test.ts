// verify() with a JWKS (a cluster's /oauth2/keys: one key per node): the key is picked by kid,
// its algorithm comes from the key type; a token whose kid is not in the set, or a header that
// asks for another algorithm, fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { TokenError, verify } from '../../wrapper/src/crypto/verify.js';

const ISS = 'https://id.kiwi.test';
async function node(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}
const sign = (k: Awaited<ReturnType<typeof node>>, kid = k.kid) =>
  new SignJWT({ sub: 'u1' }).setProtectedHeader({ alg: 'ES256', kid }).setIssuer(ISS).setAudience('svc').setIssuedAt().setExpirationTime('5m').sign(k.privateKey);

test('a token of any node verifies against the union; unknown kid and foreign keys fail', async () => {
  const [n1, n2, n3] = await Promise.all([node('n1'), node('n2'), node('n3')]);
  const jwks = { keys: [n1.jwk, n2.jwk] };
  assert.equal((await verify(await sign(n1), jwks, { issuer: ISS, audience: 'svc' })).sub, 'u1');
  assert.equal((await verify(await sign(n2), jwks, { issuer: ISS, audience: 'svc' })).sub, 'u1');
  await assert.rejects(verify(await sign(n3), jwks, { issuer: ISS, audience: 'svc' }), (e: unknown) => e instanceof TokenError && e.code === 'ERR_JWKS_NO_MATCHING_KEY');
  // Signed by node 3 but claiming node 1's kid: the signature fails.
  await assert.rejects(verify(await sign(n3, 'n1'), jwks, { issuer: ISS, audience: 'svc' }), (e: unknown) => e instanceof TokenError);
  // A private JWK in the set is refused rather than used.
  const priv = { keys: [{ ...(await exportJWK(n1.privateKey)), kid: 'n1' }] };
  await assert.rejects(verify(await sign(n1), priv, { issuer: ISS, audience: 'svc' }), (e: unknown) => e instanceof TokenError && e.code === 'unsupported_key');
});
