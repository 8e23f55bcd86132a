// Kanidm's authentication API (/v1/auth), as its CLI uses it, through the
// public origin: for flows that need a signed-in person but no page (the
// browserless sign-in benchmark, load). The session cookie Kanidm issues
// (`issue: "cookie"`) lands in the HttpBrowser's jar, exactly as after a
// login on Kanidm's UI.
import type * as OTPAuth from 'otpauth';
import type { HttpBrowser } from './http-browser.js';

/** Kanidm's auth-session header (kanidm_proto KSESSIONID). */
const SESSION_HEADER = 'x-kanidm-auth-session-id';

interface AuthResponse {
  sessionid: string;
  state: { choose?: string[]; continue?: string[]; denied?: string; success?: string };
}

export async function kanidmApiLogin(
  browser: HttpBrowser,
  base: string,
  c: { username: string; password: string; totp?: OTPAuth.TOTP },
): Promise<void> {
  let session: string | undefined;
  const step = async (body: unknown): Promise<AuthResponse['state']> => {
    const r = await browser.fetch(`${base}/v1/auth`, {
      json: { step: body },
      headers: { accept: 'application/json', ...(session ? { [SESSION_HEADER]: session } : {}) },
    });
    if (r.status !== 200) throw new Error(`Kanidm /v1/auth answered ${r.status}: ${r.text.slice(0, 200)}`);
    session = String(r.headers[SESSION_HEADER] ?? session ?? '');
    const state = (JSON.parse(r.text) as AuthResponse).state;
    if (state.denied) throw new Error(`Kanidm denied the sign-in: ${state.denied}`);
    return state;
  };
  const chosen = await step({ init2: { username: c.username, issue: 'cookie', privileged: false } });
  const mech = c.totp ? 'passwordmfa' : 'password';
  if (!chosen.choose?.includes(mech)) throw new Error(`Kanidm offers ${JSON.stringify(chosen.choose)}, not ${mech}`);
  let state = await step({ begin: mech });
  for (let i = 0; i < 3 && !state.success; i++) {
    const next = state.continue ?? [];
    if (next.includes('totp') && c.totp) state = await step({ cred: { totp: Number(c.totp.generate()) } });
    else if (next.includes('password')) state = await step({ cred: { password: c.password } });
    else throw new Error(`Kanidm asks for ${JSON.stringify(next)}`);
  }
  if (!state.success) throw new Error('Kanidm did not complete the sign-in');
}
