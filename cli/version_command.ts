import { Command } from "@commander-js/extra-typings";
import { outputOption } from "./output.ts";
import { printVersion } from "./version.ts";

/** `tp version`: the client's version and the runtime it runs on. */
export function versionCommand(): Command<[], { output: "text" | "json" }> {
  return new Command("version")
    .description("print tp's version")
    .addOption(outputOption())
    .action((opts) => printVersion(opts.output));
}
