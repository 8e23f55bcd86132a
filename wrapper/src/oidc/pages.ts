// The few pages the issuer itself renders (errors, logout confirmation and
// success). Self-contained: no external fonts or scripts (oidc-provider's
// defaults pull Google Fonts, which an identity provider must not do), no
// internals in error text.
import { escapeHtml, htmlPage } from '../server/html.js';

export function errorPage(error: string, description: string): string {
  return htmlPage('Sign-in error', `<h1>Sign-in error</h1><p><code>${escapeHtml(error)}</code>: ${escapeHtml(description)}</p>`);
}

/** `form` is oidc-provider's hidden form (id "op.logoutForm", with its xsrf token). */
export function logoutPage(host: string, form: string): string {
  return htmlPage(
    'Sign out',
    `<h1>Sign out of ${escapeHtml(host)}?</h1>${form}` +
      '<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>' +
      '<button type="submit" form="op.logoutForm">No, stay signed in</button>',
  );
}

export function logoutDonePage(): string {
  return htmlPage('Signed out', '<h1>Signed out</h1><p>You have been signed out of Kiwi ID.</p>');
}
