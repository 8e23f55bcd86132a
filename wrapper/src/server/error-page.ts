// The wrapper's own error responses: short, no internals, in the format the
// client asked for (OAuth2/JSON clients get JSON, browsers a small page).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { escapeHtml, htmlPage } from './html.js';

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export interface ErrorPageOptions {
  retryAfterSeconds?: number;
  requestId?: string;
}

/** Answers with `status` unless a response is already under way (then the connection is cut). */
export function sendErrorPage(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  message: string,
  o: ErrorPageOptions = {},
): void {
  if (res.headersSent) {
    // Half a response cannot be turned into an error page; cutting the
    // connection is the only honest signal left to the client.
    res.destroy();
    return;
  }
  const title = TITLES[status] ?? 'Error';
  const wantsJson = /\bjson\b/i.test(String(req.headers.accept ?? ''));
  const body = wantsJson
    ? JSON.stringify({ error: title.toLowerCase().replace(/ /g, '_'), error_description: message })
    : htmlPage(
        `${status} ${title}`,
        `<h1>${status} ${title}</h1><p>${escapeHtml(message)}</p>` +
          (o.requestId ? `<p><small>Request id: ${escapeHtml(o.requestId)}</small></p>` : ''),
      );
  res.statusCode = status;
  res.setHeader('content-type', wantsJson ? 'application/json' : 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.setHeader('content-length', Buffer.byteLength(body));
  if (o.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(o.retryAfterSeconds));
  res.end(body);
}
