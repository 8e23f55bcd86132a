import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SqliteStateStore, type ConsumeResult } from '../../wrapper/src/state/store.js';
import { adapterFactory, SingleUseViolationError } from '../../wrapper/src/state/oidc-adapter.js';

/** The fake clock every store in this file starts at (epoch ms). */
const T0 = 1_700_000_000_000;

// This file doubles as the worker script of the cross-thread consume race (see raceWorker).
interface RaceWorkerData {
  dataDir: string;
  ids: string[];
  go: SharedArrayBuffer;
}

if (isMainThread) {
  registerTests();
} else {
  await raceWorker(workerData as RaceWorkerData);
}

async function raceWorker({ dataDir, ids, go }: RaceWorkerData): Promise<void> {
  const store = new SqliteStateStore({ dataDir, now: () => T0 });
  const flag = new Int32Array(go);
  parentPort!.postMessage('ready');
  Atomics.wait(flag, 0, 0); // every worker starts consuming at the same moment
  const results: ConsumeResult[] = [];
  for (const id of ids) results.push(await store.consumeOnce('AuthorizationCode', id));
  await store.close();
  parentPort!.postMessage(results);
}

// Workers do not inherit tsx's loader from `--import tsx`: register it in the thread, then load this file.
const WORKER_BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
  .then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;


function tmpDataDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-state-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store on a fresh directory with a hand-driven clock; closed when the test ends. */
function setup(t: TestContext, dataDir = tmpDataDir(t)) {
  const clock = { ms: T0 };
  const store = new SqliteStateStore({ dataDir, now: () => clock.ms });
  t.after(() => store.close());
  const Adapter = adapterFactory(store);
  return { dataDir, clock, store, Adapter };
}

