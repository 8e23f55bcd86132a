// Offline token verification throughput: Kiwi ID's verify() helper (full JWT
// checks: parse, ES256 signature, iss/aud/exp) against OpenSSL's raw ECDSA
// P-256 verify (`openssl speed ecdsap256`), measured one after the other in
// this run on this machine. Both are single-threaded.
//
//   node --import tsx bench/verify.ts [seconds=3]
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { verify } from '../wrapper/src/crypto/verify.js';

const seconds = Number(process.argv[2] ?? 3);
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
const opts = { issuer: 'https://id.example.com', audience: 'kiwi-mail' };
const token = await new SignJWT({ sub: 'alice', groups: ['staff'], preferred_username: 'alice' })
  .setProtectedHeader({ alg: 'ES256', kid: 'bench' })
  .setIssuer(opts.issuer)
  .setAudience(opts.audience)
  .setIssuedAt()
  .setExpirationTime('15m')
  .sign(privateKey);

await verify(token, pem, opts); // warm up (key import cache, JIT)
for (let i = 0; i < 2000; i++) await verify(token, pem, opts);

let n = 0;
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() < end) {
  for (let i = 0; i < 100; i++) await verify(token, pem, opts);
  n += 100;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
const kiwi = n / elapsed;

const out = execFileSync('openssl', ['speed', '-seconds', String(seconds), 'ecdsap256'], {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'ignore'],
});
// Result line: " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  13000.0"
const row = out.split('\n').find((l) => /ecdsa \(nistp256\)/.test(l) && /\d+\.\d+\s*$/.test(l));
if (!row) throw new Error('could not read openssl speed output');
const nums = row.trim().split(/\s+/);
const opensslVerify = Number(nums[nums.length - 1]);

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
console.log(`verify() ES256 JWT (signature + claims): ${fmt(kiwi)} ops/s`);
console.log(`openssl speed ecdsap256 verify:          ${fmt(opensslVerify)} ops/s`);
console.log(`ratio kiwi/openssl:                      ${(kiwi / opensslVerify).toFixed(2)}`);
