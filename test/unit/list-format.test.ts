// bundle/list-format.ts stands in for Intl.ListFormat in the appliance's
// bundle; what it prints must be what the real one prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnglishListFormat } from '../../wrapper/src/bundle/list-format.js';

const lists = [[], ['openid'], ['openid', 'profile'], ['a', 'b', 'c'], ["'openid'", "'profile'", "'email'", "'groups'"], ['', 'x, y', 'é', '😀', 'and', 'or'], Array.from({ length: 9 }, (_, i) => `v${i}`)];

test('English conjunctions and disjunctions come out as Intl.ListFormat("en") writes them', () => {
  for (const options of [{ type: 'conjunction' }, { type: 'disjunction' }, {}, { type: 'conjunction', style: 'long' }] as const) {
    const ours = new EnglishListFormat('en', options);
    const real = new Intl.ListFormat('en', options);
    for (const list of lists) assert.equal(ours.format(list), real.format(list), `${JSON.stringify(options)} ${JSON.stringify(list)}`);
    // Any iterable, as the real one takes.
    assert.equal(ours.format(new Set(['x', 'y', 'z'])), real.format(new Set(['x', 'y', 'z'])));
  }
});

test('other locales and styles are the real Intl.ListFormat', () => {
  for (const [locale, options] of [['de', { type: 'conjunction' }], ['en', { type: 'unit' }], ['en', { style: 'short' }], [undefined, {}]] as const) {
    assert.equal(new EnglishListFormat(locale, options).format(['a', 'b', 'c']), new Intl.ListFormat(locale, options).format(['a', 'b', 'c']));
  }
  // Options the real one refuses are refused alike (none is taken for an English word).
  for (const type of ['toString', 'constructor', 'and']) {
    assert.throws(() => new EnglishListFormat('en', { type }), RangeError);
    assert.throws(() => new Intl.ListFormat('en', { type } as Intl.ListFormatOptions), RangeError);
  }
});

test('a value that is not a string is refused as by the real one', () => {
  assert.throws(() => new EnglishListFormat('en', {}).format([1] as unknown as string[]), TypeError);
  assert.throws(() => new Intl.ListFormat('en', {}).format([1] as unknown as string[]), TypeError);
});