function registerTests(): void {
  test('upsert/find round-trip through the store and the adapter', async (t) => {
    const { store, Adapter } = setup(t);
    const codes = new Adapter('AuthorizationCode');
    const payload = { jti: 'code1', grantId: 'g1', accountId: 'alice', scope: 'openid email', nested: { a: [1, 2] } };

    await codes.upsert('code1', payload, 60);
    assert.deepEqual(await codes.find('code1'), payload);

    const record = await store.find('AuthorizationCode', 'code1');
    assert.deepEqual(record, {
      model: 'AuthorizationCode',
      id: 'code1',
      payload,
      grantId: 'g1',
      userCode: null,
      uid: null,
      expiresAt: T0 + 60_000,
      consumedAt: null,
      origin: 'local',
    });

    // Reads are copies; models are separate namespaces; missing ids are undefined.
    (await codes.find('code1'))!.scope = 'tampered';
    assert.equal((await codes.find('code1'))!.scope, 'openid email');
    assert.equal(await new Adapter('AccessToken').find('code1'), undefined);
    assert.equal(await codes.find('nope'), undefined);

    // Upsert replaces; destroy removes.
    await codes.upsert('code1', { ...payload, scope: 'openid' }, 60);
    assert.equal((await codes.find('code1'))!.scope, 'openid');
    await codes.destroy('code1');
    assert.equal(await codes.find('code1'), undefined);
  });

  test('expired records are never returned, and no expiresIn means no expiry', async (t) => {
    const { clock, store, Adapter } = setup(t);
    const codes = new Adapter('AuthorizationCode');
    const grants = new Adapter('Grant');
    await codes.upsert('short', { jti: 'short' }, 10);
    await grants.upsert('forever', { jti: 'forever' });

    clock.ms = T0 + 9_999;
    assert.ok(await codes.find('short'));
    clock.ms = T0 + 10_000;
    assert.equal(await codes.find('short'), undefined);
    assert.equal(await store.find('AuthorizationCode', 'short'), undefined);
    assert.equal(await store.consumeOnce('AuthorizationCode', 'short'), 'not_found');

    clock.ms = T0 + 10 * 365 * 86_400_000;
    assert.deepEqual(await grants.find('forever'), { jti: 'forever' });
    assert.equal((await store.find('Grant', 'forever'))!.expiresAt, null);
  });

  test('findByUid and findByUserCode look up live records of their own model', async (t) => {
    const { clock, Adapter } = setup(t);
    const sessions = new Adapter('Session');
    const deviceCodes = new Adapter('DeviceCode');
    await sessions.upsert('sess1', { jti: 'sess1', uid: 'uid-1', accountId: 'alice' }, 3600);
    await sessions.upsert('sess2', { jti: 'sess2', uid: 'uid-2', accountId: 'bob' }, 10);
    await deviceCodes.upsert('dc1', { jti: 'dc1', userCode: 'ABCD-EFGH', grantId: 'g9' }, 600);

    assert.equal((await sessions.findByUid('uid-1'))!.accountId, 'alice');
    assert.equal((await sessions.findByUid('uid-2'))!.accountId, 'bob');
    assert.equal(await sessions.findByUid('uid-3'), undefined);
    assert.equal(await new Adapter('Interaction').findByUid('uid-1'), undefined);

    assert.equal((await deviceCodes.findByUserCode('ABCD-EFGH'))!.jti, 'dc1');
    assert.equal(await deviceCodes.findByUserCode('ZZZZ-ZZZZ'), undefined);
    assert.equal(await sessions.findByUserCode('ABCD-EFGH'), undefined);

    clock.ms = T0 + 10_000;
    assert.equal(await sessions.findByUid('uid-2'), undefined);
    assert.ok(await sessions.findByUid('uid-1'));
  });

  test('consume marks payload.consumed in epoch seconds and is single-use', async (t) => {
    const { clock, store, Adapter } = setup(t);
    const codes = new Adapter('AuthorizationCode');
    const accessTokens = new Adapter('AccessToken');
    await codes.upsert('code1', { jti: 'code1', grantId: 'g1' }, 60);
    await accessTokens.upsert('at1', { jti: 'at1', grantId: 'g1' }, 3600);

    clock.ms = T0 + 1_500;
    await codes.consume('code1');
    assert.equal((await codes.find('code1'))!.consumed, Math.floor((T0 + 1_500) / 1000));
    assert.equal((await store.find('AuthorizationCode', 'code1'))!.consumedAt, T0 + 1_500);

    // Re-saving a consumed record (even without the flag) does not make it usable again.
    await codes.upsert('code1', { jti: 'code1', grantId: 'g1' }, 60);
    assert.equal(await store.consumeOnce('AuthorizationCode', 'code1'), 'already_consumed');
    assert.equal(await store.consumeOnce('AuthorizationCode', 'missing'), 'not_found');

    // A losing consumer gets an invalid_grant error shaped for oidc-provider, and the grant is revoked.
    await assert.rejects(codes.consume('code1'), (err: unknown) => {
      assert.ok(err instanceof SingleUseViolationError);
      assert.equal(err.message, 'invalid_grant');
      assert.equal(err.statusCode, 400);
      assert.equal(err.expose, true);
      assert.equal(err.result, 'already_consumed');
      return true;
    });
    assert.equal(await codes.find('code1'), undefined);
    assert.equal(await accessTokens.find('at1'), undefined);
    await assert.rejects(codes.consume('code1'), { name: 'SingleUseViolationError', error_description: 'AuthorizationCode not found' });
  });

  test('concurrent consumers of one code: exactly one wins (two connections, Promise.all)', async (t) => {
    const { dataDir, store } = setup(t);
    const other = new SqliteStateStore({ dataDir, now: () => T0 });
    t.after(() => other.close());
    const [A, B] = [adapterFactory(store), adapterFactory(other)];

    for (let i = 0; i < 50; i++) {
      await store.upsert('RefreshToken', `rt${i}`, { jti: `rt${i}`, grantId: `g${i}` }, 3600);
      const results = await Promise.all([
        store.consumeOnce('RefreshToken', `rt${i}`),
        other.consumeOnce('RefreshToken', `rt${i}`),
      ]);
      assert.deepEqual(results.sort(), ['already_consumed', 'consumed']);
    }

    await store.upsert('AuthorizationCode', 'code', { jti: 'code', grantId: 'gx' }, 60);
    const settled = await Promise.allSettled([
      new A('AuthorizationCode').consume('code'),
      new B('AuthorizationCode').consume('code'),
    ]);
    assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 1);
    assert.equal(settled.filter((s) => s.status === 'rejected').length, 1);
  });

  test('concurrent consumers in parallel threads: exactly one wins per code', async (t) => {
    const { dataDir, store } = setup(t);
    const ids = Array.from({ length: 1000 }, (_, i) => `code${i}`);
    for (const id of ids) await store.upsert('AuthorizationCode', id, { jti: id }, 600);

    const go = new SharedArrayBuffer(4);
    const racers = Array.from({ length: 4 }, (_, w) => {
      // Threads walk the codes in opposite orders so they collide all the time.
      const order = w % 2 === 0 ? ids : [...ids].reverse();
      const worker = new Worker(WORKER_BOOT, { eval: true, execArgv: [], workerData: { dataDir, ids: order, go } });
      const ready = new Promise<void>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('message', () => resolve());
      });
      const done = new Promise<Map<string, ConsumeResult>>((resolve, reject) => {
        worker.on('error', reject);
        worker.on('message', (msg: unknown) => {
          if (Array.isArray(msg)) resolve(new Map(order.map((id, i) => [id, msg[i] as ConsumeResult])));
        });
      });
      return { ready, done };
    });
    await Promise.all(racers.map((r) => r.ready));
    const flag = new Int32Array(go);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);

    const perWorker = await Promise.all(racers.map((r) => r.done));
    for (const id of ids) {
      const outcomes = perWorker.map((m) => m.get(id)).sort();
      assert.deepEqual(outcomes, ['already_consumed', 'already_consumed', 'already_consumed', 'consumed'], id);
    }
  });

  test('revokeByGrantId removes code, access and refresh token of that grant only', async (t) => {
    const { store, Adapter } = setup(t);
    const [codes, ats, rts, sessions] = ['AuthorizationCode', 'AccessToken', 'RefreshToken', 'Session'].map(
      (m) => new Adapter(m),
    );
    for (const g of ['g1', 'g2']) {
      await codes.upsert(`code-${g}`, { jti: `code-${g}`, grantId: g }, 60);
      await ats.upsert(`at-${g}`, { jti: `at-${g}`, grantId: g }, 3600);
      await rts.upsert(`rt-${g}`, { jti: `rt-${g}`, grantId: g }, 86_400);
    }
    await sessions.upsert('sess', { jti: 'sess', uid: 'u', authorizations: { client: { grantId: 'g1' } } }, 3600);
    await new Adapter('Grant').upsert('g1', { jti: 'g1', accountId: 'alice' }, 3600);

    await ats.revokeByGrantId('g1');
    for (const [adapter, id] of [[codes, 'code-g1'], [ats, 'at-g1'], [rts, 'rt-g1']] as const) {
      assert.equal(await adapter.find(id), undefined, id);
    }
    for (const [adapter, id] of [[codes, 'code-g2'], [ats, 'at-g2'], [rts, 'rt-g2'], [sessions, 'sess']] as const) {
      assert.ok(await adapter.find(id), id);
    }
    // The Grant record itself is oidc-provider's to destroy (revokeGrantPolicy), by its own id.
    assert.ok(await store.find('Grant', 'g1'));
    assert.equal(await store.revokeByGrantId('g1'), 0);
  });

  test('state survives closing and reopening: a refresh token issued before a restart works after it', async (t) => {
    const dataDir = tmpDataDir(t);
    const before = new SqliteStateStore({ dataDir, nodeId: 'node-a' });
    const rtPayload = { jti: 'rt1', grantId: 'g1', accountId: 'alice', rotations: 0 };
    await new (adapterFactory(before))('RefreshToken').upsert('rt1', rtPayload, 86_400);
    await new (adapterFactory(before))('AuthorizationCode').upsert('used', { jti: 'used' }, 600);
    await before.consumeOnce('AuthorizationCode', 'used');
    await before.close();

    const after = new SqliteStateStore({ dataDir });
    t.after(() => after.close());
    const rts = new (adapterFactory(after))('RefreshToken');
    assert.deepEqual(await rts.find('rt1'), rtPayload); // in particular: not consumed
    assert.equal((await after.find('RefreshToken', 'rt1'))!.origin, 'node-a');
    await rts.consume('rt1');
    assert.equal(typeof (await rts.find('rt1'))!.consumed, 'number');
    assert.equal(await after.consumeOnce('AuthorizationCode', 'used'), 'already_consumed');
  });

  test('state.db is created with mode 0600 in WAL mode', async (t) => {
    const dataDir = path.join(tmpDataDir(t), 'nested', 'data');
    const { store } = setup(t, dataDir);
    await store.upsert('Session', 's', { jti: 's' }, 60); // makes SQLite create the -wal/-shm files
    assert.equal(store.file, path.join(dataDir, 'state.db'));
    for (const f of ['state.db', 'state.db-wal', 'state.db-shm']) {
      assert.equal(fs.statSync(path.join(dataDir, f)).mode & 0o777, 0o600, f);
    }
    assert.equal(fs.statSync(dataDir).mode & 0o077, 0);

    // An existing file with loose permissions is tightened on open.
    await store.close();
    fs.chmodSync(path.join(dataDir, 'state.db'), 0o644);
    const reopened = new SqliteStateStore({ dataDir });
    t.after(() => reopened.close());
    assert.equal(fs.statSync(path.join(dataDir, 'state.db')).mode & 0o777, 0o600);
  });

  test('sweep deletes expired rows only', async (t) => {
    const { clock, store } = setup(t);
    await store.upsert('AccessToken', 'a', { jti: 'a' }, 10);
    await store.upsert('AccessToken', 'b', { jti: 'b' }, 20);
    await store.upsert('Grant', 'c', { jti: 'c' });

    assert.equal(await store.sweep(), 0);
    clock.ms = T0 + 10_000;
    assert.equal(await store.sweep(), 1);
    clock.ms = T0 + 15_000;
    assert.equal(await store.sweep(), 0);

    // Rows are really gone from the file, not just hidden.
    clock.ms = T0;
    assert.equal(await store.find('AccessToken', 'a'), undefined);
    assert.ok(await store.find('AccessToken', 'b'));
    clock.ms = T0 + 20_000;
    assert.equal(await store.sweep(), 1);
    assert.ok(await store.find('Grant', 'c'));
  });

  test('countLive counts unexpired records per model', async (t) => {
    const { clock, store } = setup(t);
    await store.upsert('Session', 's1', { jti: 's1' }, 10);
    await store.upsert('Session', 's2', { jti: 's2' }, 100);
    await store.upsert('Grant', 'g', { jti: 'g' });
    assert.deepEqual(await store.countLive(), { Grant: 1, Session: 2 });
    clock.ms = T0 + 10_000;
    assert.deepEqual(await store.countLive(), { Grant: 1, Session: 1 });
  });

  test('re-issuing an id whose record expired starts a fresh, unconsumed record', async (t) => {
    const { clock, store } = setup(t);
    await store.upsert('AuthorizationCode', 'x', { jti: 'x' }, 10);
    assert.equal(await store.consumeOnce('AuthorizationCode', 'x'), 'consumed');
    clock.ms = T0 + 10_000;
    await store.upsert('AuthorizationCode', 'x', { jti: 'x' }, 10);
    assert.equal((await store.find('AuthorizationCode', 'x'))!.consumedAt, null);
    assert.equal(await store.consumeOnce('AuthorizationCode', 'x'), 'consumed');
  });

  test('invalid keys and payloads are rejected', async (t) => {
    const { store } = setup(t);
    await assert.rejects(store.upsert('', 'x', {}), TypeError);
    await assert.rejects(store.upsert('M', '', {}), TypeError);
    await assert.rejects(store.upsert('M', 'x', [] as never), TypeError);
    await assert.rejects(store.upsert('M', 'x', {}, Number.NaN), TypeError);
    await assert.rejects(store.revokeByGrantId(''), TypeError);
  });
}
