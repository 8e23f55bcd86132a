// crypto/base64url.ts decodes JWS segments in place of Node's decoder; it
// must give Node's bytes for every base64url string and refuse every other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeBase64url } from '../../wrapper/src/crypto/base64url.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const base64urlString = fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 300 });

test("the bytes of any encoding are the ones encoded, and Node's decoder agrees", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const encoded = Buffer.from(bytes).toString('base64url');
      assert.deepEqual(decodeBase64url(encoded), Buffer.from(bytes));
    }),
  );
  // Also strings no encoder writes: unused low bits set, a lone last character.
  fc.assert(
    fc.property(base64urlString, (s) => {
      assert.deepEqual(decodeBase64url(s), Buffer.from(s, 'base64url'), s);
    }),
  );
  assert.deepEqual(decodeBase64url(''), Buffer.alloc(0));
});

test('a character outside the base64url alphabet, anywhere, is refused', () => {
  const outside = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => !ALPHABET.includes(c));
  fc.assert(
    fc.property(base64urlString, outside, fc.nat(), (s, c, at) => {
      const i = at % (s.length + 1);
      assert.equal(decodeBase64url(s.slice(0, i) + c + s.slice(i)), undefined);
    }),
  );
  // The usual suspects: padding, the other alphabet, whitespace, a non-ASCII
  // character whose low byte is in the alphabet (U+0141 'Ł' ends in 0x41 'A').
  for (const s of ['QQ==', 'a+b/', 'QUJD\n', ' QUJD', 'QUJ\u0141', 'QUJDRA\u0000']) assert.equal(decodeBase64url(s), undefined, JSON.stringify(s));
});
