/**
 * Request bytes that go back into a reply or a log line are clipped: a rejection that quoted a whole header or path
 * let one small request (or one HPACK-indexed header repeated by a 3-byte block) make kilobytes of reply and log.
 */

/** What of a peer's string is echoed: enough to recognise it. */
export const ECHO_MAX = 64;

/** `s` cut to `max` characters, with "…" and the original length when it was longer. */
export function clip(s: string, max = ECHO_MAX): string {
  return s.length <= max ? s : `${s.slice(0, max)}…(${s.length} chars)`;
}
