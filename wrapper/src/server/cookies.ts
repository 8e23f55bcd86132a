// Reading one cookie of a request's Cookie header (RFC 6265 "name=value; ..."),
// for the few cookies the wrapper itself looks at: Kanidm's session bearer at
// logout, the federation's browser-binding cookie at an upstream's callback.

/** The value of cookie `name`, or undefined when the header has none. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
