import { Command } from "@commander-js/extra-typings";
import { outputOption, printJson } from "./output.ts";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { statePaths } from "./daemon/state.ts";
import { ExitCode } from "./exit_code.ts";
import { ExitWith } from "./errors.ts";
import { formatStatus } from "./daemon/status_text.ts";

/** `tp status`: what the daemon is connected to and what has flowed. Exit 0 when connected, 3 when not. */
export function statusCommand() {
  return new Command("status")
    .description(
      "Show whether tp is connected, to which traffic-manager and session, its device, subnets and DNS, and its " +
        "connection, byte and drop counters. Exits 0 when connected, 3 when not.",
    )
    .addOption(outputOption())
    .action(async (opts) => {
      const paths = statePaths();
      try {
        const status = await controlRequest(paths.socket, { op: "status" });
        if (opts.output === "json") printJson({ connected: true, ...(status as object) });
        else console.log(formatStatus(status as Record<string, unknown>));
      } catch (e) {
        if (!(e instanceof NotRunningError)) throw e;
        const why = e.stale
          ? "not connected (the last daemon ended without tp quit: run tp quit to clean up)"
          : "not connected";
        if (opts.output === "json") printJson({ connected: false, stale: e.stale });
        else console.log(`tp: ${why}`);
        throw new ExitWith(ExitCode.notConnected);
      }
    });
}
