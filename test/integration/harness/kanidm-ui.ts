// Kanidm's own web UI, driven in Chromium the way a person uses it: the
// credential-reset page (password + TOTP, or a passkey) and the login pages.
// Only Kanidm's pages are touched here; what Kiwi ID does around them is what
// the tests assert.
import * as OTPAuth from 'otpauth';
import type { CDPSession, Locator, Page, Request, Response } from 'playwright-core';

/**
 * Runs a step on Kanidm's pages; if it fails, the error also names every
 * answer the page got that was not a success (Kanidm's reset page swaps
 * nothing in on an error status, so the step only sees a button that never
 * comes) and what the page showed.
 */
async function explained<T>(page: Page, what: string, step: () => Promise<T>): Promise<T> {
  const failures: string[] = [];
  const onResponse = (r: Response) => {
    if (r.status() >= 400) failures.push(`${r.request().method()} ${new URL(r.url()).pathname} -> ${r.status()}`);
  };
  const onFailed = (r: Request) => failures.push(`${r.method()} ${new URL(r.url()).pathname} failed: ${r.failure()?.errorText}`);
  page.on('response', onResponse);
  page.on('requestfailed', onFailed);
  try {
    return await step();
  } catch (err) {
    const shown = await page.locator('body').innerText({ timeout: 1000 }).catch(() => '(page unreadable)');
    throw new Error(`${what} failed at ${page.url()}\nnon-success answers: ${failures.join('; ') || 'none'}\npage: ${shown.slice(0, 500)}`, {
      cause: err,
    });
  } finally {
    page.off('response', onResponse);
    page.off('requestfailed', onFailed);
  }
}

/** Opens a reset link and sets a password, then a TOTP; returns the enrolled TOTP generator. */
export function enrolPasswordAndTotp(page: Page, resetUrl: string, password: string): Promise<OTPAuth.TOTP> {
  return explained(page, 'enrolling a password and a TOTP', () => enrolPasswordAndTotpSteps(page, resetUrl, password));
}

/**
 * Kanidm's reset page is htmx 1.9: content it swaps in gets its handlers in
 * the settle step, 20 ms later (htmx's settle delay), and a click on a button
 * before that does nothing at all. So a button on that page is clicked once it
 * is there and htmx has nothing in flight or still to settle.
 */
async function clickSettled(page: Page, button: Locator): Promise<void> {
  await button.waitFor();
  await page.waitForFunction(() => document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added') === null);
  await button.click();
}

async function enrolPasswordAndTotpSteps(page: Page, resetUrl: string, password: string): Promise<OTPAuth.TOTP> {
  await page.goto(resetUrl);
  await clickSettled(page, page.getByRole('button', { name: 'Add Password' }));
  await page.locator('#new-password').fill(password);
  await page.locator('#new-password-check').fill(password);
  await clickSettled(page, page.getByRole('button', { name: 'Submit' }));
  await clickSettled(page, page.getByRole('button', { name: 'Add TOTP' }));
  const uri = (await page.locator('#totpInfo code').innerText()).trim();
  const totp = OTPAuth.URI.parse(uri);
  if (!(totp instanceof OTPAuth.TOTP)) throw new Error(`not a TOTP URI: ${uri}`);
  await page.locator('#new-totp-name').fill('phone');
  await page.locator('#new-totp-check').fill(totp.generate());
  await clickSettled(page, page.getByRole('button', { name: 'Add', exact: true }));
  await page.getByText('Registered authenticators').waitFor();
  await clickSettled(page, page.getByRole('button', { name: 'Save Changes' }));
  await page.waitForURL(/\/ui\/login/);
  return totp;
}

export interface VirtualAuthenticator {
  id: string;
  cdp: CDPSession;
  remove(): Promise<void>;
}

/** A platform authenticator with resident keys and user verification (Chromium's WebAuthn domain). */
export async function addVirtualAuthenticator(page: Page): Promise<VirtualAuthenticator> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    id: authenticatorId,
    cdp,
    remove: async () => {
      await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
    },
  };
}

/** Opens a reset link and registers a passkey with the page's virtual authenticator. */
export function enrolPasskey(page: Page, resetUrl: string): Promise<void> {
  return explained(page, 'enrolling a passkey', () => enrolPasskeySteps(page, resetUrl));
}

async function enrolPasskeySteps(page: Page, resetUrl: string): Promise<void> {
  await page.goto(resetUrl);
  await clickSettled(page, page.getByRole('button', { name: 'Add Passkey' }));
  await page.locator('#passkey-label, input[name=name]').first().fill('laptop');
  await clickSettled(page, page.getByRole('button', { name: /^(Submit|Add|Begin|Register)/ }).first());
  await page.getByText('Registered authenticators').or(page.getByText('Passkeys')).first().waitFor();
  await clickSettled(page, page.getByRole('button', { name: 'Save Changes' }));
  await page.waitForURL(/\/ui\/login/);
}

export interface Credentials {
  username: string;
  password?: string;
  totp?: OTPAuth.TOTP;
  /** A code to type instead of the current one (to test a wrong code). */
  totpCode?: string;
}

/**
 * Answers Kanidm's login pages (username, then whichever of TOTP, password or
 * passkey it asks for) until the browser leaves /ui/login.
 */
export async function kanidmLogin(page: Page, c: Credentials): Promise<void> {
  await page.locator('input[name=username]').fill(c.username);
  await page.getByRole('button', { name: 'Begin' }).click();
  for (let step = 0; step < 4; step++) {
    await page.waitForLoadState();
    if (!/\/ui\/login/.test(page.url())) return;
    if (await page.locator('input[name=totp]').isVisible()) {
      await page.locator('input[name=totp]').fill(c.totpCode ?? c.totp!.generate());
      await page.getByRole('button', { name: 'Submit' }).click();
    } else if (await page.locator('input[name=password]').isVisible()) {
      await page.locator('input[name=password]').fill(c.password ?? '');
      await page.getByRole('button', { name: 'Submit' }).click();
    } else {
      return; // a passkey page (the authenticator answers by itself) or an error page
    }
  }
}
