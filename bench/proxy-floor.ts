// Child process for bench/proxy.ts, row "node-floor": the thinnest reverse
// proxy Node can be with the parts Kiwi ID's front door uses — node:https
// terminating TLS with the wrapper's certificate, each request one dispatch
// on the same undici keep-alive pool (Kanidm's CA pinned, upstream/tls.ts),
// the answer written straight into the client response. No routing, request
// ids, logging, metrics, limits or error pages, and only the headers a proxy
// cannot do without. It is not a product path: it measures what any Node
// front costs on this machine, so the wrapper's own share is the difference.
// Prints its port once listening.
//
//   node --import tsx bench/proxy-floor.ts CERT KEY KANIDM_ORIGIN KANIDM_CA
import fs from 'node:fs';
import https from 'node:https';
import type { Dispatcher } from 'undici';
import { proxyAgent, upstreamTls } from '../wrapper/src/upstream/tls.js';

const [cert, key, origin, ca] = process.argv.slice(2) as [string, string, string, string];
const agent = proxyAgent(upstreamTls(origin, ca));
const servername = new URL(origin).hostname;
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host']);

const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (!HOP.has(req.rawHeaders[i]!.toLowerCase())) headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  headers.push('host', req.headers.host ?? '', 'x-forwarded-for', req.socket.remoteAddress ?? '');
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart() {}, // (undici tells new-style handlers by this method)
    onResponseStart(_c, status, parsed) {
      const out: Array<string | string[]> = [];
      for (const name in parsed) if (!HOP.has(name)) out.push(name, parsed[name]!);
      res.writeHead(status, out as string[]);
    },
    onResponseData: (_c, chunk) => void res.write(chunk),
    onResponseEnd: () => void res.end(),
    onResponseError: () => void res.destroy(),
  };
  try {
    agent.dispatch({ origin, path: req.url!, method: req.method as Dispatcher.HttpMethod, headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req, servername } as Dispatcher.DispatchOptions, handler);
  } catch {
    res.writeHead(502).end(); // undici refused the request (e.g. a header it considers invalid)
  }
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void agent.close();
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
