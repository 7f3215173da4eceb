import { printJson } from "./print_json.ts";

/** tp's version, shown by `tp version` and exchanged with the traffic-manager. Kept in step with deno.json. */
export const VERSION = "0.1.0";

/** `tp version`'s output: the client's version and the runtime it runs on. */
export function printVersion(output: "text" | "json"): void {
  const info = { version: VERSION, deno: Deno.version.deno, os: Deno.build.os, arch: Deno.build.arch };
  if (output === "json") printJson(info);
  else console.log(`tp ${info.version} (deno ${info.deno}, ${info.os}/${info.arch})`);
}
