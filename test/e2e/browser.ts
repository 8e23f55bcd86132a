// Headless Debian chromium via playwright-core, trusting a test CA the honest
// way: the CA goes into a private NSS database (the store Chromium uses on
// Linux) in a throwaway HOME. Certificate errors are never ignored; WebAuthn
// would refuse a page with one anyway.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** `caFile`: one CA, or several (e.g. Kiwi ID's and an upstream IdP's), each trusted for TLS servers only. */
export async function launchTrusting(caFile: string | readonly string[]): Promise<{ browser: Browser; newPage: () => Promise<Page>; close: () => Promise<void> }> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-browser-home-'));
  const db = `sql:${path.join(home, '.pki/nssdb')}`;
  fs.mkdirSync(path.join(home, '.pki/nssdb'), { recursive: true });
  execFileSync('certutil', ['-d', db, '-N', '--empty-password']);
  for (const [i, ca] of [caFile].flat().entries()) {
    execFileSync('certutil', ['-d', db, '-A', '-t', 'C,,', '-n', i === 0 ? 'kiwi-test-ca' : `kiwi-test-ca-${i}`, '-i', ca]);
  }
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      env: { ...process.env, HOME: home },
      // Running as root in CI containers needs --no-sandbox; TLS checks stay on.
      args: ['--no-sandbox'],
    });
  } catch (err) {
    fs.rmSync(home, { recursive: true, force: true });
    throw err;
  }
  return {
    browser,
    // A page in a context of its own: its own cookies, so a fresh visitor.
    newPage: async () => (await browser.newContext()).newPage(),
    close: async () => {
      try {
        await browser.close();
      } finally {
        fs.rmSync(home, { recursive: true, force: true });
      }
    },
  };
}
