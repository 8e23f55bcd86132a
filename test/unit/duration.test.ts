import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseByteSize, parseDuration } from '../../wrapper/src/config/duration.js';

test('parseDuration accepts integer values with units', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('5s'), 5_000);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1d'), 86_400_000);
  assert.equal(parseDuration('0s'), 0);
});

test('parseDuration rejects anything else with a clear message', () => {
  for (const bad of ['', '5', '5 s', ' 5s', '1.5s', '-1s', '5sec', '5 seconds', 'ms', '5S', '99999999999999999d']) {
    assert.throws(() => parseDuration(bad), {
      message: `${JSON.stringify(bad)} is not a duration (use e.g. 500ms, 5s, 2m)`,
    });
  }
});

test('parseByteSize accepts units and plain integers', () => {
  assert.equal(parseByteSize('512B'), 512);
  assert.equal(parseByteSize('64KiB'), 65_536);
  assert.equal(parseByteSize('1MiB'), 1_048_576);
  assert.equal(parseByteSize('2GiB'), 2 * 1024 ** 3);
  assert.equal(parseByteSize('1024'), 1024);
  assert.equal(parseByteSize(4096), 4096);
});

test('parseByteSize rejects malformed sizes', () => {
  for (const bad of ['1MB', '1 MiB', '1.5KiB', '-1', 'KiB', '', 1.5, -3, Number.NaN]) {
    assert.throws(() => parseByteSize(bad), /is not a byte size \(use e\.g\. 512B, 64KiB, 1MiB\)/);
  }
});
