import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childLogger, createLogger, redactLine, redactUrl } from '../../wrapper/src/telemetry/log.js';

/** A pino destination that keeps every line in memory. */
function memoryStream(): { write(line: string): void; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  return {
    write: (line: string) => void chunks.push(line),
    text: () => chunks.join(''),
    lines: () => chunks.join('').trim().split('\n').map((l) => JSON.parse(l)),
  };
}

const SECRETS = {
  authorization: 'Bearer s3cr3t-authz',
  cookie: 'kanidm-session=s3cr3t-cookie',
  setCookie: 'bearer=s3cr3t-set-cookie; HttpOnly',
  password: 's3cr3t-password',
  clientSecret: 's3cr3t-client',
  code: 's3cr3t-auth-code',
  refresh: 's3cr3t-refresh',
  access: 's3cr3t-access',
  idToken: 's3cr3t-id-token',
  token: 's3cr3t-token',
};

test('logger output never contains secret values', () => {
  const out = memoryStream();
  const log = createLogger({ level: 'info', component: 'proxy', destination: out });
  log.info(
    {
      req: { method: 'POST', headers: { authorization: SECRETS.authorization, cookie: SECRETS.cookie, host: 'id.example.com' } },
      res: { statusCode: 200, headers: { 'set-cookie': [SECRETS.setCookie] } },
      headers: { authorization: SECRETS.authorization, cookie: SECRETS.cookie },
      body: {
        password: SECRETS.password,
        client_secret: SECRETS.clientSecret,
        code: SECRETS.code,
        refresh_token: SECRETS.refresh,
        access_token: SECRETS.access,
        id_token: SECRETS.idToken,
        token: SECRETS.token,
      },
      password: SECRETS.password,
    },
    'request done',
  );
  const text = out.text();
  for (const secret of Object.values(SECRETS)) assert.ok(!text.includes(secret), `leaked ${secret}`);

  const [line] = out.lines() as any[];
  assert.equal(line.msg, 'request done');
  assert.equal(line.level, 'info');
  assert.equal(line.component, 'proxy');
  assert.equal(line.req.headers.authorization, '[redacted]');
  assert.equal(line.req.headers.host, 'id.example.com', 'non-secret fields are kept');
  assert.equal(line.res.headers['set-cookie'], '[redacted]');
  assert.equal(line.body.code, '[redacted]');
  assert.equal(line.password, '[redacted]');
});

test('errno codes on errors stay visible despite the *.code rule', () => {
  const out = memoryStream();
  const log = createLogger({ level: 'info', destination: out });
  log.error({ err: Object.assign(new Error('connect failed'), { code: 'ECONNREFUSED' }) }, 'upstream down');
  assert.equal((out.lines()[0] as any).err.code, 'ECONNREFUSED');
});

test('level filtering and childLogger component', () => {
  const out = memoryStream();
  const log = createLogger({ level: 'warn', destination: out });
  log.info('hidden');
  childLogger(log, 'supervisor').warn('shown');
  const lines = out.lines();
  assert.equal(lines.length, 1);
  assert.equal(lines[0].msg, 'shown');
  assert.equal(lines[0].component, 'supervisor');
});

test('a child of a component logger replaces the component and keeps the other bindings; no key twice', () => {
  const out = memoryStream();
  const wrapper = createLogger({ level: 'info', destination: out, component: 'wrapper' }).child({ node_id: 'n1' });
  childLogger(childLogger(wrapper, 'upstream'), 'proxy').info({ a: 1 }, 'line');
  const text = out.text().trim();
  assert.equal(text.match(/"component":/g)?.length, 1, text);
  assert.equal(text.match(/"node_id":/g)?.length, 1, text);
  const [line] = out.lines();
  assert.equal(line!.component, 'proxy');
  assert.equal(line!.node_id, 'n1');
  assert.equal(line!.a, 1);
});

