// GET /oauth2/login/callback — the browser is back from the login method.
// The result is stored on the pending interaction (by uid: the interaction
// cookie is scoped to the interaction path), then the browser resumes the
// authorization, where oidc-provider still checks its resume cookie.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import { sendErrorPage } from '../../server/error-page.js';
import type { Accounts } from '../accounts.js';
import { UpstreamLoginError, type LoginMethod } from '../login/method.js';

export interface LoginCallbackDeps {
  provider: Provider;
  login: LoginMethod | null;
  accounts: Accounts;
  issuer: string;
  log: Logger;
}

type Outcome = { uid: string; result: Record<string, unknown> } | null;

/** The login's outcome for its interaction, or null when it cannot be tied to one. */
async function completeLogin(d: LoginCallbackDeps, login: LoginMethod, req: IncomingMessage): Promise<Outcome> {
  try {
    const done = await login.complete(new URL(req.url ?? '/', d.issuer));
    await d.accounts.save(done.claims);
    return { uid: done.uid, result: { login: { accountId: done.claims.sub } } };
  } catch (err) {
    if (!(err instanceof UpstreamLoginError) || !err.uid) {
      d.log.warn({ err_message: (err as Error).message }, 'login callback rejected');
      return null;
    }
    return { uid: err.uid, result: { error: err.error, error_description: err.message } };
  }
}

export function loginCallbackHandler(d: LoginCallbackDeps) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!d.login) return sendErrorPage(req, res, 503, 'Sign-in is not configured on this Kiwi ID yet.');
    const outcome = await completeLogin(d, d.login, req);
    if (!outcome) return sendErrorPage(req, res, 400, 'This sign-in could not be completed. Please start again from the service.');
    const returnTo = await storeInteractionResult(d.provider, outcome.uid, outcome.result);
    if (!returnTo) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
    res.writeHead(303, { location: returnTo, 'cache-control': 'no-store' }).end();
  };
}

/**
 * Ends interaction `uid` with `result` (found by id: its cookie is scoped to
 * the interaction path); resolves to where the browser resumes, where
 * oidc-provider checks its resume cookie, or undefined once it has expired.
 */
export async function storeInteractionResult(provider: Provider, uid: string, result: Record<string, unknown>): Promise<string | undefined> {
  const pending = await provider.Interaction.find(uid);
  if (!pending) return undefined;
  pending.result = 'error' in result ? result : { ...pending.lastSubmission, ...result };
  await pending.save(Math.max(1, pending.exp - Math.floor(Date.now() / 1000)));
  return pending.returnTo;
}
