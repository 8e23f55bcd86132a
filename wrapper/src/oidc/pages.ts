// The few pages the issuer itself renders (errors, logout confirmation and
// success). Self-contained: no external fonts or scripts (oidc-provider's
// defaults pull Google Fonts, which an identity provider must not do), no
// internals in error text.
const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE =
  'body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#222}' +
  'button{font:inherit;padding:.5rem 1rem;margin:.25rem .5rem .25rem 0;cursor:pointer}code{font-size:1.1em}';

function page(title: string, body: string): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`
  );
}

export function errorPage(error: string, description: string): string {
  return page('Sign-in error', `<h1>Sign-in error</h1><p><code>${escapeHtml(error)}</code>: ${escapeHtml(description)}</p>`);
}

/** `form` is oidc-provider's hidden form (id "op.logoutForm", with its xsrf token). */
export function logoutPage(host: string, form: string): string {
  return page(
    'Sign out',
    `<h1>Sign out of ${escapeHtml(host)}?</h1>${form}` +
      '<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>' +
      '<button type="submit" form="op.logoutForm">No, stay signed in</button>',
  );
}

export function logoutDonePage(): string {
  return page('Signed out', '<h1>Signed out</h1><p>You have been signed out of Kiwi ID.</p>');
}
