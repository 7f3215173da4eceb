import { Command } from "@commander-js/extra-typings";
import { controlRequest, NotRunningError } from "./daemon/control.ts";
import { cleanupStale } from "./daemon/stale.ts";
import { checkStateDir } from "./daemon/state_dir.ts";
import { ensureStateDir, pidAlive, readState, type StatePaths, statePaths } from "./daemon/state.ts";

/** `tp quit`: disconnect; the daemon removes its device (and with it the routes) and restores what it changed. */
export function quitCommand() {
  return new Command("quit")
    .description(
      "Disconnect: stop tp's daemon, remove its network interface and routes, and restore this machine's DNS. " +
        "After a crash it cleans up what the daemon left and says so.",
    )
    .action(async () => {
      await quitDaemon(statePaths(), (s) => console.error(`tp: ${s}`));
    });
}

/** Asks the daemon to quit and waits (at most 10 s) until its process has ended. */
export async function quitDaemon(paths: StatePaths, say: (s: string) => void): Promise<void> {
  if (Deno.uid() === 0) checkStateDir(paths.dir); // root repairs and restores from there
  const repaired = Deno.uid() === 0 && await exists(paths.dir) ? await ensureStateDir(paths) : null;
  if (repaired) say(repaired);
  const state = await readState(paths);
  try {
    await controlRequest(paths.socket, { op: "quit" });
  } catch (e) {
    if (!(e instanceof NotRunningError)) throw e;
    const cleaned = await cleanupStale(paths);
    say(cleaned ?? "tp is not connected; nothing to do");
    return;
  }
  const pid = state?.pid;
  for (let i = 0; pid !== undefined && i < 200 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (pid !== undefined && pidAlive(pid)) {
    throw new Error(`the daemon (pid ${pid}) did not exit within 10 s; its log is ${paths.log}`);
  }
  say("disconnected");
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
