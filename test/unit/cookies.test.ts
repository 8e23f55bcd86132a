import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cookieValue } from '../../wrapper/src/server/cookies.js';

test('one cookie is read by its exact name from a Cookie header', () => {
  const header = 'xbearer=no; bearer=token.value==; kiwi_fed_abc = bound ;other=1';
  assert.equal(cookieValue(header, 'bearer'), 'token.value==', 'a name that ends another name is not a match; "=" stays in the value');
  assert.equal(cookieValue(header, 'kiwi_fed_abc'), 'bound', 'spaces around name and value are not part of them');
  assert.equal(cookieValue(header, 'other'), '1');
});

test('absent cookies, a missing header and malformed parts give undefined', () => {
  assert.equal(cookieValue(undefined, 'bearer'), undefined);
  assert.equal(cookieValue('', 'bearer'), undefined);
  assert.equal(cookieValue('bearer', 'bearer'), undefined, 'a part without "=" carries no value');
  assert.equal(cookieValue('=bearer; x=1', 'bearer'), undefined, 'an empty name is no name');
  assert.equal(cookieValue('a=1; b=2', 'bearer'), undefined);
});
