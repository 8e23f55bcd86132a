// Giving a Kanidm person a password the documented way: an admin issues a
// credential-reset token (`kanidm person credential create-reset-token`) and
// the reset session runs on Kanidm's credential-update API, exactly what its
// /ui/reset page does: exchange the token for a session, set the password,
// commit. Needs the account policy to accept a password alone
// (`group account-policy credential-type-minimum idm_all_persons any`).
import { request, type Dispatcher } from 'undici';

async function post(base: string, dispatcher: Dispatcher, p: string, body: unknown): Promise<unknown> {
  const res = await request(base + p, {
    dispatcher, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`Kanidm ${p}: HTTP ${res.statusCode} ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * `kanidm` runs the Kanidm CLI as idm_admin and resolves to its stdout;
 * `base` is where Kanidm's API answers (direct or through the wrapper).
 */
export async function setPassword(
  kanidm: (args: string[]) => Promise<string>,
  base: string,
  dispatcher: Dispatcher,
  person: string,
  password: string,
): Promise<void> {
  const out = await kanidm(['person', 'credential', 'create-reset-token', person]);
  const token = /use-reset-token (\S+)/.exec(out)?.[1];
  if (!token) throw new Error(`no reset token in: ${out.slice(-300)}`);
  const [session, status] = (await post(base, dispatcher, '/v1/credential/_exchange_intent', token)) as [unknown, { spn?: string }];
  if (!status?.spn) throw new Error('credential reset session did not start');
  const after = (await post(base, dispatcher, '/v1/credential/_update', [{ password }, session])) as { can_commit?: boolean; warnings?: unknown[] };
  if (!after.can_commit) throw new Error(`Kanidm would not accept the password: ${JSON.stringify(after.warnings)}`);
  await post(base, dispatcher, '/v1/credential/_commit', session);
}
