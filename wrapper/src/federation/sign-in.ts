// Sign-in through upstream IdPs, plugged into the issuer's sign-in step.
//
//   sign-in step   → choice page: Kanidm (password / passkey) or an upstream IdP
//   ?login=<idp>   → pending login (pending-login.ts: state, nonce, PKCE verifier,
//                    browser binding) → upstream
//   callback_path  → pending login taken once from the browser that started it,
//                    code redeemed, ID token / userinfo validated → upstream identity
//                  → link → Kanidm person (read-only directory) → interaction ends
//                    with that person (+ default_groups, amr "fed", acr)
//                  → no link, but a fresh Kanidm sign-in in this browser → offer to
//                    link and continue (kanidm-proof.ts: proof of both sides)
//                  → no link → clear page, the service gets access_denied
//
// The Linked accounts page (self-service linking outside a sign-in) is
// self-link.ts; its upstream callbacks arrive here and are handed over.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { UpstreamIdp } from '../config/federation.js';
import type { InteractionDetails, IssuerExtension, IssuerParts } from '../oidc/extension.js';
import { storeInteractionResult } from '../oidc/interactions/login-callback.js';
import { sendErrorPage } from '../server/error-page.js';
import { sendHtml } from '../server/html.js';
import { readForm } from '../server/read-body.js';
import { DirectoryError, personClaims, type Person } from './directory.js';
import { kanidmProof, personName, sameProof, type KanidmProof } from './kanidm-proof.js';
import { LinkConflictError, type FederatedLink } from './links.js';
import type { SignInResult } from './metrics.js';
import type { FederationParts } from './parts.js';
import { alreadyLinkedPage, choicePage, confirmLinkPage, federationErrorPage, idpChoices, notLinkedPage, type ChoiceOption } from './pages.js';
import { PENDING_TTL_S, sendToUpstream, takePending } from './pending-login.js';
import { LINK_PAGE, SelfServiceLinks, type LinkDeps } from './self-link.js';
import { UpstreamError, type UpstreamIdentity } from './upstream-client.js';

/** Where the "link and continue" confirmation of an in-flow self-service link is posted. */
export const LINK_CONFIRM = '/oauth2/federation/link/confirm';
/** The state store's model of in-flow link offers (upstream identity + Kanidm proof, single use). */
const LINK_OFFER = 'FederationLinkOffer';
const KANIDM_CHOICE: ChoiceOption = { id: 'kanidm', label: 'Kanidm (password or passkey)' };
const AGAIN = 'This sign-in could not be completed. Please start again from the service.';
const EXPIRED = 'This sign-in has expired. Please start again from the service.';

export interface SignInDeps extends FederationParts, LinkDeps {}

type LinkOffer = KanidmProof & { idp: string; issuer: string; sub: string; uid: string; amr?: string[]; acr?: string };

export class FederatedSignIn implements IssuerExtension {
  private readonly callbacks = new Map<string, UpstreamIdp>();
  private readonly selfLinks: SelfServiceLinks;

  constructor(
    private readonly d: SignInDeps,
    private readonly parts: IssuerParts,
  ) {
    for (const idp of d.config.upstream_idps) this.callbacks.set(idp.callback_path, idp);
    this.selfLinks = new SelfServiceLinks(d, parts);
  }

  matches(pathname: string): boolean {
    return pathname === LINK_PAGE || pathname === LINK_CONFIRM || this.callbacks.has(pathname);
  }

  async handle(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    try {
      if (pathname === LINK_PAGE) {
        if (req.method === 'GET') return await this.selfLinks.page(req, res);
        if (req.method === 'POST') return await this.selfLinks.start(req, res);
        return sendErrorPage(req, res, 400, 'Use the Linked accounts page.');
      }
      if (pathname === LINK_CONFIRM) {
        if (req.method === 'POST') return await this.confirmLink(req, res);
        return sendErrorPage(req, res, 400, AGAIN);
      }
      const idp = this.callbacks.get(pathname)!;
      if (req.method !== 'GET') return sendErrorPage(req, res, 400, AGAIN);
      return await this.callback(idp, req, res);
    } catch (err) {
      this.d.log.error({ err_message: (err as Error).message }, 'federation request failed');
      return sendErrorPage(req, res, 500, 'Sign-in failed on our side. Please try again.');
    }
  }

  // --- the sign-in step --------------------------------------------------

  async loginPrompt(details: InteractionDetails, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (req.method !== 'GET') return false;
    const url = new URL(req.url ?? '/', this.d.issuer);
    const choice = url.searchParams.get('login');
    if (choice === KANIDM_CHOICE.id) return false;
    if (choice !== null) {
      const client = this.d.clients.get(choice);
      if (!client) {
        sendErrorPage(req, res, 400, 'Unknown sign-in choice. Please start again from the service.');
        return true;
      }
      await sendToUpstream(this.d, client, { purpose: 'signin', idp: choice, uid: details.uid }, req, res);
      return true;
    }
    const client = await this.parts.provider.Client.find(String(details.params.client_id));
    const service = client?.clientName ?? String(details.params.client_id);
    sendHtml(res, 200, choicePage(url.pathname, service, [KANIDM_CHOICE, ...idpChoices(this.d.config.upstream_idps)]));
    return true;
  }

