// The pages federation shows: the sign-in choice, the "not linked" answer,
// and the self-service link pages. Self-contained like the issuer's own pages
// (one inline style, no scripts, no external resources); every value escaped.
import type { UpstreamIdp } from '../config/federation.js';
import { escapeHtml, htmlPage } from '../server/html.js';

export interface ChoiceOption {
  id: string;
  label: string;
}

/** One choice per configured upstream IdP, for the sign-in step and the Linked accounts page. */
export function idpChoices(idps: readonly UpstreamIdp[]): ChoiceOption[] {
  return idps.map((i) => ({ id: i.id, label: i.display_name }));
}

/** The sign-in step: Kanidm (password / passkey) and one button per upstream IdP. */
export function choicePage(action: string, service: string | undefined, options: readonly ChoiceOption[]): string {
  const buttons = options
    .map((o) => `<p><button type="submit" name="login" value="${escapeHtml(o.id)}">${escapeHtml(o.label)}</button></p>`)
    .join('');
  const to = service ? `<p>to continue to <strong>${escapeHtml(service)}</strong></p>` : '';
  return htmlPage('Sign in', `<h1>Sign in</h1>${to}<form method="get" action="${escapeHtml(action)}">${buttons}</form>`);
}

export function notLinkedPage(idpName: string, returnTo: string, linkPage: string): string {
  return htmlPage(
    'Account not linked',
    `<h1>Account not linked</h1><p>Your ${escapeHtml(idpName)} account is not linked to a Kiwi ID account, so it cannot be used to sign in here.</p>` +
      `<p>Ask an administrator to link it, or link it yourself: sign in with Kanidm (password or passkey), then open ` +
      `<a href="${escapeHtml(linkPage)}">Linked accounts</a> within a few minutes and sign in with ${escapeHtml(idpName)} there.</p>` +
      `<p><a href="${escapeHtml(returnTo)}">Return to the service</a></p>`,
  );
}

/** An unlinked upstream account came back to a browser just signed in with Kanidm: link the two? */
export function confirmLinkPage(action: string, token: string, idpName: string, person: string): string {
  return htmlPage(
    'Link your account',
    `<h1>Link your account?</h1><p>Your ${escapeHtml(idpName)} account is not linked yet. You signed in with Kanidm as ` +
      `<strong>${escapeHtml(person)}</strong> a moment ago. Link the ${escapeHtml(idpName)} account to it? It will then sign you in as ${escapeHtml(person)}.</p>` +
      `<form method="post" action="${escapeHtml(action)}"><input type="hidden" name="token" value="${escapeHtml(token)}">` +
      '<button type="submit" name="answer" value="link">Link and continue</button><button type="submit" name="answer" value="cancel">Cancel</button></form>',
  );
}

export function linkChoicePage(action: string, person: string, csrf: string, options: readonly ChoiceOption[]): string {
  const buttons = options
    .map((o) => `<p><button type="submit" name="idp" value="${escapeHtml(o.id)}">Link ${escapeHtml(o.label)}</button></p>`)
    .join('');
  return htmlPage(
    'Linked accounts',
    `<h1>Linked accounts</h1><p>Signed in as <strong>${escapeHtml(person)}</strong>. Sign in at one of these to link it to your account:</p>` +
      `<form method="post" action="${escapeHtml(action)}"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}">${buttons}</form>`,
  );
}

export function linkNeedsKanidmPage(windowMinutes: number): string {
  return htmlPage(
    'Linked accounts',
    `<h1>Linked accounts</h1><p>To link an account, first sign in with Kanidm (password or passkey) to any KiwiStack service in this browser, ` +
      `then come back here within ${windowMinutes} minutes.</p>`,
  );
}

export function linkedPage(idpName: string, person: string): string {
  return htmlPage('Account linked', `<h1>Account linked</h1><p>Your ${escapeHtml(idpName)} account now signs you in as <strong>${escapeHtml(person)}</strong>.</p>`);
}

/** A link was refused because the upstream identity already belongs to another person. */
export function alreadyLinkedPage(idpName: string): string {
  return federationErrorPage(`This ${idpName} account is already linked to another Kiwi ID account. Ask an administrator.`);
}

export function federationErrorPage(message: string, returnTo?: string): string {
  const back = returnTo ? `<p><a href="${escapeHtml(returnTo)}">Return to the service</a></p>` : '';
  return htmlPage('Sign-in error', `<h1>Sign-in error</h1><p>${escapeHtml(message)}</p>${back}`);
}
