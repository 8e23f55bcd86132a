// GET /oauth2/interaction/:uid — what oidc-provider asks of the user next.
// `login`: send the browser to the login method (Kanidm). `consent`:
// KiwiStack services are first-party, so the grant is given without a page,
// but only to members of the client's allowed groups.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import { sendErrorPage } from '../../server/error-page.js';
import { memberOfAny, type Accounts } from '../accounts.js';
import { ALLOWED_GROUPS } from '../configuration.js';
import type { IssuerExtension } from '../extension.js';
import type { LoginMethod } from '../login/method.js';

export interface PromptDeps {
  provider: Provider;
  login: LoginMethod | null;
  accounts: Accounts;
  log: Logger;
  /** Offered the sign-in step first (federation: choice page, upstream IdPs). */
  extensions?: IssuerExtension[];
}

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

interface MissingGrant {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
}

async function startLogin(d: PromptDeps, details: Details, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!d.login) return sendErrorPage(req, res, 503, 'Sign-in is not configured on this Kiwi ID yet (see the operator log).');
  const to = await d.login.begin(details.uid);
  res.writeHead(303, { location: to.href, 'cache-control': 'no-store' }).end();
}

/**
 * Asks the login method whether the person is still valid before anything is
 * issued; refreshes the account snapshot. False when the interaction was ended
 * (access_denied, or temporarily_unavailable when the source cannot be asked).
 */
async function stillValid(d: PromptDeps, details: Details, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (!d.login?.revalidate) return true;
  const accountId = details.session!.accountId;
  const r = await d.login.revalidate(accountId);
  if (r.status === 'fresh') return true;
  if (r.status === 'updated') {
    await d.accounts.save(r.claims);
    return true;
  }
  d.log.info({ sub: accountId, status: r.status, reason: r.reason }, 'authorization refused: sign-in no longer valid at the source');
  await d.provider.interactionFinished(req, res, r.status === 'invalid'
    ? { error: 'access_denied', error_description: 'your sign-in is no longer valid (account disabled or session ended); sign in again' }
    : { error: 'temporarily_unavailable', error_description: 'the identity service cannot confirm your sign-in right now' },
  { mergeWithLastSubmission: false });
  // The Kiwi ID session keeps its identity (the interaction is bound to it)
  // but no longer a signed-in person: the next attempt asks the source afresh.
  if (r.status === 'invalid' && details.session?.cookie) {
    const session = await d.provider.Session.find(details.session.cookie);
    if (session) {
      session.accountId = undefined as never;
      session.loginTs = undefined;
      session.authorizations = {};
      await session.persist();
    }
  }
  return false;
}

/** False (and the interaction ended with access_denied) when group policy refuses the user. */
async function admittedByGroups(d: PromptDeps, details: Details, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const clientId = String(details.params.client_id);
  const accountId = details.session!.accountId;
  // Static clients (clients file) and registered ones alike.
  const client = await d.provider.Client.find(clientId);
  const allowed = client?.metadata()[ALLOWED_GROUPS] as string[] | undefined;
  if (!allowed) return true;
  const account = await d.accounts.find(accountId);
  if (memberOfAny(account?.groups, allowed)) return true;
  d.log.info({ client_id: clientId, sub: accountId }, 'access denied by allowed_groups');
  await d.provider.interactionFinished(req, res, {
    error: 'access_denied',
    error_description: 'you are not a member of a group allowed to use this service',
  }, { mergeWithLastSubmission: false });
  return false;
}

async function grantConsent(d: PromptDeps, details: Details, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const accountId = details.session!.accountId;
  const clientId = String(details.params.client_id);
  const grant = details.grantId ? await d.provider.Grant.find(details.grantId) : new d.provider.Grant({ accountId, clientId });
  if (!grant) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
  const missing = details.prompt.details as MissingGrant;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await d.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

export function promptHandler(d: PromptDeps) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let details: Details;
    try {
      details = await d.provider.interactionDetails(req, res);
    } catch {
      return sendErrorPage(req, res, 400, 'This sign-in has expired or was started in another browser. Please start again from the service.');
    }
    if (details.prompt.name === 'login') {
      for (const ext of d.extensions ?? []) if (await ext.loginPrompt?.(details, req, res)) return;
      if (req.method !== 'GET') return sendErrorPage(req, res, 400, 'This sign-in step expects no form here. Please start again from the service.');
      return startLogin(d, details, req, res);
    }
    if (req.method !== 'GET') return sendErrorPage(req, res, 400, 'This sign-in step expects no form here. Please start again from the service.');
    if (!(await stillValid(d, details, req, res))) return;
    if (!(await admittedByGroups(d, details, req, res))) return;
    return grantConsent(d, details, req, res);
  };
}
