// Sign-in through upstream IdPs, plugged into the issuer's sign-in step.
//
//   sign-in step   → choice page: Kanidm (password / passkey) or an upstream IdP
//   ?login=<idp>   → pending login (state, nonce, PKCE verifier, browser binding) → upstream
//   callback_path  → state consumed once, binding cookie checked, code redeemed,
//                    ID token / userinfo validated → upstream identity (issuer, sub)
//                  → link → Kanidm person (read-only directory) → interaction ends
//                    with that person (+ default_groups, amr "fed", acr)
//                  → no link → clear page, the service gets access_denied
//
// Self-service linking (/oauth2/federation/link): the browser's Kiwi ID
// session must come from a Kanidm sign-in moments ago; the person then signs
// in at the upstream, and the two are linked (proof of both sides).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { FederationConfig, UpstreamIdp } from '../config/federation.js';
import type { InteractionDetails, IssuerExtension, IssuerParts } from '../oidc/extension.js';
import { storeInteractionResult } from '../oidc/interactions/login-callback.js';
import { sendErrorPage } from '../server/error-page.js';
import { readBody } from '../server/read-body.js';
import type { StateStore } from '../state/store.js';
import { DirectoryError, personClaims, type Person, type PersonDirectory } from './directory.js';
import { LinkConflictError, type FederatedLink, type LinkStore } from './links.js';
import type { FederationMetrics, SignInResult } from './metrics.js';
import {
  choicePage, confirmLinkPage, federationErrorPage, linkChoicePage, linkedPage, linkNeedsKanidmPage, notLinkedPage, type ChoiceOption,
} from './pages.js';
import { UpstreamError, type UpstreamClient, type UpstreamIdentity } from './upstream-client.js';

export const LINK_PAGE = '/oauth2/federation/link';
/** Where the "link and continue" confirmation of an in-flow self-service link is posted. */
export const LINK_CONFIRM = '/oauth2/federation/link/confirm';
/** How recent the Kanidm sign-in behind a self-service link must be. */
export const SELF_LINK_WINDOW_S = 600;
const PENDING = 'FederationLogin';
const LINK_CSRF = 'FederationLinkCsrf';
const LINK_OFFER = 'FederationLinkOffer';
const PENDING_TTL_S = 600;
const KANIDM_CHOICE: ChoiceOption = { id: 'kanidm', label: 'Kanidm (password or passkey)' };

type Pending =
  | { purpose: 'signin'; idp: string; uid: string; nonce?: string; verifier: string; binding: string }
  | { purpose: 'link'; idp: string; person: string; sessionUid: string; nonce?: string; verifier: string; binding: string };

export interface SignInDeps {
  config: FederationConfig;
  issuer: string;
  store: StateStore;
  links: LinkStore;
  directory: PersonDirectory;
  metrics: FederationMetrics;
  /** One client per configured upstream IdP, by id. */
  clients: ReadonlyMap<string, UpstreamClient>;
  log: Logger;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url');
const noStore = { 'cache-control': 'no-store' };

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/** One cookie per pending login, scoped to the IdP's callback: it proves the callback comes to the browser that started. */
const bindingCookieName = (state: string) => `kiwi_fed_${sha256(state).slice(0, 16)}`;

function html(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...noStore, 'content-length': Buffer.byteLength(body) }).end(body);
}

async function readForm(req: IncomingMessage, limit = 16_384): Promise<URLSearchParams | undefined> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(String(req.headers['content-type'] ?? ''))) return undefined;
  const body = await readBody(req, limit);
  return body === null ? undefined : new URLSearchParams(body.toString('utf8'));
}

/** A Kiwi ID session whose sign-in went through Kanidm (not federated) within the window. */
interface KanidmProof {
  person: string;
  sessionUid: string;
}

export class FederatedSignIn implements IssuerExtension {
  private readonly callbacks = new Map<string, UpstreamIdp>();

  constructor(
    private readonly d: SignInDeps,
    private readonly parts: IssuerParts,
  ) {
    for (const idp of d.config.upstream_idps) this.callbacks.set(idp.callback_path, idp);
  }

  private get options(): ChoiceOption[] {
    return this.d.config.upstream_idps.map((i) => ({ id: i.id, label: i.display_name }));
  }

  matches(pathname: string): boolean {
    return pathname === LINK_PAGE || pathname === LINK_CONFIRM || this.callbacks.has(pathname);
  }

