// Kanidm's own JSON API (/v1), spoken the way its CLI and UI speak it, so
// tests can sign in, create persons and give them credentials through
// whatever origin they point it at (the wrapper's listen_addr, or Kanidm's
// loopback for a side-by-side comparison).
//
// Facts (Kanidm 1.11.1, proto/src/v1/auth.rs and server/core/src/https/v1.rs):
// - POST /v1/auth steps: {init2:{username,issue,privileged}} -> {begin:MECH}
//   -> {cred:{password}} (-> {cred:{totp}}). The session id comes back in the
//   X-KANIDM-AUTH-SESSION-ID header (and an auth-session-id cookie); either is
//   accepted on the next step. Success carries the bearer token.
// - Persons need MFA by default: password + TOTP through the credential
//   update API: GET /v1/person/{id}/_credential/_update_intent ->
//   POST /v1/credential/_exchange_intent (the intent token string) ->
//   POST /v1/credential/_update [CURequest, session] ... -> _commit.
// - New TOTP secrets are SHA256, 6 digits, 30 s (CURegState::TotpCheck).
import * as OTPAuth from 'otpauth';
import { request, type Dispatcher } from 'undici';
import type { HttpBrowser, Step } from './http-browser.js';

const SESSION_HEADER = 'x-kanidm-auth-session-id';

export class KanidmApiError extends Error {
  constructor(
    readonly status: number,
    readonly what: string,
    readonly body: string,
  ) {
    super(`${what}: HTTP ${status} ${body.slice(0, 300)}`);
  }
}

export interface Credentials {
  password: string;
  /** Needed for persons (MFA); idm_admin and admin sign in with a password alone. */
  totp?: OTPAuth.TOTP;
}

export interface AuthOptions {
  /** A read-write session at once (as `kanidm login` does for admin accounts). */
  privileged?: boolean;
  /** 'cookie' also sets Kanidm's bearer cookie on the response. */
  issue?: 'token' | 'cookie';
  /** Extra request headers on every step (e.g. X-Forwarded-For a client made up). */
  headers?: Record<string, string>;
}

export interface PersonCredentials {
  password: string;
  totp: OTPAuth.TOTP;
}

type CUStatus = { mfaregstate: unknown; can_commit: boolean; warnings: unknown[] } & Record<string, unknown>;
type CUSession = { token: string };

export class KanidmApi {
  constructor(
    /** Origin to talk to, e.g. the wrapper's https://localhost:PORT. */
    readonly base: string,
    readonly dispatcher: Dispatcher,
  ) {}

