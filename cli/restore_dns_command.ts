/**
 * `tp _restore-dns STATE_DIR PID`: what the resolv.conf guard (cli/dns/resolv_guard.ts) runs when the daemon PID has
 * died without restoring DNS. Internal: never listed, never typed by a person. It writes what it did to the daemon's
 * log (the daemon cannot any more) and exits 0 unless its arguments are wrong.
 */
import { LogFile } from "./daemon/log_file.ts";
import { statePaths } from "./daemon/state.ts";
import { restoreAfterDaemon } from "./dns/resolv_guard.ts";

export async function restoreDnsMain(args: readonly string[]): Promise<number> {
  const [stateDir, pidText] = args;
  const pid = Number(pidText);
  if (!stateDir || !Number.isInteger(pid) || pid <= 0 || args.length !== 2) {
    console.error(`tp: _restore-dns takes STATE_DIR PID, not "${args.join(" ")}"`);
    return 2;
  }
  const log = new LogFile(statePaths(stateDir).log);
  try {
    const r = await restoreAfterDaemon(stateDir, pid);
    if (r.action !== "nothing-to-restore") {
      log.write(`dns guard: the daemon (pid ${pid}) ended without restoring DNS: ${r.message}`, "warn");
    }
  } catch (e) {
    log.write(`dns guard: cannot restore DNS after the daemon (pid ${pid}): ${(e as Error).message}`, "error");
  }
  return 0;
}
