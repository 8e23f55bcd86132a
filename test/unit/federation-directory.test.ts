// Reading a person from Kanidm's SCIM answer (the shape Kanidm 1.11.1 sent
// for `GET /scim/v1/Person/alice?attributes=…` to the reader account) and the
// claims tokens get from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { personClaims, personFromScim } from '../../wrapper/src/federation/directory.js';

const ALICE = {
  schemas: [],
  id: 'ef42a3b1-fa3e-4591-bc69-87d6247c3e38',
  displayname: 'Alice Example',
  mail: [{ primary: false, value: 'a2@example.com' }, { primary: true, value: 'alice@example.com' }],
  memberof: [
    { uuid: '00000000-0000-0000-0000-000000000035', value: 'idm_all_persons@localhost' },
    { uuid: 'cf0df023-ed05-452d-8854-ed8770abe4cb', value: 'mail_users@localhost' },
  ],
  name: 'alice',
  spn: 'alice@localhost',
};

test('a SCIM person: UUID from id, primary mail first, groups as UUID and SPN', () => {
  const p = personFromScim(ALICE)!;
  assert.deepEqual(p, {
    uuid: 'ef42a3b1-fa3e-4591-bc69-87d6247c3e38',
    name: 'alice',
    spn: 'alice@localhost',
    displayname: 'Alice Example',
    mails: ['alice@example.com', 'a2@example.com'],
    groups: ['00000000-0000-0000-0000-000000000035', 'idm_all_persons@localhost', 'cf0df023-ed05-452d-8854-ed8770abe4cb', 'mail_users@localhost'],
    valid: true,
  });
  assert.deepEqual(personClaims(p, ['partners', 'mail_users@localhost']), {
    sub: 'ef42a3b1-fa3e-4591-bc69-87d6247c3e38',
    preferred_username: 'alice',
    name: 'Alice Example',
    email: 'alice@example.com',
    email_verified: true,
    groups: [...p.groups, 'partners'],
  });
});

test('account_expire / account_valid_from decide whether the person may sign in now', () => {
  const now = Date.parse('2026-06-01T00:00:00Z');
  assert.equal(personFromScim({ ...ALICE, account_expire: '2020-01-01T00:00:00Z' }, now)!.valid, false);
  assert.equal(personFromScim({ ...ALICE, account_expire: '2030-01-01T00:00:00Z' }, now)!.valid, true);
  assert.equal(personFromScim({ ...ALICE, account_valid_from: '2030-01-01T00:00:00Z' }, now)!.valid, false);
  assert.equal(personFromScim({ ...ALICE, account_valid_from: '2020-01-01T00:00:00Z' }, now)!.valid, true);
});

test('an answer without id or name is no person; a person without mail or display name has no such claims', () => {
  assert.equal(personFromScim({ name: 'x' }), undefined);
  assert.equal(personFromScim({ id: 'u' }), undefined);
  const bare = personClaims(personFromScim({ id: 'u-1', name: 'bob' })!);
  assert.deepEqual(bare, { sub: 'u-1', preferred_username: 'bob', groups: [] });
});
