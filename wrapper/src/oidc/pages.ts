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

// Device authorization grant (RFC 8628): the page where a user enters the
// code their CLI tool shows, confirms it, and (after signing in through the
// same login as every other sign-in) is told to return to the device.
const DEVICE_INPUT_ERRORS: Record<string, string> = {
  NoCodeError: 'Enter the code shown on your device.',
  NotFoundError: 'That code is not known. Check it and try again.',
  ExpiredError: 'That code has expired. Start again on your device.',
  AlreadyUsedError: 'That code has already been used. Start again on your device.',
  AbortedError: 'Sign-in cancelled. Nothing was shared with the device.',
};

/** `form` is oidc-provider's form (id "op.deviceInputForm", with its xsrf token); `errorName` is set on re-render. */
export function deviceInputPage(form: string, errorName?: string): string {
  const msg = errorName
    ? `<p role="alert"><strong>${escapeHtml(DEVICE_INPUT_ERRORS[errorName] ?? 'That did not work. Start again on your device.')}</strong></p>`
    : '<p>Enter the code shown on your device.</p>';
  return htmlPage(
    'Connect a device',
    `<h1>Connect a device</h1>${msg}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
  );
}

/** `form` is oidc-provider's confirm form (id "op.deviceConfirmForm"); the abort button reuses it. */
export function deviceConfirmPage(form: string, clientName: string, userCode: string): string {
  return htmlPage(
    'Connect a device',
    `<h1>Connect ${escapeHtml(clientName)}?</h1>` +
      `<p>Check that your device shows this code:</p><p><code>${escapeHtml(userCode)}</code></p>` +
      '<p>If you did not start this on a device of yours, cancel.</p>' +
      form +
      '<button autofocus type="submit" form="op.deviceConfirmForm">Continue and sign in</button>' +
      '<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel</button>',
  );
}

export function deviceDonePage(clientName: string): string {
  return htmlPage(
    'Device connected',
    `<h1>Device connected</h1><p>${escapeHtml(clientName)} is signed in. You can close this page and return to your device.</p>`,
  );
}
