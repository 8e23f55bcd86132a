// The "Linked accounts" page (/oauth2/federation/link): a person who signed in
// with Kanidm moments ago links an upstream identity to themselves by signing
// in there too. The page's form carries a single-use token bound to that Kiwi
// ID session; the upstream's callback (sign-in.ts routes it here) links only
// if the same session and person are still at the browser.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { UpstreamIdp } from '../config/federation.js';
import type { IssuerParts } from '../oidc/extension.js';
import { sendErrorPage } from '../server/error-page.js';
import { sendHtml } from '../server/html.js';
import { readForm } from '../server/read-body.js';
import { kanidmProof, personName, sameProof, sameSession, SELF_LINK_WINDOW_S, type KanidmProof } from './kanidm-proof.js';
import { LinkConflictError } from './links.js';
import type { FederationParts } from './parts.js';
import { alreadyLinkedPage, idpChoices, linkChoicePage, linkedPage, linkNeedsKanidmPage } from './pages.js';
import { PENDING_TTL_S, sendToUpstream, type Pending } from './pending-login.js';
import type { UpstreamClient, UpstreamIdentity } from './upstream-client.js';

export const LINK_PAGE = '/oauth2/federation/link';
/** The state store's model of the page's single-use form tokens. */
const LINK_CSRF = 'FederationLinkCsrf';

/** What linking needs of federation's parts; the sign-in flow's dependencies extend it. */
export interface LinkDeps extends Pick<FederationParts, 'config' | 'store' | 'links' | 'metrics' | 'log'> {
  /** One client per configured upstream IdP, by id. */
  clients: ReadonlyMap<string, UpstreamClient>;
}

export class SelfServiceLinks {
  constructor(
    private readonly d: LinkDeps,
    private readonly parts: IssuerParts,
  ) {}

  private needsKanidm(res: ServerResponse, status = 200): void {
    sendHtml(res, status, linkNeedsKanidmPage(SELF_LINK_WINDOW_S / 60));
  }

  /** GET: the IdPs to link, for a person with a fresh Kanidm sign-in; otherwise how to get one. */
  async page(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const proof = await kanidmProof(this.parts.provider, req, res);
    if (!proof) return this.needsKanidm(res);
    const csrf = randomBytes(24).toString('base64url');
    await this.d.store.upsert(LINK_CSRF, csrf, { ...proof }, PENDING_TTL_S);
    sendHtml(res, 200, linkChoicePage(LINK_PAGE, await personName(this.parts.accounts, proof.person), csrf, idpChoices(this.d.config.upstream_idps)));
  }

  /** POST: the chosen IdP, from the same session the form was made for; off to sign in there. */
  async start(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const csrf = form?.get('csrf') ?? '';
    const rec = csrf ? await this.d.store.find(LINK_CSRF, csrf) : undefined;
    const bound = rec?.payload as unknown as KanidmProof | undefined;
    const proof = await kanidmProof(this.parts.provider, req, res);
    if (!bound || !proof || !sameProof(bound, proof) ||
        (await this.d.store.consumeOnce(LINK_CSRF, csrf)) !== 'consumed') {
      return this.needsKanidm(res, 400);
    }
    const client = this.d.clients.get(form?.get('idp') ?? '');
    if (!client) return sendErrorPage(req, res, 400, 'Unknown identity provider.');
    await sendToUpstream(this.d, client, { purpose: 'link', idp: client.idp.id, person: proof.person, sessionUid: proof.sessionUid }, req, res);
  }

  /** The upstream's callback for a link: the identity is linked to the person who asked. */
  async finish(idp: UpstreamIdp, identity: UpstreamIdentity, pending: Extract<Pending, { purpose: 'link' }>, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!(await sameSession(this.parts.provider, { person: pending.person, sessionUid: pending.sessionUid }, req, res))) {
      this.d.log.warn({ idp: idp.id }, 'self-service link refused: the Kiwi ID session changed meanwhile');
      return this.needsKanidm(res, 400);
    }
    const name = await personName(this.parts.accounts, pending.person);
    try {
      const { link, created } = await this.d.links.link({
        issuer: identity.issuer, idp: idp.id, upstream_sub: identity.sub, person: pending.person, person_name: name, how: 'self-service',
      });
      this.d.log.info({ idp: idp.id, person: link.person, link: link.id, created }, 'self-service link');
    } catch (err) {
      if (!(err instanceof LinkConflictError)) throw err;
      this.d.log.warn({ idp: idp.id, person: pending.person }, 'self-service link refused: identity linked to another person');
      return sendHtml(res, 409, alreadyLinkedPage(idp.display_name));
    }
    sendHtml(res, 200, linkedPage(idp.display_name, name));
  }
}
