import { printJson } from "./print_json.ts";
import { redactJson } from "./redact.ts";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { statePaths } from "./daemon/state.ts";
import { ExitCode } from "./exit_code.ts";
import { ExitWith } from "./errors.ts";
import { formatStatus } from "./daemon/status_text.ts";
import { versionSkewNote } from "./daemon/version_skew.ts";

/** `tp status`'s work, without the command line (no npm package loads: scripts poll it). Throws ExitWith(3) when not connected. */
export async function showStatus(output: "text" | "json"): Promise<void> {
  const paths = statePaths();
  try {
    const status = await controlRequest(paths.socket, { op: "status" });
    if (output === "json") printJson(redactJson({ connected: true, ...(status as object) }));
    else {
      console.log(formatStatus(status as Record<string, unknown>));
      const skew = versionSkewNote((status as { version?: unknown }).version);
      if (skew) console.log(`  note:        ${skew}`);
    }
  } catch (e) {
    if (!(e instanceof NotRunningError)) throw e;
    const why = e.stale
      ? "not connected (the last daemon ended without tp quit: run tp quit to clean up)"
      : "not connected";
    if (output === "json") printJson({ connected: false, stale: e.stale });
    else console.log(`tp: ${why}`);
    throw new ExitWith(ExitCode.notConnected);
  }
}
