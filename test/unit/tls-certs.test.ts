import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { generateDevCertificate, type DevCertificateOptions } from '../../wrapper/src/crypto/tls-certs.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-tls-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function opts(extra: Partial<DevCertificateOptions> = {}): DevCertificateOptions {
  const dir = path.join(root, `case-${++n}`);
  return {
    certPath: path.join(dir, 'tls', 'server.crt'),
    keyPath: path.join(dir, 'private', 'server.key'),
    caPath: path.join(dir, 'tls', 'ca.crt'),
    hostnames: ['localhost', 'id.kiwi.test'],
    ips: ['127.0.0.1', '::1'],
    days: 30,
    ...extra,
  };
}

const mode = (f: string) => fs.statSync(f).mode & 0o777;
const read = (f: string) => fs.readFileSync(f, 'utf8');

// One generated set shared by the read-only checks below.
const o = opts();
const result = generateDevCertificate(o);

test('creates CA cert, leaf cert and 0600 key', () => {
  assert.equal(result.created, true);
  assert.equal(mode(o.keyPath), 0o600);
  assert.equal(mode(o.certPath), 0o644);
  assert.equal(mode(o.caPath), 0o644);
  assert.equal(mode(path.dirname(o.keyPath)), 0o700);
  assert.match(read(o.keyPath), /^-----BEGIN PRIVATE KEY-----\n/);
  assert.equal(createPrivateKey(read(o.keyPath)).asymmetricKeyType, 'rsa');
  assert.deepEqual(fs.readdirSync(path.dirname(o.certPath)).sort(), ['ca.crt', 'server.crt'], 'no temp files, no CA key');
});

test('leaf verifies against its CA and matches hostnames/IPs', () => {
  const ca = new X509Certificate(read(o.caPath));
  const leaf = new X509Certificate(read(o.certPath));
  assert.equal(ca.ca, true);
  assert.equal(leaf.ca, false);
  assert.ok(leaf.checkIssued(ca));
  assert.ok(leaf.verify(ca.publicKey));
  assert.ok(ca.verify(ca.publicKey), 'CA is self-signed');
  assert.equal(leaf.checkHost('localhost'), 'localhost');
  assert.equal(leaf.checkHost('id.kiwi.test'), 'id.kiwi.test');
  assert.equal(leaf.checkHost('evil.test'), undefined);
  assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(leaf.checkIP('::1'), '::1');
  assert.equal(leaf.checkIP('10.0.0.1'), undefined);
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth EKU');
  assert.ok(leaf.checkPrivateKey(createPrivateKey(read(o.keyPath))));
  const days = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 29 && days <= 30, `validity ${days} days`);
  assert.equal(result.created && result.caFingerprint256, ca.fingerprint256);
});

test('https server with the generated cert answers a client trusting only the CA', async () => {
  const server = https.createServer({ cert: read(o.certPath), key: read(o.keyPath) }, (_req, res) => res.end('kiwi'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const get = (host: string, ca: string) =>
    new Promise<string>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', servername: host === '127.0.0.1' ? undefined : host, port, path: '/', ca, rejectUnauthorized: true, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
    });
  try {
    assert.equal(await get('localhost', read(o.caPath)), 'kiwi');
    assert.equal(await get('127.0.0.1', read(o.caPath)), 'kiwi');
    // A different dev CA is not trusted.
    const other = opts();
    generateDevCertificate(other);
    await assert.rejects(get('localhost', read(other.caPath)), /self.signed|unable to verify|certificate/i);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('never overwrites: second call returns created:false and leaves files unchanged', () => {
  const before = [o.certPath, o.keyPath, o.caPath].map(read);
  assert.deepEqual(generateDevCertificate({ ...o, hostnames: ['other.test'] }), { created: false });
  assert.deepEqual([o.certPath, o.keyPath, o.caPath].map(read), before);
});

test('half-present material is an error naming the missing file', () => {
  const a = opts();
  generateDevCertificate(a);
  fs.rmSync(a.keyPath);
  const cert = read(a.certPath);
  assert.throws(() => generateDevCertificate(a), (e: Error) => e.message.startsWith(a.keyPath));
  assert.equal(read(a.certPath), cert);
  assert.equal(fs.existsSync(a.keyPath), false);

  const b = opts();
  generateDevCertificate(b);
  fs.rmSync(b.certPath);
  assert.throws(() => generateDevCertificate(b), (e: Error) => e.message.startsWith(b.certPath));

  const c = opts();
  generateDevCertificate(c);
  fs.rmSync(c.certPath);
  fs.rmSync(c.keyPath);
  const ca = read(c.caPath);
  assert.throws(() => generateDevCertificate(c), (e: Error) => e.message.startsWith(c.caPath));
  assert.equal(read(c.caPath), ca);
});

test('invalid input is refused before anything is written', () => {
  for (const bad of [
    { hostnames: [], ips: [] },
    { ips: ['999.1.1.1'] },
    { hostnames: ['bad host'] },
    { days: 0 },
    { days: 1.5 },
  ]) {
    const x = opts(bad);
    assert.throws(() => generateDevCertificate(x));
    assert.equal(fs.existsSync(path.dirname(x.certPath)), false);
  }
});

test('IP-only certificate works', () => {
  const x = opts({ hostnames: [], ips: ['127.0.0.1'] });
  assert.equal(generateDevCertificate(x).created, true);
  const leaf = new X509Certificate(read(x.certPath));
  assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(leaf.checkHost('localhost'), undefined);
  assert.ok(leaf.publicKey.equals(createPublicKey(createPrivateKey(read(x.keyPath)))));
});
