// A request body read whole, up to a limit: for the few wrapper-owned
// endpoints that need the bytes before passing them on (a form post, a JSON
// body to check). Proxied bodies are streamed instead (proxy.ts).
import type { IncomingMessage } from 'node:http';

/** The whole body, or null once it grows past `limit` bytes (the rest is left unread). */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A url-encoded form post's fields; undefined for another content type or a body past `limit`. */
export async function readForm(req: IncomingMessage, limit = 16_384): Promise<URLSearchParams | undefined> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(String(req.headers['content-type'] ?? ''))) return undefined;
  const body = await readBody(req, limit);
  return body === null ? undefined : new URLSearchParams(body.toString('utf8'));
}