test('logDir also writes a redacted kiwi-id.log with mode 0640', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-log-'));
  const oldUmask = process.umask(0o022);
  try {
    const out = memoryStream();
    const log = createLogger({ level: 'info', logDir: path.join(dir, 'logs'), destination: out });
    log.info({ body: { password: SECRETS.password } }, 'to both');
    const file = path.join(dir, 'logs', 'kiwi-id.log');
    assert.equal(fs.statSync(file).mode & 0o777, 0o640);
    const fileText = fs.readFileSync(file, 'utf8');
    assert.match(fileText, /"msg":"to both"/);
    assert.ok(!fileText.includes(SECRETS.password));
    assert.match(out.text(), /"msg":"to both"/);
  } finally {
    process.umask(oldUmask);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('redactUrl masks secret parameters and keeps the rest intact', () => {
  assert.equal(
    redactUrl('/oauth2/callback?code=abc123&state=xyz&iss=https%3A%2F%2Fid'),
    '/oauth2/callback?code=[redacted]&state=xyz&iss=https%3A%2F%2Fid',
  );
  assert.equal(
    redactUrl('https://id.example.com/token?client_id=app&client_secret=s&password=p&code_verifier=v'),
    'https://id.example.com/token?client_id=app&client_secret=[redacted]&password=[redacted]&code_verifier=[redacted]',
  );
  assert.equal(
    redactUrl('/logout?id_token_hint=eyJ.x.y&post_logout_redirect_uri=https://app/&login_hint_token=t'),
    '/logout?id_token_hint=[redacted]&post_logout_redirect_uri=https://app/&login_hint_token=[redacted]',
  );
  assert.equal(
    redactUrl('https://app/cb#access_token=a&token_type=Bearer&id_token=i&refresh_token=r&token=t'),
    'https://app/cb#access_token=[redacted]&token_type=Bearer&id_token=[redacted]&refresh_token=[redacted]&token=[redacted]',
  );
  assert.equal(redactUrl('/a?%63ode=x&codes=y&code'), '/a?%63ode=[redacted]&codes=y&code');
  assert.equal(redactUrl('/plain/path'), '/plain/path');
  assert.equal(redactUrl('/x?state=s&scope=openid'), '/x?state=s&scope=openid');
});

test('redactLine masks credentials in child-process output', () => {
  const cases: Array<[string, string]> = [
    ['login failed password=hunter2 user=admin', 'login failed password=[redacted] user=admin'],
    ['{"name":"admin","password":"hun\\"ter2","ok":true}', '{"name":"admin","password":"[redacted]","ok":true}'],
    ['Auth { password: "hunter2" }', 'Auth { password: "[redacted]" }'],
    ['client_secret = "a b c" next', 'client_secret = [redacted] next'],
    ['Authorization: Bearer abc.def-ghi', 'Authorization: Bearer [redacted]'],
    ['header basic dXNlcjpwYXNz', 'header basic [redacted]'],
    ['Cookie: a=1; kanidm-session=xyz', 'Cookie: [redacted]'],
    ['set session=abc123 for user', 'set session=[redacted] for user'],
    ['auth-session-id=abc; path=/', 'auth-session-id=[redacted]; path=/'],
    [
      'got eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLWJ5dGVz done',
      'got [redacted] done',
    ],
    ['server started on 127.0.0.1:8443 version=1.2.3', 'server started on 127.0.0.1:8443 version=1.2.3'],
    ['short.dotted.name is not a jwt', 'short.dotted.name is not a jwt'],
  ];
  for (const [input, expected] of cases) assert.equal(redactLine(input), expected, input);
});

test('redactLine stays linear on long pathological lines', () => {
  // Not a speed target: linear work on these 200k-character lines takes well
  // under a second even on a slow, busy machine, while catastrophic
  // backtracking (quadratic or worse) would take minutes. The bound only
  // tells those two apart.
  const started = process.hrtime.bigint();
  for (const s of ['a'.repeat(200_000), 'a-'.repeat(100_000), '"'.repeat(200_000), 'x=' + 'y'.repeat(200_000)]) redactLine(s);
  assert.ok(process.hrtime.bigint() - started < 10_000_000_000n, 'took more than 10 s: super-linear matching');
});

test('every line carries the time it was written as an ISO 8601 UTC string', () => {
  const out = memoryStream();
  const log = createLogger({ level: 'info', component: 'proxy', destination: out });
  const before = Date.now();
  for (let i = 0; i < 50; i++) log.info({ i }, 'tick'); // many lines within one millisecond share its text
  const after = Date.now();
  for (const line of out.lines()) {
    const time = line.time as string;
    assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const t = Date.parse(time);
    assert.ok(t >= before && t <= after, `${time} outside the logging window`);
  }
});
