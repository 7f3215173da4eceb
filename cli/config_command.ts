import { Command } from "@commander-js/extra-typings";
import { stringify } from "yaml";
import { outputOption, printJson } from "./output.ts";
import { configPath, loadConfig, redacted } from "./config.ts";

/** `tp config view`: the config file tp reads (TP_CONFIG or ~/.config/tp/config.yaml), checked, secrets hidden. */
export function configCommand() {
  const config = new Command("config").description(
    "tp's config file: defaults for any command's flags, a section per command (connect:, install:, ...), keys the " +
      "flags' long names. $TP_CONFIG, else ~/.config/tp/config.yaml. Flags override it.",
  );
  config.addCommand(
    new Command("view")
      .description("print the config file tp reads, checked, with tokens hidden")
      .addOption(outputOption())
      .action(async (opts) => {
        const path = configPath();
        const exists = await Deno.stat(path).then(() => true, () => false);
        const { COMMANDS } = await import("./main.ts");
        const values = exists ? redacted(await loadConfig(path, COMMANDS.map((c) => c.name))) : {};
        if (opts.output === "json") printJson({ path, exists, config: values });
        else if (!exists) console.log(`# ${path}: no such file (TP_CONFIG names another)`);
        else console.log(`# ${path}\n${Object.keys(values).length ? stringify(values).trimEnd() : "{}"}`);
      }),
  );
  return config;
}
