/** `tp status` for a person: the daemon's status object as aligned lines. */
export function formatStatus(s: Record<string, unknown>): string {
  const lines: string[] = ["tp: connected"];
  const walk = (v: unknown, indent: string, key: string) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      lines.push(`${indent}${key}:`);
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, indent + "  ", k);
    } else if (Array.isArray(v)) {
      lines.push(
        `${indent}${key}: ${
          v.length ? v.map((x) => typeof x === "object" ? JSON.stringify(x) : String(x)).join(", ") : "(none)"
        }`,
      );
    } else {
      lines.push(`${indent}${key}: ${v === "" || v === undefined || v === null ? "-" : String(v)}`);
    }
  };
  for (const [k, v] of Object.entries(s)) if (k !== "settings") walk(v, "  ", k);
  return lines.join("\n");
}
