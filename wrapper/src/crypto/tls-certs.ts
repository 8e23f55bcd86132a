// Dev / first-boot TLS material for the wrapper's own HTTPS listener: a small
// private CA (only its certificate is kept; its key is discarded right after
// signing, so it can never issue anything else) and a server certificate with
// SANs for the given hostnames and IPs. Clients trust the CA file.
//
// Production deployments bring their own certificate; this never overwrites
// existing files.

import { generateKeyPairSync, createHash, randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import forge from 'node-forge';
import { ensureParentDir, writeNewFilesAtomic } from './keys.js';

export interface DevCertificateOptions {
  /** Leaf (server) certificate PEM, mode 0644. */
  certPath: string;
  /** Leaf private key, PKCS#8 PEM, mode 0600. */
  keyPath: string;
  /** The private CA's certificate PEM, mode 0644 (what clients trust). */
  caPath: string;
  /** DNS SANs, e.g. ["localhost", "id.example.test"]. */
  hostnames: string[];
  /** IP SANs (v4 or v6), e.g. ["127.0.0.1", "::1"]. */
  ips: string[];
  /** Validity in days (CA and leaf). */
  days: number;
}

export type DevCertificateResult =
  | { created: false }
  | {
      created: true;
      /** SHA-256 fingerprint of the CA certificate (colon-separated hex), for logs. */
      caFingerprint256: string;
      notAfter: Date;
    };

const HOSTNAME_RE = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function validate(o: DevCertificateOptions): void {
  if (!Array.isArray(o.hostnames) || !Array.isArray(o.ips)) throw new Error('hostnames and ips must be arrays');
  if (o.hostnames.length + o.ips.length === 0) throw new Error('at least one hostname or IP is required');
  for (const h of o.hostnames) {
    if (typeof h !== 'string' || h.length > 253 || !HOSTNAME_RE.test(h)) throw new Error(`invalid hostname ${JSON.stringify(h)}`);
  }
  for (const ip of o.ips) {
    if (typeof ip !== 'string' || net.isIP(ip) === 0) throw new Error(`invalid IP address ${JSON.stringify(ip)}`);
  }
  if (!Number.isInteger(o.days) || o.days < 1 || o.days > 3650) throw new Error(`days must be an integer from 1 to 3650, got ${o.days}`);
  const paths = new Set([o.certPath, o.keyPath, o.caPath].map((p) => path.resolve(p)));
  if (paths.size !== 3) throw new Error('certPath, keyPath and caPath must be three different files');
}

/** Positive, non-zero 128-bit serial as hex (high bit cleared so DER keeps it positive). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function rsaPair(): { node: KeyObject; forgePrivate: forge.pki.rsa.PrivateKey; forgePublic: forge.pki.rsa.PublicKey } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    node: privateKey,
    forgePrivate: forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
    forgePublic: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()),
  };
}

/**
 * Creates CA cert + leaf cert/key unless they exist. Returns `{created:false}`
 * (nothing touched) when cert and key both exist; throws, naming the file, for
 * half-present material (cert without key, key without cert, or a CA file
 * without the pair, whose key is gone so it cannot be reused).
 */
export function generateDevCertificate(o: DevCertificateOptions): DevCertificateResult {
  const haveCert = fs.existsSync(o.certPath);
  const haveKey = fs.existsSync(o.keyPath);
  if (haveCert && haveKey) return { created: false };
  if (haveCert) throw new Error(`${o.keyPath}: TLS key is missing but certificate ${o.certPath} exists; restore it or remove the certificate to generate new dev TLS material`);
  if (haveKey) throw new Error(`${o.certPath}: TLS certificate is missing but key ${o.keyPath} exists; restore it or remove the key to generate new dev TLS material`);
  if (fs.existsSync(o.caPath)) throw new Error(`${o.caPath}: dev CA certificate exists but ${o.certPath} and ${o.keyPath} do not; its key is gone, remove it to generate new dev TLS material`);
  validate(o);

  const notBefore = new Date(Date.now() - 5 * 60 * 1000); // tolerate small clock skew
  const notAfter = new Date(Date.now() + o.days * 24 * 60 * 60 * 1000);
  notAfter.setMilliseconds(0);
  const sha256 = () => forge.md.sha256.create();

  // node-forge can only generate/sign/encode RSA keys (no EC), hence RSA 2048 for CA and leaf.
  const ca = rsaPair();
  const leaf = rsaPair();

  const caCert = forge.pki.createCertificate();
  caCert.publicKey = ca.forgePublic;
  caCert.serialNumber = serial();
  caCert.validity.notBefore = notBefore;
  caCert.validity.notAfter = notAfter;
  const caName = [
    { name: 'commonName', value: `Kiwi ID dev CA ${randomBytes(4).toString('hex')}` },
    { name: 'organizationName', value: 'Kiwi ID (development)' },
  ];
  caCert.setSubject(caName);
  caCert.setIssuer(caName);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  caCert.sign(ca.forgePrivate, sha256());

  const cert = forge.pki.createCertificate();
  cert.publicKey = leaf.forgePublic;
  cert.serialNumber = serial();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([{ name: 'commonName', value: o.hostnames[0] ?? o.ips[0]! }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        ...o.hostnames.map((value) => ({ type: 2, value })),
        ...o.ips.map((ip) => ({ type: 7, ip })),
      ],
    },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(ca.forgePrivate, sha256());

  const caPem = forge.pki.certificateToPem(caCert);
  const caDer = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(caCert)).getBytes(), 'binary');
  const caFingerprint256 = createHash('sha256').update(caDer).digest('hex').toUpperCase().match(/../g)!.join(':');

  ensureParentDir(o.keyPath, true);
  ensureParentDir(o.certPath, false);
  ensureParentDir(o.caPath, false);
  // Certificate last: its presence means the set is complete.
  writeNewFilesAtomic([
    { path: o.caPath, data: caPem, mode: 0o644 },
    { path: o.keyPath, data: leaf.node.export({ type: 'pkcs8', format: 'pem' }), mode: 0o600 },
    { path: o.certPath, data: forge.pki.certificateToPem(cert), mode: 0o644 },
  ]);
  return { created: true, caFingerprint256, notAfter };
}
