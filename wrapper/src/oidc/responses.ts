// Small corrections to oidc-provider's responses, applied after each request
// (koa middleware): what Kiwi ID says must match the RFCs and never show a
// stored secret hash.
import type Provider from 'oidc-provider';
import { isSecretHash } from '../clients/client-secret.js';
import { PATHS } from './paths.js';

type Body = Record<string, unknown>;

/** RFC 6749 5.2 / RFC 8628 3.2: a grant the client is not registered for is `unauthorized_client`. */
const NOT_ALLOWED_FOR_CLIENT = /^requested grant type is not allowed for this client$|is not allowed for this client$/;

export function correctResponses(provider: Provider): void {
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as Body | undefined;
    if (!body || typeof body !== 'object' || Buffer.isBuffer(body)) return;
    const route = ctx.oidc?.route;

    // Registration responses never show a stored hash as if it were the secret.
    if (ctx.path.startsWith(PATHS.registration) && isSecretHash(body.client_secret)) delete body.client_secret;

    if ((route === 'token' || route === 'device_authorization') && body.error === 'invalid_request' && NOT_ALLOWED_FOR_CLIENT.test(String(body.error_description))) {
      body.error = 'unauthorized_client';
    }

    // A service token's introspection says who it is, as its JWT does (sub = client_id).
    if (route === 'introspection' && body.active === true && body.sub === undefined && ctx.oidc?.entities.ClientCredentials) {
      body.sub = body.client_id;
    }
  });
}
