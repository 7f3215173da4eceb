/**
 * What makes a request or a response malformed (RFC 9113 section 8.1.1), checked once per header block: field
 * names and values (8.2.1), connection-specific fields (8.2.2), pseudo-header fields (8.3), and content-length
 * (8.1.1), whose sum of DATA the connection checks as it goes. Each check returns why the block is malformed, or
 * undefined when it is not; the connection resets that stream alone with PROTOCOL_ERROR.
 */
import type { HeaderList } from "./hpack.ts";

/** Fields that only mean something on one HTTP/1.1 hop (RFC 9113 section 8.2.2). */
const CONNECTION_SPECIFIC = new Set(["connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade"]);
const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path"]);
/** A regular field name: no 0x00-0x20, no uppercase, no 0x7f and above, no colon (RFC 9113 section 8.2.1). */
// deno-lint-ignore no-control-regex
const BAD_NAME = /[\x00-\x20A-Z\x7f-\uffff:]/;
/** A value: no NUL, CR or LF; no whitespace at either end (RFC 9113 section 8.2.1). */
const BAD_VALUE = /[\0\r\n]|^[ \t]|[ \t]$/;

/** The first 40 characters of a peer's string, for a reason (never all of it: reasons end up in logs). */
const show = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

function checkRegular(name: string, value: string): string | undefined {
  if (name.length === 0 || BAD_NAME.test(name)) return `field name ${show(name)} is not lowercase and valid`;
  if (BAD_VALUE.test(value)) return `field ${show(name)} has a value with NUL, CR, LF or whitespace at an end`;
  if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${show(name)}`;
  if (name === "te" && value !== "trailers") return `TE other than "trailers"`;
  return undefined;
}

/** A request's header block: the pseudo-headers of section 8.3.1 once each and first, valid regular fields. */
export function checkRequest(headers: HeaderList): string | undefined {
  const seen = new Map<string, string>();
  let regular = false;
  for (const [name, value] of headers) {
    if (name.startsWith(":")) {
      if (regular) return `pseudo-header ${show(name)} after a regular field`;
      if (!REQUEST_PSEUDO.has(name)) return `pseudo-header ${show(name)} is not a request's`;
      if (seen.has(name)) return `pseudo-header ${name} twice`;
      seen.set(name, value);
    } else {
      regular = true;
      const bad = checkRegular(name, value);
      if (bad) return bad;
    }
  }
  if (seen.get(":method") === "CONNECT") {
    // Section 8.5: :authority only, no :scheme or :path.
    if (!seen.has(":authority") || seen.has(":scheme") || seen.has(":path")) {
      return "CONNECT with the wrong pseudo-headers";
    }
    return undefined;
  }
  for (const p of [":method", ":scheme", ":path"]) if (!seen.has(p)) return `request without ${p}`;
  if (seen.get(":path") === "") return "empty :path";
  return undefined;
}

/** A response's header block (or an informational one): :status once, three digits, first; valid fields. */
export function checkResponse(headers: HeaderList): string | undefined {
  let status: string | undefined;
  let regular = false;
  for (const [name, value] of headers) {
    if (name.startsWith(":")) {
      if (regular) return `pseudo-header ${show(name)} after a regular field`;
      if (name !== ":status") return `pseudo-header ${show(name)} is not a response's`;
      if (status !== undefined) return "pseudo-header :status twice";
      status = value;
    } else {
      regular = true;
      const bad = checkRegular(name, value);
      if (bad) return bad;
    }
  }
  if (status === undefined) return "response without :status";
  if (!/^[1-9][0-9][0-9]$/.test(status)) return `:status ${show(status)} is not three digits`;
  return undefined;
}

/** Trailers: no pseudo-headers at all (section 8.1), valid fields. */
export function checkTrailers(headers: HeaderList): string | undefined {
  for (const [name, value] of headers) {
    if (name.startsWith(":")) return `pseudo-header ${show(name)} in trailers`;
    const bad = checkRegular(name, value);
    if (bad) return bad;
  }
  return undefined;
}

/**
 * The content-length a header block declares: undefined when it has none, null when it is malformed (not digits,
 * or several that differ: RFC 9110 section 8.6).
 */
export function contentLength(headers: HeaderList): number | undefined | null {
  let n: number | undefined;
  for (const [name, value] of headers) {
    if (name !== "content-length") continue;
    for (const part of value.split(",")) {
      const t = part.trim();
      if (!/^[0-9]{1,15}$/.test(t)) return null;
      const v = Number(t);
      if (n !== undefined && n !== v) return null;
      n = v;
    }
  }
  return n;
}
