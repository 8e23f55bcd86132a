// Sign-in attempts per source address are limited in front of Kanidm (429
// with Retry-After and a clear page), and Kanidm's own per-account soft lock
// still applies behind the limit. Plain HTTP against Kanidm's real login forms.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type * as OTPAuth from 'otpauth';
import { launchTrusting } from '../e2e/browser.js';
import { enrolPasswordAndTotp } from './harness/kanidm-ui.js';
import { HttpBrowser } from './harness/http-browser.js';
import { KiwiNode } from './harness/kiwi-node.js';

const LIMIT = 12; // exactly what the first test spends
const node = new KiwiNode({ name: 'bruteforce', extraConfig: [`auth_rate_limit = ${LIMIT}`] });
const PASSWORD = 'kiwi-correct-horse-battery-9';
let totp: OTPAuth.TOTP;

before(async () => {
  await node.init();
  await node.start();
  await node.loginIdmAdmin();
  const made = await node.kanidm(['person', 'create', 'carol', 'Carol Example']);
  assert.equal(made.exitCode, 0, made.stderr);
  const link = (await node.kiwi(['reset-link', 'carol'])).stdout.split('\n')[0]!;
  const browser = await launchTrusting(node.caPath);
  try {
    totp = await enrolPasswordAndTotp(await browser.newPage(), link, PASSWORD);
  } finally {
    await browser.close();
  }
});
after(() => node.close());

/** One UI login of carol up to (not including) the password step: begin + TOTP. */
async function upToPassword(): Promise<HttpBrowser> {
  const b = new HttpBrowser(node.dispatcher!, [node.base]);
  await b.go(`${node.base}/ui/login`);
  const begin = await b.go(`${node.base}/ui/login/begin`, { form: { username: 'carol' } });
  assert.equal(begin.status, 200, begin.text.slice(0, 200));
  const t = await b.go(`${node.base}/ui/login/totp`, { form: { totp: totp.generate() } });
  assert.match(t.text, /name="password"/, 'Kanidm asks for the password next');
  return b;
}

test("Kanidm's own soft lock applies behind the wrapper: concurrent wrong passwords lock the account", async () => {
  // 4 sessions × 2 counted steps = 8 of the 12 attempts.
  const sessions = await Promise.all([1, 2, 3, 4].map(() => upToPassword()));
  const answers = await Promise.all(sessions.map((b) => b.go(`${node.base}/ui/login/pw`, { form: { password: 'wrong-password' } })));
  const reasons = answers.map((a) => /Reason: ([^<\n]+)/.exec(a.text)?.[1]?.trim());
  assert.ok(reasons.includes('incorrect password'), JSON.stringify(reasons));
  assert.ok(reasons.includes('Account is temporarily locked'), JSON.stringify(reasons));
});

test('past the limit an address gets 429 with Retry-After and a clear page; Kanidm never sees the attempt', async () => {
  // The first test used all 12: 4 sessions × (begin, TOTP, password).
  const kanidmSaw = () => node.lines().filter((l) => /POST.*\/ui\/login\/begin/.test(l.upstream_line ?? '')).length;
  // Kanidm's lines reach this test through the wrapper's output, as they arrive.
  await node.until('Kanidm logged the sign-in steps it got (the first test sent 4)', async () => kanidmSaw() >= 4, 30_000);
  const before = kanidmSaw();
  const b = new HttpBrowser(node.dispatcher!, [node.base]);
  const refused = await b.fetch(`${node.base}/ui/login/begin`, { form: { username: 'carol', password: PASSWORD, totp: totp.generate() } });
  assert.equal(refused.status, 429);
  assert.ok(Number(refused.headers['retry-after']) > 0 && Number(refused.headers['retry-after']) <= 300, String(refused.headers['retry-after']));
  assert.match(String(refused.headers['content-type']), /text\/html/);
  assert.match(refused.text, /Too many sign-in attempts from your address\. Please wait \d+ seconds/);
  const json = await b.fetch(`${node.base}/v1/auth`, { json: { step: { init2: { username: 'carol', issue: 'token', privileged: false } } }, headers: { accept: 'application/json' } });
  assert.equal(json.status, 429);
  assert.equal(JSON.parse(json.text).error, 'too_many_requests');
  assert.equal(kanidmSaw(), before, 'the refused attempts never reached Kanidm');
  // Pages that carry no credential are not limited.
  assert.equal((await b.fetch(`${node.base}/ui/login`)).status, 200);
  assert.match((await node.get('/metrics')).text, /kiwi_http_requests_total\{route="proxy",method="POST",status="429"\} 2/);
});
