import { VERSION } from "../base/version.ts";
import { printJson } from "./print_json.ts";

/** `tp version`'s output: the client's version and the runtime it runs on. */
export function printVersion(output: "text" | "json"): void {
  const info = { version: VERSION, deno: Deno.version.deno, os: Deno.build.os, arch: Deno.build.arch };
  if (output === "json") printJson(info);
  else console.log(`tp ${info.version} (deno ${info.deno}, ${info.os}/${info.arch})`);
}
