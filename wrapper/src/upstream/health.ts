// One health probe: Kanidm's GET /status answers the JSON literal `true` when
// its database and query server are usable.
import { request, type Dispatcher } from 'undici';

export async function probeStatus(upstreamAddr: string, dispatcher: Dispatcher, timeoutMs: number): Promise<boolean> {
  try {
    const res = await request(new URL('/status', upstreamAddr), {
      dispatcher,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.body.text()).trim();
    return res.statusCode === 200 && body === 'true';
  } catch {
    return false;
  }
}
