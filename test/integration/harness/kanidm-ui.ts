// Kanidm's own web UI, driven in Chromium the way a person uses it: the
// credential-reset page (password + TOTP, or a passkey) and the login pages.
// Only Kanidm's pages are touched here; what Kiwi ID does around them is what
// the tests assert.
import * as OTPAuth from 'otpauth';
import type { CDPSession, Page } from 'playwright-core';

/** Opens a reset link and sets a password, then a TOTP; returns the enrolled TOTP generator. */
export async function enrolPasswordAndTotp(page: Page, resetUrl: string, password: string): Promise<OTPAuth.TOTP> {
  await page.goto(resetUrl);
  await page.getByRole('button', { name: 'Add Password' }).click();
  await page.locator('#new-password').fill(password);
  await page.locator('#new-password-check').fill(password);
  await page.getByRole('button', { name: 'Submit' }).click();
  await page.getByRole('button', { name: 'Add TOTP' }).click();
  const uri = (await page.locator('#totpInfo code').innerText()).trim();
  const totp = OTPAuth.URI.parse(uri);
  if (!(totp instanceof OTPAuth.TOTP)) throw new Error(`not a TOTP URI: ${uri}`);
  await page.locator('#new-totp-name').fill('phone');
  await page.locator('#new-totp-check').fill(totp.generate());
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.getByText('Registered authenticators').waitFor();
  await page.getByRole('button', { name: 'Save Changes' }).click();
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
export async function enrolPasskey(page: Page, resetUrl: string): Promise<void> {
  await page.goto(resetUrl);
  await page.getByRole('button', { name: 'Add Passkey' }).click();
  await page.locator('#passkey-label, input[name=name]').first().fill('laptop');
  await page.getByRole('button', { name: /^(Submit|Add|Begin|Register)/ }).first().click();
  await page.getByText('Registered authenticators').or(page.getByText('Passkeys')).first().waitFor();
  await page.getByRole('button', { name: 'Save Changes' }).click();
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
