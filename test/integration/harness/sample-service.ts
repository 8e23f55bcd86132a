// A KiwiStack service (test/e2e/sample-service.ts) registered at a node with
// `kiwi-id client add` and trusting it the way a real one does: the node's
// listener CA and jwt-public.pem, nothing else.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSampleService } from '../../e2e/sample-service.js';
import { freePort } from '../../e2e/net.js';
import type { KiwiNode } from './kiwi-node.js';

export interface ServiceAtOptions {
  scope?: string;
  /** Also register <service>/bye as its post-logout redirect URI. */
  postLogout?: boolean;
  /** More `kiwi-id client add` options, e.g. ['--allowed-group', 'x']. */
  clientArgs?: string[];
}

export async function serviceAt(node: KiwiNode, clientId: string, o: ServiceAtOptions = {}) {
  const port = await freePort();
  const url = `https://localhost:${port}`;
  const args = ['client', 'add', clientId, '--redirect-uri', `${url}/callback`, ...(o.postLogout ? ['--post-logout-redirect-uri', `${url}/bye`] : []), ...(o.clientArgs ?? [])];
  const r = await node.kiwi(args);
  assert.equal(r.exitCode, 0, `kiwi-id ${args.join(' ')}: ${r.stderr}`);
  const secret = /client_secret: (\S+)/.exec(r.stdout)![1]!;
  const service = await startSampleService({
    issuer: node.base,
    clientId,
    clientSecret: secret,
    scope: o.scope ?? 'openid profile email groups',
    publicKeyPem: fs.readFileSync(path.join(node.root, 'jwt-public.pem'), 'utf8'),
    tls: { cert: fs.readFileSync(path.join(node.root, 'tls/wrapper.crt')), key: fs.readFileSync(path.join(node.root, 'private/wrapper.key')) },
    ca: fs.readFileSync(node.caPath),
    port,
  });
  return { service, secret };
}