  // --- the upstream's redirect back --------------------------------------

  private fail(idp: UpstreamIdp, result: SignInResult, reason: string, extra: Record<string, unknown> = {}): void {
    this.d.metrics.signIn(idp.id, result);
    this.d.log.warn({ idp: idp.id, result, reason, ...extra }, 'federated sign-in refused');
  }

  private async callback(idp: UpstreamIdp, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.d.issuer);
    const state = url.searchParams.get('state');
    const taken = await takePending(this.d.store, idp, state, req, res);
    if ('refused' in taken) {
      this.fail(idp, 'invalid_state', taken.refused);
      return sendErrorPage(req, res, 400, AGAIN);
    }
    const { pending } = taken;
    let identity: UpstreamIdentity;
    try {
      identity = await this.d.clients.get(idp.id)!.complete(url, { state: state!, verifier: pending.verifier, ...(pending.nonce && { nonce: pending.nonce }) });
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      this.fail(idp, err.kind, err.reason);
      if (pending.purpose === 'signin') return this.endSignIn(req, res, pending.uid, err);
      return sendHtml(res, err.kind === 'unavailable' ? 503 : 400, federationErrorPage(`Signing in at ${idp.display_name} did not succeed, so nothing was linked.`));
    }
    if (pending.purpose === 'link') return this.selfLinks.finish(idp, identity, pending, req, res);
    return this.finishSignIn(idp, identity, pending.uid, req, res);
  }

  /** Ends the interaction with an error for the service: where to send the browser, or undefined once the interaction has expired (a page said so). */
  private async refuse(req: IncomingMessage, res: ServerResponse, uid: string, error: { error: string; error_description: string }): Promise<string | undefined> {
    const returnTo = await storeInteractionResult(this.parts.provider, uid, error);
    if (!returnTo) sendErrorPage(req, res, 400, EXPIRED);
    return returnTo;
  }

  /** The upstream part failed: the service hears access_denied (or temporarily_unavailable). */
  private async endSignIn(req: IncomingMessage, res: ServerResponse, uid: string, err: UpstreamError): Promise<void> {
    const error = err.kind === 'unavailable'
      ? { error: 'temporarily_unavailable', error_description: 'the upstream identity provider could not be reached' }
      : { error: 'access_denied', error_description: err.kind === 'upstream_denied' ? 'the upstream identity provider refused the sign-in' : 'the upstream sign-in response was not valid' };
    const returnTo = await this.refuse(req, res, uid, error);
    if (!returnTo) return;
    // A user who cancelled at the upstream goes straight back; anything else gets a page first.
    if (err.kind === 'upstream_denied') return void res.writeHead(303, { location: returnTo, 'cache-control': 'no-store' }).end();
    sendHtml(res, err.kind === 'unavailable' ? 503 : 400, federationErrorPage('Signing in there did not succeed.', returnTo));
  }

  private async finishSignIn(idp: UpstreamIdp, identity: UpstreamIdentity, uid: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const link = (await this.d.links.find(identity.issuer, identity.sub)) ?? (await this.linkByVerifiedEmail(idp, identity));
    if (link) return this.signInAs(idp, identity, link, uid, req, res);
    // Signed in with Kanidm in this browser moments ago: offer to link (proof of both sides).
    const proof = await kanidmProof(this.parts.provider, req, res);
    if (proof) return this.offerLink(idp, identity, uid, proof, res);
    this.fail(idp, 'not_linked', 'upstream identity is not linked', { upstream_sub: identity.sub });
    const returnTo = await this.refuse(req, res, uid, { error: 'access_denied', error_description: 'the upstream account is not linked to a Kiwi ID account' });
    if (returnTo) sendHtml(res, 403, notLinkedPage(idp.display_name, returnTo, LINK_PAGE));
  }

  /** The identity is linked: the interaction ends as the linked person, with the IdP's groups and amr "fed". */
  private async signInAs(
    idp: UpstreamIdp,
    identity: Pick<UpstreamIdentity, 'amr' | 'acr'>,
    link: FederatedLink,
    uid: string,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    let person: Person | undefined;
    try {
      person = await this.d.directory.person(link.person);
    } catch (err) {
      if (!(err instanceof DirectoryError)) throw err;
      this.fail(idp, 'unavailable', err.message);
      return this.endSignIn(req, res, uid, new UpstreamError('unavailable', err.message));
    }
    if (!person?.valid) {
      this.fail(idp, 'account_invalid', person ? 'linked person is expired or not yet valid' : 'linked person no longer exists', { person: link.person });
      const returnTo = await this.refuse(req, res, uid, { error: 'access_denied', error_description: 'the linked account cannot sign in' });
      if (returnTo) res.writeHead(303, { location: returnTo, 'cache-control': 'no-store' }).end();
      return;
    }
    await this.parts.accounts.save(personClaims(person, idp.default_groups));
    await this.d.links.touch(link);
    const upstreamAmr = identity.amr?.length ? identity.amr : idp.default_amr;
    const amr = [...new Set(['fed', ...upstreamAmr])];
    const acr = identity.acr ?? idp.default_acr;
    const returnTo = await storeInteractionResult(this.parts.provider, uid, {
      login: { accountId: person.uuid, amr, ...(acr !== undefined && { acr }) },
    });
    if (!returnTo) return sendErrorPage(req, res, 400, EXPIRED);
    this.d.metrics.signIn(idp.id, 'success');
    this.d.log.info({ idp: idp.id, sub: person.uuid, link: link.id }, 'federated sign-in');
    res.writeHead(303, { location: returnTo, 'cache-control': 'no-store' }).end();
  }

  // --- linking during a sign-in --------------------------------------------

  private async offerLink(idp: UpstreamIdp, identity: UpstreamIdentity, uid: string, proof: KanidmProof, res: ServerResponse): Promise<void> {
    const token = randomBytes(24).toString('base64url');
    const offer: LinkOffer = {
      idp: idp.id, issuer: identity.issuer, sub: identity.sub, uid, ...proof,
      ...(identity.amr && { amr: [...identity.amr] }), ...(identity.acr && { acr: identity.acr }),
    };
    await this.d.store.upsert(LINK_OFFER, token, offer as unknown as Record<string, unknown>, PENDING_TTL_S);
    sendHtml(res, 200, confirmLinkPage(LINK_CONFIRM, token, idp.display_name, await personName(this.parts.accounts, proof.person)));
  }

  /** "Link and continue" (or cancel) for an unlinked identity, in the browser whose Kanidm session was the proof. */
  private async confirmLink(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const token = form?.get('token') ?? '';
    const rec = token ? await this.d.store.find(LINK_OFFER, token) : undefined;
    const offer = rec?.payload as unknown as LinkOffer | undefined;
    const proof = await kanidmProof(this.parts.provider, req, res);
    const idp = offer && this.d.config.upstream_idps.find((i) => i.id === offer.idp);
    if (!offer || !idp || !proof || !sameProof(proof, offer) ||
        (await this.d.store.consumeOnce(LINK_OFFER, token)) !== 'consumed') {
      return sendErrorPage(req, res, 400, AGAIN);
    }
    if (form?.get('answer') !== 'link') {
      this.fail(idp, 'not_linked', 'the person declined to link', { upstream_sub: offer.sub });
      const returnTo = await this.refuse(req, res, offer.uid, { error: 'access_denied', error_description: 'the upstream account is not linked to a Kiwi ID account' });
      if (returnTo) res.writeHead(303, { location: returnTo, 'cache-control': 'no-store' }).end();
      return;
    }
    let link: FederatedLink;
    try {
      ({ link } = await this.d.links.link({
        issuer: offer.issuer, idp: idp.id, upstream_sub: offer.sub, person: offer.person, person_name: await personName(this.parts.accounts, offer.person), how: 'self-service',
      }));
    } catch (err) {
      if (!(err instanceof LinkConflictError)) throw err;
      return sendHtml(res, 409, alreadyLinkedPage(idp.display_name));
    }
    this.d.log.info({ idp: idp.id, person: link.person, link: link.id }, 'self-service link (during sign-in)');
    return this.signInAs(idp, { amr: offer.amr, acr: offer.acr }, link, offer.uid, req, res);
  }

  /** Opt-in per IdP: only a verified email that exactly one Kanidm person has. */
  private async linkByVerifiedEmail(idp: UpstreamIdp, identity: UpstreamIdentity): Promise<FederatedLink | undefined> {
    if (!idp.link_by_verified_email || !identity.email) return undefined;
    if (identity.email_verified !== true) {
      this.d.log.info({ idp: idp.id }, 'not linking by email: the upstream does not assert email_verified = true');
      return undefined;
    }
    const persons = await this.d.directory.personsWithEmail(identity.email);
    if (persons.length !== 1) {
      this.d.log.info({ idp: idp.id, matches: persons.length }, 'not linking by email: not exactly one person has it');
      return undefined;
    }
    const { link } = await this.d.links.link({
      issuer: identity.issuer, idp: idp.id, upstream_sub: identity.sub, person: persons[0]!.uuid, person_name: persons[0]!.name, how: 'verified-email',
    });
    this.d.log.info({ idp: idp.id, person: link.person, link: link.id }, 'linked by verified email');
    return link;
  }
}
