import path from 'node:path';
import { generateDevCertificate } from '../../../wrapper/src/crypto/tls-certs.js';

/**
 * A fresh private CA and a server certificate for localhost (+ `ips`) in `dir`:
 * `<name>.crt`, `<name>.key` (0600) and `<name>-ca.crt`, the file clients trust.
 */
export function localCertificate(dir: string, name: string, ips: readonly string[] = ['127.0.0.1']) {
  const o = {
    certPath: path.join(dir, `${name}.crt`),
    keyPath: path.join(dir, `${name}.key`),
    caPath: path.join(dir, `${name}-ca.crt`),
    hostnames: ['localhost'],
    ips: [...ips],
    days: 2,
  };
  generateDevCertificate(o);
  return o;
}
