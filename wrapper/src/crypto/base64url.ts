// Base64url decoding (RFC 4648 §5, unpadded, as JWS uses it) by table lookup.
//
// Why not Buffer.from(s, 'base64url'): on CPUs with AVX-512, Node's decoder
// (simdutf) runs 512-bit vector code, and the ECDSA verification that follows
// it ran ~6 µs (8 %) slower per token on this project's Xeon — the cost of
// the core switching into and out of wide-vector work, not of the decode
// itself (0.13 µs alone). With SIMDUTF_FORCE_IMPLEMENTATION=haswell the
// penalty went, and so it does with this loop (~0.3 µs for a signature).
// bench/verify.ts measures verify() against the bare signature check.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Each ASCII code's 6-bit value, -1 outside the alphabet. */
const SEXTET = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) SEXTET[ALPHABET.charCodeAt(i)] = i;

const sextet = (s: string, i: number): number => {
  const c = s.charCodeAt(i);
  return c < 128 ? SEXTET[c]! : -1;
};

/**
 * The bytes of `s`, or undefined if it holds a character outside the
 * base64url alphabet ('=' padding included). As Node's decoder does, a lone
 * last character (a length of 4n+1, which no encoder produces) and the
 * unused low bits of the last character are dropped: callers that must
 * refuse such lengths check them (JWS does, see verify.ts).
 */
export function decodeBase64url(s: string): Buffer | undefined {
  const n = s.length;
  const out = Buffer.allocUnsafe((n * 3) >> 2); // 3 bytes per 4 characters, rounded down
  let bad = 0; // any -1 ORed in stays negative
  let o = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const a = sextet(s, i);
    const b = sextet(s, i + 1);
    const c = sextet(s, i + 2);
    const d = sextet(s, i + 3);
    bad |= a | b | c | d;
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = v >> 16;
    out[o++] = (v >> 8) & 0xff;
    out[o++] = v & 0xff;
  }
  const left = n - i;
  if (left === 1) bad |= sextet(s, i);
  else if (left > 1) {
    const a = sextet(s, i);
    const b = sextet(s, i + 1);
    const c = left === 3 ? sextet(s, i + 2) : 0;
    bad |= a | b | c;
    const v = (a << 18) | (b << 12) | (c << 6);
    out[o++] = v >> 16;
    if (left === 3) out[o++] = (v >> 8) & 0xff;
  }
  return bad < 0 ? undefined : out; // o === out.length: the size above is exact
}