  /** One JSON call; throws KanidmApiError on a non-2xx answer. */
  async call<T>(method: string, path: string, o: { token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ data: T; headers: Record<string, string | string[] | undefined> }> {
    const headers: Record<string, string> = { accept: 'application/json', ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(this.base + path, {
      dispatcher: this.dispatcher,
      method: method as 'GET',
      headers,
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) throw new KanidmApiError(res.statusCode, `${method} ${path}`, text);
    return { data: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
  }

  /** Signs in through /v1/auth; returns the bearer token. */
  async login(username: string, creds: Credentials, o: AuthOptions = {}): Promise<string> {
    let session: string | undefined;
    const step = async (s: unknown) => {
      const headers = { ...o.headers, ...(session ? { [SESSION_HEADER]: session } : {}) };
      const { data, headers: h } = await this.call<{ state: Record<string, unknown> }>('POST', '/v1/auth', { body: { step: s }, headers });
      const next = h[SESSION_HEADER];
      if (typeof next === 'string') session = next;
      return data.state;
    };
    const choose = await step({ init2: { username, issue: o.issue ?? 'token', privileged: o.privileged ?? false } });
    if (!('choose' in choose)) throw new Error(`auth ${username}: expected a choice of mechanisms, got ${JSON.stringify(choose)}`);
    const mech = creds.totp ? 'passwordmfa' : 'password';
    if (!(choose.choose as string[]).includes(mech)) throw new Error(`auth ${username}: ${mech} not offered (${JSON.stringify(choose.choose)})`);
    let state = await step({ begin: mech });
    // Kanidm asks for the factors in its own order (TOTP before password for passwordmfa).
    for (let i = 0; i < 3 && 'continue' in state; i++) {
      const allowed = state.continue as unknown[];
      if (allowed.includes('totp')) {
        if (!creds.totp) throw new Error(`auth ${username}: TOTP asked for but none given`);
        state = await step({ cred: { totp: Number(creds.totp.generate()) } });
      } else if (allowed.includes('password')) {
        state = await step({ cred: { password: creds.password } });
      } else {
        throw new Error(`auth ${username}: cannot answer ${JSON.stringify(allowed)}`);
      }
    }
    if ('success' in state) return state.success as string;
    throw new Error(`auth ${username}: ${JSON.stringify(state)}`);
  }

  /** Creates a person (needs a privileged idm_admin token). */
  async createPerson(token: string, name: string, displayName: string): Promise<void> {
    await this.call('POST', '/v1/person', { token, body: { attrs: { name: [name], displayname: [displayName] } } });
  }

  /** The person's entry, or undefined when there is none. */
  async getPerson(token: string, name: string): Promise<{ attrs: Record<string, string[]> } | undefined> {
    const { data } = await this.call<{ attrs: Record<string, string[]> } | null>('GET', `/v1/person/${encodeURIComponent(name)}`, { token });
    return data ?? undefined;
  }

  /** A credential reset token for `name`, as `kanidm person credential create-reset-token` makes. */
  async resetToken(token: string, name: string): Promise<string> {
    const { data } = await this.call<{ token: string }>('GET', `/v1/person/${encodeURIComponent(name)}/_credential/_update_intent`, { token });
    return data.token;
  }

  /** Sets a password and a new TOTP for `name` through Kanidm's credential update API. */
  async setPasswordAndTotp(token: string, name: string, password: string): Promise<PersonCredentials> {
    const intent = await this.resetToken(token, name);
    const { data: [session] } = await this.call<[CUSession, CUStatus]>('POST', '/v1/credential/_exchange_intent', { body: intent });
    const update = async (req: unknown) => (await this.call<CUStatus>('POST', '/v1/credential/_update', { body: [req, session] })).data;
    await update({ password });
    const generated = await update('totpgenerate');
    const check = (generated.mfaregstate as { TotpCheck?: { secret: number[]; algo: string; step: number; digits: number } }).TotpCheck;
    if (!check) throw new Error(`TOTP generation for ${name}: unexpected state ${JSON.stringify(generated.mfaregstate)}`);
    const totp = new OTPAuth.TOTP({
      secret: new OTPAuth.Secret({ buffer: new Uint8Array(check.secret).buffer }),
      algorithm: check.algo.toUpperCase(),
      digits: check.digits,
      period: check.step,
    });
    const verified = await update({ totpverify: [Number(totp.generate()), 'test-totp'] });
    if (verified.mfaregstate !== 'None') throw new Error(`TOTP verification for ${name}: ${JSON.stringify(verified.mfaregstate)}`);
    if (!verified.can_commit) throw new Error(`credential update for ${name} cannot be committed: ${JSON.stringify(verified.warnings)}`);
    await this.call('POST', '/v1/credential/_commit', { body: session });
    return { password, totp };
  }
}

/**
 * Signs in at Kanidm's own UI login forms (/ui/login → begin → TOTP /
 * password / mechanism choice, whatever Kanidm asks next), as a person does
 * in a browser. Starts from `from` (a page already showing Kanidm's login
 * form, e.g. where an OAuth2 authorization landed) or from /ui/login.
 * Returns where the browser ends: Kanidm's apps page, or wherever Kanidm
 * redirects after sign-in (for OAuth2, a foreign origin ends the walk).
 */
export async function signInAtKanidmUi(browser: HttpBrowser, base: string, username: string, creds: Credentials, from?: Step): Promise<Step> {
  const page = from ?? (await browser.go(`${base}/ui/login`));
  if (!/action="\/ui\/login\/begin"/.test(page.text)) throw new Error(`no Kanidm login form at ${page.url} (status ${page.status})`);
  let step = await browser.go(`${base}/ui/login/begin`, { form: { username } });
  for (let i = 0; i < 4; i++) {
    const action = /<form[^>]*action="(\/ui\/login\/[a-z_]+)"/.exec(step.text)?.[1];
    if (step.status !== 200 || !action) return step;
    if (action === '/ui/login/totp') {
      if (!creds.totp) throw new Error(`Kanidm asks ${username} for a TOTP code, none given`);
      step = await browser.go(base + action, { form: { totp: creds.totp.generate() } });
    } else if (action === '/ui/login/pw') {
      step = await browser.go(base + action, { form: { password: creds.password } });
    } else if (action === '/ui/login/mech_choose') {
      step = await browser.go(base + action, { form: { mech: creds.totp ? 'passwordmfa' : 'password' } });
    } else {
      throw new Error(`Kanidm login for ${username}: unexpected form ${action} at ${step.url}`);
    }
  }
  throw new Error(`Kanidm login for ${username} did not finish: ${step.url} ${step.status}`);
}

/**
 * What a person does on Kanidm's credential-reset page (htmx partials, so
 * each step carries HX-Request as the page's script sends it): add a
 * password, add a TOTP (its secret read from the page's otpauth URI), save.
 * The browser must already have opened the reset link (Kanidm's
 * cu-session-token cookie). Returns the enrolled TOTP generator.
 */
export async function enrolAtResetPage(browser: HttpBrowser, base: string, password: string): Promise<OTPAuth.TOTP> {
  const hx = { 'hx-request': 'true', 'hx-current-url': `${base}/ui/reset` };
  const expect = (step: Step, what: string) => {
    if (step.status >= 400) {
      // Kanidm's reasons (e.g. password quality feedback) are list items in the partial.
      const why = [...step.text.matchAll(/<li>([^<]+)<\/li>/g)].map((m) => m[1]!.trim()).join('; ');
      throw new Error(`reset page, ${what}: HTTP ${step.status} ${why || step.text.slice(0, 300)}`);
    }
    return step;
  };
  expect(await browser.fetch(`${base}/ui/reset/add_password`, { form: { new_password: password, new_password_check: password }, headers: hx }), 'password');
  const init = expect(await browser.fetch(`${base}/ui/reset/add_totp`, { method: 'POST', body: '', headers: hx }), 'TOTP');
  const uri = /<code>(otpauth:\/\/totp\/[^<]+)<\/code>/.exec(init.text)?.[1];
  if (!uri) throw new Error(`reset page shows no otpauth URI: ${init.text.slice(0, 300)}`);
  const totp = OTPAuth.URI.parse(uri.replaceAll('&amp;', '&'));
  if (!(totp instanceof OTPAuth.TOTP)) throw new Error(`not a TOTP URI: ${uri}`);
  const added = expect(
    await browser.fetch(`${base}/ui/api/add_totp`, { form: { name: 'phone', checkTOTPCode: totp.generate(), ignoreBrokenApp: 'false' }, headers: hx }),
    'TOTP check',
  );
  if (/Incorrect TOTP code/.test(added.text)) throw new Error('Kanidm refused the TOTP code');
  expect(await browser.fetch(`${base}/ui/api/cu_commit`, { method: 'POST', body: '', headers: hx }), 'save');
  return totp;
}
