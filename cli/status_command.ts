import { Command } from "@commander-js/extra-typings";
import { outputOption } from "./output.ts";
import { showStatus } from "./status.ts";

/** `tp status`: what the daemon is connected to and what has flowed. Exit 0 when connected, 3 when not. */
export function statusCommand() {
  return new Command("status")
    .description(
      "Show whether tp is connected, to which traffic-manager and session, its device, subnets and DNS, and its " +
        "connection, byte and drop counters. Exits 0 when connected, 3 when not.",
    )
    .addOption(outputOption())
    .action((opts) => showStatus(opts.output));
}
