// Offline token verification throughput: Kiwi ID's verify() helper (full JWT
// checks: parse, kid, signature, iss/aud/exp/nbf) against OpenSSL's raw
// signature verify (`openssl speed`), for ES256 (P-256) and EdDSA (Ed25519),
// measured one after the other in this run on this machine. jose's
// jwtVerify with the same checks is shown for reference. All single-threaded.
// Because `openssl speed` runs alone in its own seconds, a busy machine moves
// that ratio; the signature check alone through node:crypto (the same
// OpenSSL call, no JWT work) is measured interleaved with verify() in short
// alternating slices, so kiwi/raw is what verify() adds on top of OpenSSL.
//
//   node --import tsx bench/verify.ts [seconds=3]
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import os from 'node:os';
import { jwtVerify, SignJWT } from 'jose';
import { thumbprint, verify } from '../wrapper/src/crypto/verify.js';

const seconds = Number(process.argv[2] ?? 3);
const opts = { issuer: 'https://id.example.com', audience: 'kiwi-mail' };

async function tokenFor(privateKey: KeyObject, publicKey: KeyObject, alg: string): Promise<string> {
  return new SignJWT({ sub: 'alice', groups: ['staff'], preferred_username: 'alice' })
    .setProtectedHeader({ alg, kid: thumbprint(publicKey) })
    .setIssuer(opts.issuer)
    .setAudience(opts.audience)
    .setIssuedAt()
    .setExpirationTime('15m')
    .sign(privateKey);
}

/** Calls per second of `fn`, after a warm-up (key preparation, JIT). */
async function rate(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 2000; i++) await fn();
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  while (process.hrtime.bigint() < end) {
    for (let i = 0; i < 100; i++) await fn();
    n += 100;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Rates of `a` and `b`, measured in alternating 100 ms slices over the same seconds. */
async function interleaved(a: () => unknown, b: () => unknown): Promise<[number, number]> {
  const counts = [0, 0];
  const spent = [0n, 0n];
  const fns = [a, b];
  for (let i = 0; i < 2000; i++) (a(), b());
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  for (let turn = 0; process.hrtime.bigint() < end; turn ^= 1) {
    const t0 = process.hrtime.bigint();
    const stop = t0 + 100_000_000n;
    let n = 0;
    while (process.hrtime.bigint() < stop) {
      for (let i = 0; i < 20; i++) await fns[turn]!();
      n += 20;
    }
    counts[turn]! += n;
    spent[turn]! += process.hrtime.bigint() - t0;
  }
  return [counts[0]! / (Number(spent[0]) / 1e9), counts[1]! / (Number(spent[1]) / 1e9)];
}

/** Verifies per second from `openssl speed ALGO` (last column of its result row). */
function opensslVerify(algo: string, row: RegExp): number {
  const out = execFileSync('openssl', ['speed', '-seconds', String(seconds), algo], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  // e.g. " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  13000.0"
  const line = out.split('\n').find((l) => row.test(l) && /\d+\.\d+\s*$/.test(l));
  if (!line) throw new Error(`could not read openssl speed ${algo} output`);
  return Number(line.trim().split(/\s+/).at(-1));
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US').padStart(8);
console.log(`offline JWT verification, ${seconds}s per row, single-threaded, ${os.cpus().length} cores`);
for (const [alg, type, algo, row] of [
  ['ES256', 'ec', 'ecdsap256', /ecdsa \(nistp256\)/],
  ['EdDSA', 'ed25519', 'ed25519', /EdDSA \(Ed25519\)/],
] as const) {
  const { privateKey, publicKey } =
    type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const token = await tokenFor(privateKey, publicKey, alg);
  const required = ['iss', 'aud', 'exp', 'iat', 'sub'];
  const [h, p, sig] = token.split('.') as [string, string, string];
  const input = Buffer.from(`${h}.${p}`);
  const signature = Buffer.from(sig, 'base64url');
  const raw = () => (type === 'ec' ? cryptoVerify('sha256', input, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature) : cryptoVerify(null, input, publicKey, signature));
  const [kiwi, rawRate] = await interleaved(() => verify(token, pem, opts), raw);
  const jose = await rate(() => jwtVerify(token, publicKey, { ...opts, algorithms: [alg], clockTolerance: 30, requiredClaims: required }));
  const openssl = opensslVerify(algo, row);
  console.log(
    `${alg}  kiwi-id verify() ${fmt(kiwi)} ops/s   signature alone via node:crypto ${fmt(rawRate)} ops/s (interleaved)   jose jwtVerify ${fmt(jose)} ops/s   openssl speed ${algo} verify ${fmt(openssl)} ops/s` +
      `   ratio kiwi/openssl ${(kiwi / openssl).toFixed(2)}   ratio kiwi/raw ${(kiwi / rawRate).toFixed(2)}` +
      // The ceiling for any verifier on node:crypto: its own one-shot call per signature.
      `   ratio raw/openssl ${(rawRate / openssl).toFixed(2)}`,
  );
}
