// BatchedLog: the hot-path info lines (request lines, Kanidm's output) have
// the parent logger's shape and destinations, reach an fd destination once
// the event-loop turn ends (or at flush), and reach a stream destination at once.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { BatchedLog, childLogger, createLogger } from '../../wrapper/src/telemetry/log.js';

const turn = () => new Promise((r) => setImmediate(r));

/** A log file of the test's own and its fd (an fd destination, as stdout and log_dir are); both gone afterwards. */
function logFile(t: TestContext): { file: string; fd: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-batched-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'out.log');
  const fd = fs.openSync(file, 'a');
  t.after(() => fs.closeSync(fd));
  return { file, fd };
}

test('lines to an fd destination are written together after the turn, in order, shaped like the parent\'s', async (t) => {
  const { file, fd } = logFile(t);
  const parent = childLogger(createLogger({ level: 'info', destination: pino.destination({ dest: fd, sync: true }), component: 'wrapper' }), 'http');
  const log = new BatchedLog(parent);
  for (let i = 0; i < 500; i++) log.info({ n: i, url: '/x' }, 'request');
  await turn();
  await turn();
  parent.warn({ n: 'sync' }, 'after');
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 501);
  assert.deepEqual(lines.slice(0, 500).map((l) => l.n), Array.from({ length: 500 }, (_, i) => i));
  const first = lines[0]!;
  assert.equal(first.level, 'info');
  assert.equal(first.component, 'http');
  assert.equal(first.msg, 'request');
  assert.equal(first.pid, process.pid);
  assert.match(first.time, /^\d{4}-\d\d-\d\dT/);
  assert.equal(lines[500]!.msg, 'after');
  log.close();
});

test('close() writes what is gathered; nothing below the parent\'s level is written', async (t) => {
  const { file, fd } = logFile(t);
  const log = new BatchedLog(createLogger({ level: 'info', destination: pino.destination({ dest: fd, sync: true }) }));
  log.info({ upstream_line: 'one' }, 'upstream output');
  log.close();
  assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).upstream_line, 'one');
  const quiet = new BatchedLog(createLogger({ level: 'warn', destination: pino.destination({ dest: fd, sync: true }) }));
  quiet.info({ upstream_line: 'two' }, 'upstream output');
  quiet.close();
  assert.equal(fs.readFileSync(file, 'utf8').includes('two'), false);
});

test('a stream destination gets each line at once', () => {
  const chunks: string[] = [];
  const log = new BatchedLog(createLogger({ level: 'info', destination: { write: (l: string) => void chunks.push(l) } }));
  log.info({ n: 1 }, 'request');
  assert.equal(chunks.length, 1);
  assert.equal(JSON.parse(chunks[0]!).n, 1);
  log.close();
});
