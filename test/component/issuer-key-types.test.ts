// Tokens are signed with whatever jwt_private_key is: the algorithm follows
// the key type (Ed25519 → EdDSA, RSA → RS256), discovery says so, and a
// service verifies with the public key alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verify } from '../../wrapper/src/crypto/verify.js';
import { form, IssuerHarness } from './harness/issuer.js';

for (const alg of ['EdDSA', 'RS256'] as const) {
  test(`${alg} key: discovery, JWKS and signed tokens follow the key type`, async () => {
    const h = new IssuerHarness(() => null, alg);
    try {
      await h.start();
      h.register({ client_id: 'kiwi-mail', redirect_uris: ['https://mail.kiwi.test/cb'] });
      h.register({ client_id: 'svc', grant_types: ['client_credentials'], scopes: ['groups'], token_endpoint_auth_method: 'client_secret_post', redirect_uris: [] });
      const d = JSON.parse((await h.http('/.well-known/openid-configuration')).text);
      assert.deepEqual(d.id_token_signing_alg_values_supported, [alg]);
      const jwks = JSON.parse((await h.http('/oauth2/keys')).text);
      assert.equal(jwks.keys[0].alg, alg);
      const r = await h.http('/oauth2/token', form({ grant_type: 'client_credentials', client_id: 'svc', client_secret: h.secrets.svc!, resource: 'https://mail.kiwi.test' }));
      assert.equal(r.status, 200, r.text);
      const token = JSON.parse(r.text).access_token as string;
      assert.equal(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).alg, alg);
      const claims = await verify(token, h.key.publicPem, { issuer: h.issuer, audience: 'https://mail.kiwi.test' });
      assert.equal(claims.client_id, 'svc');
    } finally {
      await h.close();
    }
  });
}
