// Binding a server, with a bind failure (port taken, address not here) as a
// rejected promise rather than an 'error' event nobody listens to yet.
import type { Server } from 'node:net';
import type { AddressInfo } from 'node:net';

export function listenOn(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
