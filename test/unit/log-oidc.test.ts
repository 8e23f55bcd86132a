// The device flow's user code (in verification_uri_complete) and the new
// token kinds never reach the log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, redactUrl } from '../../wrapper/src/telemetry/log.js';

test('user_code, device_code, logout_token and registration_access_token are redacted in URLs and fields', () => {
  const url = redactUrl('/oauth2/activate?user_code=BCDF-GHJK&x=1');
  assert.doesNotMatch(url, /BCDF/);
  assert.match(url, /x=1/);
  const lines: string[] = [];
  const log = createLogger({ level: 'info', destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
  log.info({ device_code: 'dc-secret', user_code: 'BCDF-GHJK', logout_token: 'eyJ.lt', registration_access_token: 'rat-secret' }, 'x');
  for (const s of ['dc-secret', 'BCDF-GHJK', 'eyJ.lt', 'rat-secret']) assert.equal(lines.join('').includes(s), false, s);
});