  async handle(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    try {
      if (pathname === LINK_PAGE) {
        if (req.method === 'GET') return await this.linkPage(req, res);
        if (req.method === 'POST') return await this.startLink(req, res);
        return sendErrorPage(req, res, 400, 'Use the Linked accounts page.');
      }
      if (pathname === LINK_CONFIRM) {
        if (req.method === 'POST') return await this.confirmLink(req, res);
        return sendErrorPage(req, res, 400, 'This sign-in could not be completed. Please start again from the service.');
      }
      const idp = this.callbacks.get(pathname)!;
      if (req.method !== 'GET') return sendErrorPage(req, res, 400, 'This sign-in could not be completed. Please start again from the service.');
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
      await this.begin(client, { purpose: 'signin', idp: choice, uid: details.uid }, res, req);
      return true;
    }
    const client = await this.parts.provider.Client.find(String(details.params.client_id));
    const service = client?.clientName ?? String(details.params.client_id);
    html(res, 200, choicePage(url.pathname, service, [KANIDM_CHOICE, ...this.options]));
    return true;
  }

  /** Pending login bound to this browser, then off to the upstream. */
  private async begin(
    client: UpstreamClient,
    what: { purpose: 'signin'; idp: string; uid: string } | { purpose: 'link'; idp: string; person: string; sessionUid: string },
    res: ServerResponse,
    req: IncomingMessage,
  ): Promise<void> {
    let started;
    try {
      started = await client.begin();
    } catch (err) {
      this.d.metrics.signIn(client.idp.id, 'unavailable');
      this.d.log.warn({ idp: client.idp.id, err_message: (err as Error).message }, 'upstream IdP unavailable');
      return sendErrorPage(req, res, 503, `${client.idp.display_name} cannot be reached right now. Please try again later or sign in another way.`);
    }
    const binding = randomBytes(32).toString('base64url');
    const pending: Pending = {
      ...what,
      verifier: started.pending.verifier,
      ...(started.pending.nonce && { nonce: started.pending.nonce }),
      binding: sha256(binding),
    } as Pending;
    await this.d.store.upsert(PENDING, started.pending.state, pending as unknown as Record<string, unknown>, PENDING_TTL_S);
    // Lax: sent on the upstream's top-level redirect back, never on cross-site subrequests.
    const cookie = `${bindingCookieName(started.pending.state)}=${binding}; Path=${client.idp.callback_path}; Max-Age=${PENDING_TTL_S}; HttpOnly; Secure; SameSite=Lax`;
    res.writeHead(303, { location: started.url.href, 'set-cookie': cookie, ...noStore }).end();
  }

  // --- the upstream's redirect back --------------------------------------

  private fail(idp: UpstreamIdp, result: SignInResult, reason: string, extra: Record<string, unknown> = {}): void {
    this.d.metrics.signIn(idp.id, result);
    this.d.log.warn({ idp: idp.id, result, reason, ...extra }, 'federated sign-in refused');
  }

  private async callback(idp: UpstreamIdp, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.d.issuer);
    const state = url.searchParams.get('state');
    const again = 'This sign-in could not be completed. Please start again from the service.';
    if (!state) {
      this.fail(idp, 'invalid_state', 'callback without state');
      return sendErrorPage(req, res, 400, again);
    }
    const rec = await this.d.store.find(PENDING, state);
    const pending = rec?.payload as unknown as Pending | undefined;
    if (!pending || pending.idp !== idp.id || (await this.d.store.consumeOnce(PENDING, state)) !== 'consumed') {
      this.fail(idp, 'invalid_state', 'unknown, expired, replayed or foreign state');
      return sendErrorPage(req, res, 400, again);
    }
    const cookieName = bindingCookieName(state);
    const presented = cookies(req).get(cookieName);
    res.setHeader('set-cookie', `${cookieName}=; Path=${idp.callback_path}; Max-Age=0; HttpOnly; Secure; SameSite=Lax`);
    if (!presented || !sameSecret(sha256(presented), pending.binding)) {
      this.fail(idp, 'invalid_state', 'callback reached a browser that did not start this sign-in');
      return sendErrorPage(req, res, 400, again);
    }

