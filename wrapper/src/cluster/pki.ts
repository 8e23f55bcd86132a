// The cluster's own small PKI. `kiwi-id cluster init` makes a private cluster CA on the first
// node; every node gets a key pair and a certificate naming its node_id, issued by that CA when
// it joins with a one-time token. The node key authenticates both the mutual TLS between nodes
// and the signature on every gossip envelope (envelope.ts).
//
// Layout under <data_dir>/cluster/:
//   ca.crt         the cluster CA certificate (every node; the only trust root between nodes)
//   ca.key         its private key (0600; only on the node that ran `cluster init`)
//   node.key       this node's private key (0600)
//   node.crt       this node's certificate (CN and subjectAltName = node_id)
//   join-tokens/   one file per unused join token (hash only), on the CA node
//
// node-forge signs the certificates (it handles RSA only, hence RSA 2048 as in tls-certs.ts).

import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import forge from 'node-forge';
import { replaceFileAtomic } from '../files/atomic-file.js';
import { writeNewFilesAtomic } from '../crypto/keys.js';

export interface ClusterPaths {
  dir: string;
  caCert: string;
  caKey: string;
  nodeKey: string;
  nodeCert: string;
  joinTokens: string;
}

export function clusterPaths(dataDir: string): ClusterPaths {
  const dir = path.join(dataDir, 'cluster');
  return {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    nodeKey: path.join(dir, 'node.key'),
    nodeCert: path.join(dir, 'node.crt'),
    joinTokens: path.join(dir, 'join-tokens'),
  };
}

export interface NodeIdentity {
  readonly nodeId: string;
  readonly keyPem: string;
  readonly certPem: string;
  readonly caPem: string;
  readonly ca: X509Certificate;
  readonly cert: X509Certificate;
}

const NODE_CERT_DAYS = 825;
const CA_DAYS = 3650;

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function rsaKey(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function forgePrivate(pem: string): forge.pki.rsa.PrivateKey {
  // forge reads PKCS#1 or PKCS#8 "PRIVATE KEY" PEMs.
  return forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
}

/** SHA-256 of the certificate, colon-separated hex (what operators compare). */
export function fingerprint(cert: X509Certificate): string {
  return cert.fingerprint256;
}

/** Creates the cluster CA unless it exists. Returns false when it was already there. */
export function createClusterCa(p: ClusterPaths, clusterName: string): boolean {
  if (fs.existsSync(p.caCert)) return false;
  const ca = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(ca.publicPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 5 * 60_000);
  cert.validity.notAfter = new Date(Date.now() + CA_DAYS * 86_400_000);
  const name = [
    { name: 'commonName', value: `Kiwi ID cluster CA ${clusterName} ${randomBytes(4).toString('hex')}` },
    { name: 'organizationName', value: 'Kiwi ID cluster' },
  ];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgePrivate(ca.privatePem), forge.md.sha256.create());
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  writeNewFilesAtomic([
    { path: p.caKey, data: ca.privatePem, mode: 0o600 },
    { path: p.caCert, data: forge.pki.certificateToPem(cert), mode: 0o644 },
  ]);
  return true;
}

/** A new node key pair (private PEM stays on the node; the public half is what gets certified). */
export function newNodeKey(): { privatePem: string; publicPem: string } {
  return rsaKey();
}

/** Issues a node certificate for `nodeId` over `publicPem`, signed by the cluster CA. */
export function issueNodeCertificate(caKeyPem: string, caCertPem: string, nodeId: string, publicPem: string): string {
  const caCert = forge.pki.certificateFromPem(caCertPem);
  // The key must be a real public key (not a private one smuggled in).
  const pub = createPublicKey(publicPem);
  if (pub.asymmetricKeyType !== 'rsa') throw new Error('node key must be RSA');
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pub.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 5 * 60_000);
  cert.validity.notAfter = new Date(Date.now() + NODE_CERT_DAYS * 86_400_000);
  cert.setSubject([{ name: 'commonName', value: nodeId }, { name: 'organizationName', value: 'Kiwi ID cluster node' }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: [net.isIP(nodeId) ? { type: 7, ip: nodeId } : { type: 2, value: nodeId }] },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forgePrivate(caKeyPem), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** The node_id a node certificate names (its CN). */
export function nodeIdOf(cert: X509Certificate): string | undefined {
  const m = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject);
  return m?.[1]?.trim().toLowerCase();
}

/**
 * Checks that `cert` was issued by the cluster CA, is valid now, and returns its node_id;
 * throws saying why not.
 */
export function verifyNodeCertificate(cert: X509Certificate, ca: X509Certificate, now = Date.now()): string {
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new Error('certificate not issued by the cluster CA');
  if (Date.parse(cert.validFrom) > now + 5 * 60_000 || Date.parse(cert.validTo) < now) throw new Error('certificate not valid now');
  const id = nodeIdOf(cert);
  if (!id) throw new Error('certificate names no node');
  return id;
}

