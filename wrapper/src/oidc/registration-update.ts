// RFC 7592 §2.2: a client updating its registration sends back the metadata
// it was given, and "if the client includes the client_secret field in the
// request, the value of this field MUST match the currently issued client
// secret". oidc-provider compares that value with the stored one as a
// string, but Kiwi ID stores only a hash of the secret, so a client that
// follows the RFC would always be told its secret does not match.
//
// This koa middleware runs before oidc-provider's route: on a PUT to the
// client configuration endpoint it checks a repeated `client_secret` against
// the stored hash and, when it matches, drops the field (it changes nothing:
// the secret stays the same). A value that does not match is left in place,
// so oidc-provider still refuses it (400 invalid_request), and only after it
// has checked the registration access token: nothing here answers a caller.
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import type Provider from 'oidc-provider';
import type { RegisteredClients } from '../clients/registered-clients.js';
import { verifySecret } from '../clients/client-secret.js';
import { readBody } from '../server/read-body.js';
import { PATHS } from './paths.js';

/** oidc-provider's own limit for JSON bodies (selective_body.js). */
const BODY_LIMIT = 56 * 1024;
const CLIENT_CONFIGURATION = PATHS.registration + '/';

/** The koa context of a middleware given to provider.use (before oidc-provider's own route). */
type KoaContext = Parameters<Parameters<Provider['use']>[0]>[0];

export function acceptRepeatedClientSecret(provider: Provider, registered: RegisteredClients): void {
  provider.use(async (ctx, next) => {
    if (ctx.method === 'PUT' && ctx.path.startsWith(CLIENT_CONFIGURATION) && ctx.is('application/json')) {
      // Registered client ids (reg-…) are base64url: nothing to decode.
      if (!(await dropMatchingSecret(ctx, registered, ctx.path.slice(CLIENT_CONFIGURATION.length)))) return;
    }
    await next();
  });
}

/** False when the request was answered here (a body over the limit). */
async function dropMatchingSecret(ctx: KoaContext, registered: RegisteredClients, clientId: string): Promise<boolean> {
  const raw = await readBody(ctx.req, BODY_LIMIT);
  if (raw === null) {
    // oidc-provider's own answer to a body over its limit.
    ctx.status = 400;
    ctx.set('cache-control', 'no-store');
    ctx.body = { error: 'invalid_request', error_description: 'failed to parse the request body' };
    return false;
  }
  const body = parseObject(raw);
  const secret = body?.client_secret;
  let forward = raw;
  if (typeof secret === 'string' && (await secretMatches(registered, clientId, secret))) {
    delete body!.client_secret;
    forward = Buffer.from(JSON.stringify(body));
  }
  replayBody(ctx, forward);
  return true;
}

async function secretMatches(registered: RegisteredClients, clientId: string, secret: string): Promise<boolean> {
  const stored = (await registered.find(clientId))?.metadata.client_secret;
  return typeof stored === 'string' && verifySecret(secret, stored);
}

function parseObject(raw: Buffer): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(raw.toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null; // oidc-provider reports the broken body itself
  }
}

/**
 * oidc-provider reads the body from the request stream, which is consumed
 * now: it gets a stream of the bytes to use instead, with the request's
 * other properties (headers with the new length, socket, method, url).
 */
function replayBody(ctx: KoaContext, bytes: Buffer): void {
  const original = ctx.req;
  const headers = { ...original.headers, 'content-length': String(bytes.length) };
  delete headers['transfer-encoding'];
  const replay = Object.assign(Readable.from([bytes]), {
    headers,
    rawHeaders: original.rawHeaders,
    method: original.method,
    url: original.url,
    httpVersion: original.httpVersion,
    socket: original.socket,
    connection: original.socket,
  }) as unknown as IncomingMessage;
  ctx.req = replay;
  ctx.request.req = replay;
}