    let identity: UpstreamIdentity;
    try {
      identity = await this.d.clients.get(idp.id)!.complete(url, { state, verifier: pending.verifier, ...(pending.nonce && { nonce: pending.nonce }) });
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      this.fail(idp, err.kind, err.reason);
      if (pending.purpose === 'signin') return this.endSignIn(req, res, pending.uid, err);
      return html(res, err.kind === 'unavailable' ? 503 : 400, federationErrorPage(`Signing in at ${idp.display_name} did not succeed, so nothing was linked.`));
    }
    if (pending.purpose === 'link') return this.finishLink(idp, identity, pending, req, res);
    return this.finishSignIn(idp, identity, pending.uid, req, res);
  }

  /** The upstream part failed: the service hears access_denied (or temporarily_unavailable). */
  private async endSignIn(req: IncomingMessage, res: ServerResponse, uid: string, err: UpstreamError): Promise<void> {
    const error = err.kind === 'unavailable'
      ? { error: 'temporarily_unavailable', error_description: 'the upstream identity provider could not be reached' }
      : { error: 'access_denied', error_description: err.kind === 'upstream_denied' ? 'the upstream identity provider refused the sign-in' : 'the upstream sign-in response was not valid' };
    const returnTo = await storeInteractionResult(this.parts.provider, uid, error);
    if (!returnTo) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
    // A user who cancelled at the upstream goes straight back; anything else gets a page first.
    if (err.kind === 'upstream_denied') return void res.writeHead(303, { location: returnTo, ...noStore }).end();
    html(res, err.kind === 'unavailable' ? 503 : 400, federationErrorPage('Signing in there did not succeed.', returnTo));
  }

  private async finishSignIn(idp: UpstreamIdp, identity: UpstreamIdentity, uid: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let link = await this.d.links.find(identity.issuer, identity.sub);
    link ??= await this.linkByVerifiedEmail(idp, identity);
    if (!link) {
      // Signed in with Kanidm in this browser moments ago: offer to link (proof of both sides).
      const proof = await this.kanidmProof(req, res);
      if (proof) return this.offerLink(idp, identity, uid, proof, res);
      this.fail(idp, 'not_linked', 'upstream identity is not linked', { upstream_sub: identity.sub });
      const returnTo = await storeInteractionResult(this.parts.provider, uid, {
        error: 'access_denied',
        error_description: 'the upstream account is not linked to a Kiwi ID account',
      });
      if (!returnTo) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
      return html(res, 403, notLinkedPage(idp.display_name, returnTo, LINK_PAGE));
    }
    return this.signInAs(idp, identity, link, uid, req, res);
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
      const returnTo = await storeInteractionResult(this.parts.provider, uid, { error: 'access_denied', error_description: 'the linked account cannot sign in' });
      if (!returnTo) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
      return void res.writeHead(303, { location: returnTo, ...noStore }).end();
    }
    await this.parts.accounts.save(personClaims(person, idp.default_groups));
    await this.d.links.touch(link);
    const upstreamAmr = identity.amr?.length ? identity.amr : idp.default_amr;
    const amr = [...new Set(['fed', ...upstreamAmr])];
    const acr = identity.acr ?? idp.default_acr;
    const returnTo = await storeInteractionResult(this.parts.provider, uid, {
      login: { accountId: person.uuid, amr, ...(acr !== undefined && { acr }) },
    });
    if (!returnTo) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
    this.d.metrics.signIn(idp.id, 'success');
    this.d.log.info({ idp: idp.id, sub: person.uuid, link: link.id }, 'federated sign-in');
    res.writeHead(303, { location: returnTo, ...noStore }).end();
  }

  private async offerLink(idp: UpstreamIdp, identity: UpstreamIdentity, uid: string, proof: KanidmProof, res: ServerResponse): Promise<void> {
    const token = randomBytes(24).toString('base64url');
    await this.d.store.upsert(LINK_OFFER, token, {
      idp: idp.id, issuer: identity.issuer, sub: identity.sub, uid, ...proof,
      ...(identity.amr && { amr: [...identity.amr] }), ...(identity.acr && { acr: identity.acr }),
    }, PENDING_TTL_S);
    html(res, 200, confirmLinkPage(LINK_CONFIRM, token, idp.display_name, await this.personName(proof.person)));
  }

  /** "Link and continue" (or cancel) for an unlinked identity, in the browser whose Kanidm session was the proof. */
  private async confirmLink(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const token = form?.get('token') ?? '';
    const rec = token ? await this.d.store.find(LINK_OFFER, token) : undefined;
    const offer = rec?.payload as unknown as (KanidmProof & { idp: string; issuer: string; sub: string; uid: string; amr?: string[]; acr?: string }) | undefined;
    const proof = await this.kanidmProof(req, res);
    const idp = offer && this.d.config.upstream_idps.find((i) => i.id === offer.idp);
    if (!offer || !idp || !proof || proof.sessionUid !== offer.sessionUid || proof.person !== offer.person ||
        (await this.d.store.consumeOnce(LINK_OFFER, token)) !== 'consumed') {
      return sendErrorPage(req, res, 400, 'This sign-in could not be completed. Please start again from the service.');
    }
    if (form?.get('answer') !== 'link') {
      this.fail(idp, 'not_linked', 'the person declined to link', { upstream_sub: offer.sub });
      const returnTo = await storeInteractionResult(this.parts.provider, offer.uid, { error: 'access_denied', error_description: 'the upstream account is not linked to a Kiwi ID account' });
      if (!returnTo) return sendErrorPage(req, res, 400, 'This sign-in has expired. Please start again from the service.');
      return void res.writeHead(303, { location: returnTo, ...noStore }).end();
    }
    let link: FederatedLink;
    try {
      ({ link } = await this.d.links.link({
        issuer: offer.issuer, idp: idp.id, upstream_sub: offer.sub, person: offer.person, person_name: await this.personName(offer.person), how: 'self-service',
      }));
    } catch (err) {
      if (!(err instanceof LinkConflictError)) throw err;
      return html(res, 409, federationErrorPage(`This ${idp.display_name} account is already linked to another Kiwi ID account. Ask an administrator.`));
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

  // --- self-service linking ----------------------------------------------

  private async kanidmProof(req: IncomingMessage, res: ServerResponse): Promise<KanidmProof | undefined> {
    const session = await this.parts.provider.Session.get({ req, res } as never);
    const s = session as unknown as { accountId?: string; uid: string; loginTs?: number; amr?: string[] };
    if (!s.accountId || !s.loginTs || s.amr?.includes('fed')) return undefined;
    if (Math.floor(Date.now() / 1000) - s.loginTs > SELF_LINK_WINDOW_S) return undefined;
    return { person: s.accountId, sessionUid: s.uid };
  }

  private async personName(person: string): Promise<string> {
    return (await this.parts.accounts.find(person))?.preferred_username ?? person;
  }

  private async linkPage(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const proof = await this.kanidmProof(req, res);
    if (!proof) return html(res, 200, linkNeedsKanidmPage(SELF_LINK_WINDOW_S / 60));
    const csrf = randomBytes(24).toString('base64url');
    await this.d.store.upsert(LINK_CSRF, csrf, { ...proof }, PENDING_TTL_S);
    html(res, 200, linkChoicePage(LINK_PAGE, await this.personName(proof.person), csrf, this.options));
  }

  private async startLink(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const csrf = form?.get('csrf') ?? '';
    const rec = csrf ? await this.d.store.find(LINK_CSRF, csrf) : undefined;
    const proof = await this.kanidmProof(req, res);
    const bound = rec?.payload as unknown as KanidmProof | undefined;
    if (!bound || !proof || bound.sessionUid !== proof.sessionUid || bound.person !== proof.person ||
        (await this.d.store.consumeOnce(LINK_CSRF, csrf)) !== 'consumed') {
      return html(res, 400, linkNeedsKanidmPage(SELF_LINK_WINDOW_S / 60));
    }
    const client = this.d.clients.get(form?.get('idp') ?? '');
    if (!client) return sendErrorPage(req, res, 400, 'Unknown identity provider.');
    await this.begin(client, { purpose: 'link', idp: client.idp.id, person: proof.person, sessionUid: proof.sessionUid }, res, req);
  }

  private async finishLink(
    idp: UpstreamIdp,
    identity: UpstreamIdentity,
    pending: Extract<Pending, { purpose: 'link' }>,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    // Still the same Kanidm-signed-in session that asked for the link.
    const session = await this.parts.provider.Session.get({ req, res } as never);
    const s = session as unknown as { accountId?: string; uid: string };
    if (s.uid !== pending.sessionUid || s.accountId !== pending.person) {
      this.d.log.warn({ idp: idp.id }, 'self-service link refused: the Kiwi ID session changed meanwhile');
      return html(res, 400, linkNeedsKanidmPage(SELF_LINK_WINDOW_S / 60));
    }
    const name = await this.personName(pending.person);
    try {
      const { link, created } = await this.d.links.link({
        issuer: identity.issuer, idp: idp.id, upstream_sub: identity.sub, person: pending.person, person_name: name, how: 'self-service',
      });
      this.d.log.info({ idp: idp.id, person: link.person, link: link.id, created }, 'self-service link');
    } catch (err) {
      if (!(err instanceof LinkConflictError)) throw err;
      this.d.log.warn({ idp: idp.id, person: pending.person }, 'self-service link refused: identity linked to another person');
      return html(res, 409, federationErrorPage(`This ${idp.display_name} account is already linked to another Kiwi ID account. Ask an administrator.`));
    }
    html(res, 200, linkedPage(idp.display_name, name));
  }
}
