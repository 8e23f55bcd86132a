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
