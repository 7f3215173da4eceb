/** Secrets out of what tp writes for others to read (`tp gather-logs`, `tp status -o json`). */

/** Keys whose values are secrets, wherever they appear in a JSON value. */
const SECRET_KEY = /token|password|secret|authorization/i;

/** A copy of `value` with every secret-named key's non-empty value replaced by "(set)". */
export function redactJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactJson);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) && v !== "" && v !== null ? "(set)" : redactJson(v)]),
  );
}

/** `text` with each known secret, and anything after "Bearer ", replaced by "(redacted)". */
export function redactText(text: string, secrets: readonly string[]): string {
  let out = text.replace(/(Bearer\s+)[^\s"',]+/gi, "$1(redacted)");
  for (const s of secrets.filter((s) => s.length >= 4)) out = out.replaceAll(s, "(redacted)");
  return out;
}
