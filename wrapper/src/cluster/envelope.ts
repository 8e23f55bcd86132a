// Signed envelopes: every message between nodes (gossip deltas, forwarded consumptions, quorum
// votes) is a JWS (flattened JSON serialization) signed with the sender's node key, carrying the
// sender's node certificate in `x5c`. A receiver opens it only when
//   - the certificate was issued by the cluster CA and names the envelope's sender,
//   - the sender's node_id is in `[gossip] allowed_node_ids` (always enforced; empty = nobody),
//   - the signature verifies with that certificate's key,
//   - it is addressed to this node, has the expected type,
//   - it is not older than `tombstone_ttl_secs` nor further ahead than the allowed clock drift.
// Anything else is dropped before merge, with a reason that is counted in metrics.
//
// This is on top of the mutual TLS between nodes (transport.ts): the TLS client certificate
// must name the same node as the envelope.

import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { FlattenedSign, flattenedVerify, type FlattenedJWS } from 'jose';
import { verifyNodeCertificate, type NodeIdentity } from './pki.js';

export interface Envelope<B = unknown> {
  readonly v: 1;
  readonly type: string;
  readonly from: string;
  readonly to: string;
  /** Epoch ms at which the sender sealed it. */
  readonly issued_at: number;
  readonly body: B;
}

export type RejectReason =
  | 'malformed'
  | 'bad_certificate'
  | 'unlisted_node'
  | 'sender_mismatch'
  | 'bad_signature'
  | 'too_old'
  | 'from_future'
  | 'wrong_recipient'
  | 'wrong_type';

export class EnvelopeRejected extends Error {
  constructor(
    readonly reason: RejectReason,
    detail: string,
  ) {
    super(`envelope rejected (${reason}): ${detail}`);
    this.name = 'EnvelopeRejected';
  }
}

export interface OpenOptions {
  readonly ca: X509Certificate;
  readonly allowedNodeIds: ReadonlySet<string>;
  /** Envelopes older than this are refused (tombstone_ttl_secs). */
  readonly maxAgeMs: number;
  /** Envelopes from further in the future than this are refused. */
  readonly maxDriftMs: number;
  readonly self: string;
  readonly type: string | readonly string[];
  /** When known (the TLS peer, or the node we called), the sender must be this node. */
  readonly expectedFrom?: string;
  readonly now?: () => number;
}

export class Sealer {
  private readonly key: KeyObject;
  private readonly x5c: string;

  constructor(private readonly identity: NodeIdentity) {
    this.key = createPrivateKey(identity.keyPem);
    this.x5c = identity.cert.raw.toString('base64');
  }

  async seal<B>(type: string, to: string, body: B, issuedAt = Date.now()): Promise<FlattenedJWS> {
    const env: Envelope<B> = { v: 1, type, from: this.identity.nodeId, to, issued_at: issuedAt, body };
    return new FlattenedSign(Buffer.from(JSON.stringify(env)))
      .setProtectedHeader({ alg: 'RS256', x5c: [this.x5c] })
      .sign(this.key);
  }
}

function isJws(x: unknown): x is FlattenedJWS {
  const o = x as Record<string, unknown>;
  return !!o && typeof o === 'object' && typeof o.payload === 'string' && typeof o.signature === 'string' && typeof o.protected === 'string';
}

// Peers send the same few certificates over and over: remember which ones already verified
// against the CA (until they expire) instead of checking the chain on every envelope.
const verified = new Map<string, { cert: X509Certificate; node: string; validTo: number }>();
const MAX_CACHED = 256;

function verifiedCertificate(b64: string, ca: X509Certificate, now: number): { cert: X509Certificate; node: string } {
  const key = `${ca.fingerprint256}|${b64}`;
  const hit = verified.get(key);
  if (hit && hit.validTo > now) return hit;
  const cert = new X509Certificate(Buffer.from(b64, 'base64'));
  const node = verifyNodeCertificate(cert, ca, now);
  if (verified.size >= MAX_CACHED) verified.delete(verified.keys().next().value!);
  verified.set(key, { cert, node, validTo: Date.parse(cert.validTo) });
  return { cert, node };
}

/** Verifies and opens an envelope, or throws EnvelopeRejected. */
export async function openEnvelope<B>(raw: unknown, o: OpenOptions): Promise<Envelope<B>> {
  if (!isJws(raw)) throw new EnvelopeRejected('malformed', 'not a flattened JWS');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(raw.protected!, 'base64url').toString('utf8'));
  } catch {
    throw new EnvelopeRejected('malformed', 'unreadable protected header');
  }
  if (header.alg !== 'RS256' || !Array.isArray(header.x5c) || typeof header.x5c[0] !== 'string') {
    throw new EnvelopeRejected('malformed', 'expected alg RS256 and an x5c certificate');
  }
  let cert: X509Certificate;
  let certNode: string;
  try {
    ({ cert, node: certNode } = verifiedCertificate(header.x5c[0], o.ca, (o.now ?? Date.now)()));
  } catch (e) {
    throw new EnvelopeRejected('bad_certificate', (e as Error).message);
  }
  // Allow-list before any further work on the content.
  if (!o.allowedNodeIds.has(certNode)) throw new EnvelopeRejected('unlisted_node', `node ${JSON.stringify(certNode)} is not in allowed_node_ids`);
  let payload: Uint8Array;
  try {
    ({ payload } = await flattenedVerify(raw, cert.publicKey, { algorithms: ['RS256'] }));
  } catch (e) {
    throw new EnvelopeRejected('bad_signature', (e as Error).message);
  }
  let env: Envelope<B>;
  try {
    env = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    throw new EnvelopeRejected('malformed', 'payload is not JSON');
  }
  if (!env || env.v !== 1 || typeof env.from !== 'string' || typeof env.to !== 'string' || typeof env.type !== 'string' || typeof env.issued_at !== 'number') {
    throw new EnvelopeRejected('malformed', 'missing envelope fields');
  }
  if (env.from !== certNode) throw new EnvelopeRejected('sender_mismatch', `signed by ${certNode} but claims ${env.from}`);
  if (o.expectedFrom !== undefined && env.from !== o.expectedFrom) {
    throw new EnvelopeRejected('sender_mismatch', `expected ${o.expectedFrom}, got ${env.from}`);
  }
  if (env.to !== o.self) throw new EnvelopeRejected('wrong_recipient', `addressed to ${env.to}`);
  const types = typeof o.type === 'string' ? [o.type] : o.type;
  if (!types.includes(env.type)) throw new EnvelopeRejected('wrong_type', `got ${env.type}`);
  const now = (o.now ?? Date.now)();
  if (now - env.issued_at > o.maxAgeMs) throw new EnvelopeRejected('too_old', `issued ${Math.round((now - env.issued_at) / 1000)} s ago`);
  if (env.issued_at - now > o.maxDriftMs) throw new EnvelopeRejected('from_future', `issued ${Math.round((env.issued_at - now) / 1000)} s ahead`);
  return env;
}