/** Writes this node's key and certificate (and the CA certificate if missing). Never overwrites a key. */
export function writeNodeIdentity(p: ClusterPaths, keyPem: string, certPem: string, caPem: string): void {
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(p.caCert)) replaceFileAtomic(p.caCert, caPem, 0o644);
  writeNewFilesAtomic([
    { path: p.nodeKey, data: keyPem, mode: 0o600 },
    { path: p.nodeCert, data: certPem, mode: 0o644 },
  ]);
}

/** Loads this node's identity; every failure names the file and what to run. */
export function loadNodeIdentity(p: ClusterPaths, expectedNodeId: string): NodeIdentity {
  const read = (file: string, what: string) => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`${file}: cannot read ${what} (${(e as NodeJS.ErrnoException).code}); run \`kiwi-id cluster init\` on the first node or \`kiwi-id cluster join TOKEN\` on the others`);
    }
  };
  const caPem = read(p.caCert, 'the cluster CA certificate');
  const certPem = read(p.nodeCert, 'this node\'s certificate');
  const keyPem = read(p.nodeKey, 'this node\'s key');
  if ((fs.statSync(p.nodeKey).mode & 0o077) !== 0) throw new Error(`${p.nodeKey}: node key is readable by group/others; run chmod 600 ${p.nodeKey}`);
  const ca = new X509Certificate(caPem);
  const cert = new X509Certificate(certPem);
  const id = verifyNodeCertificate(cert, ca);
  if (id !== expectedNodeId) throw new Error(`${p.nodeCert}: certificate is for node ${JSON.stringify(id)}, but node_id is ${JSON.stringify(expectedNodeId)}`);
  if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`${p.nodeKey}: is not the key of ${p.nodeCert}`);
  return { nodeId: id, keyPem, certPem, caPem, ca, cert };
}

// ---------------------------------------------------------------------------
// One-time join tokens

export interface JoinToken {
  /** The CA node's gossip listener, where `join` sends its request. */
  readonly url: string;
  readonly nodeId: string;
  readonly secret: string;
  /** DER of the cluster CA certificate: the joining node pins it for that first connection. */
  readonly caDer: Buffer;
}

const TOKEN_PREFIX = 'kiwi-join.';

export function encodeJoinToken(t: JoinToken): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify({ u: t.url, n: t.nodeId, s: t.secret, c: t.caDer.toString('base64') })).toString('base64url');
}

export function decodeJoinToken(s: string): JoinToken {
  const fail = () => new Error('not a Kiwi ID join token (made by `kiwi-id cluster token NODE_ID` on the CA node)');
  if (!s.startsWith(TOKEN_PREFIX)) throw fail();
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(s.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    throw fail();
  }
  if (typeof o.u !== 'string' || typeof o.n !== 'string' || typeof o.s !== 'string' || typeof o.c !== 'string') throw fail();
  return { url: o.u, nodeId: o.n, secret: o.s, caDer: Buffer.from(o.c, 'base64') };
}

const tokenFile = (p: ClusterPaths, secret: string) =>
  path.join(p.joinTokens, createHash('sha256').update(secret).digest('hex') + '.json');

/** Creates a one-time token for `nodeId`, valid `ttlMs`. Only its hash is stored. */
export function createJoinToken(p: ClusterPaths, url: string, nodeId: string, ttlMs: number): string {
  const caPem = fs.readFileSync(p.caCert, 'utf8');
  if (!fs.existsSync(p.caKey)) throw new Error(`${p.caKey}: missing; join tokens are made on the node that ran \`kiwi-id cluster init\``);
  const secret = randomBytes(32).toString('base64url');
  fs.mkdirSync(p.joinTokens, { recursive: true, mode: 0o700 });
  fs.writeFileSync(tokenFile(p, secret), JSON.stringify({ node_id: nodeId, expires_at: Date.now() + ttlMs }), { mode: 0o600, flag: 'wx' });
  return encodeJoinToken({ url, nodeId, secret, caDer: new X509Certificate(caPem).raw });
}

/**
 * Consumes a join token: exactly one caller can succeed (unlink is atomic). Throws when the
 * token is unknown, used, expired or for another node.
 */
export function consumeJoinToken(p: ClusterPaths, secret: string, nodeId: string, now = Date.now()): void {
  const file = tokenFile(p, secret);
  let data: { node_id: string; expires_at: number };
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8'));
    fs.unlinkSync(file);
  } catch {
    throw new Error('unknown or already used join token');
  }
  const a = Buffer.from(data.node_id);
  const b = Buffer.from(nodeId);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new Error(`join token is for node ${JSON.stringify(data.node_id)}, not ${JSON.stringify(nodeId)}`);
  if (data.expires_at < now) throw new Error('join token expired');
}
