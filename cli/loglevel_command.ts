import { Argument, Command } from "@commander-js/extra-typings";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { LOG_LEVELS } from "./daemon/log_file.ts";
import { statePaths } from "./daemon/state.ts";
import { ExitWith } from "./errors.ts";
import { ExitCode } from "./exit_code.ts";

/** `tp loglevel LEVEL`: what the running daemon logs from now on (connect's --log-level, changed at run time). */
export function loglevelCommand() {
  return new Command("loglevel")
    .description(
      "Change what the running daemon logs, from now on: debug (each connection), info, warn or error. tp status " +
        "shows the level and the log file; tp connect --log-level sets it at the start.",
    )
    .addArgument(new Argument("<level>", "debug, info, warn or error").choices(LOG_LEVELS))
    .action(async (level) => {
      try {
        const r = await controlRequest(statePaths().socket, { op: "loglevel", level }) as {
          level: string;
          log: string;
        };
        console.error(`tp: the daemon logs ${r.level} and above to ${r.log} from now on`);
      } catch (e) {
        if (!(e instanceof NotRunningError)) throw e;
        console.error("tp: not connected (tp connect --log-level LEVEL sets the level at the start)");
        throw new ExitWith(ExitCode.notConnected);
      }
    });
}
