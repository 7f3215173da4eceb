import { Command } from "@commander-js/extra-typings";
import { outputOption, printJson } from "./output.ts";
import { VERSION } from "./version.ts";

/** `tp version`: the client's version and the runtime it runs on. */
export function versionCommand(): Command<[], { output: "text" | "json" }> {
  return new Command("version")
    .description("print tp's version")
    .addOption(outputOption())
    .action((opts) => {
      const info = { version: VERSION, deno: Deno.version.deno, os: Deno.build.os, arch: Deno.build.arch };
      if (opts.output === "json") printJson(info);
      else console.log(`tp ${info.version} (deno ${info.deno}, ${info.os}/${info.arch})`);
    });
}
