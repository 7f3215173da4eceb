/**
 * The resolv.conf guard: puts the original resolv.conf back the moment the daemon dies, however it dies (kill -9, the
 * OOM killer, a panic), with no tp command run.
 *
 * The daemon starts a small `/bin/sh` (about a megabyte, no CPU) whose stdin is a pipe the daemon holds the other end
 * of. The shell blocks in `read`. The kernel closes the daemon's end when the daemon's process ends, for any reason:
 * `read` sees end-of-file and the shell execs `tp _restore-dns STATE_DIR PID` (restoreAfterDaemon() below), which
 * restores the file if that daemon made the change and the file still holds what tp wrote (the check the repair at
 * the next start makes: a file another program rewrote since is left as it is), logs what it did in the daemon's log,
 * and exits. On `tp quit` the daemon restores the file itself and writes `disarm`: the shell exits doing nothing.
 *
 * The guard is in the daemon's process group and ignores SIGHUP, SIGINT and SIGTERM: a signal to the group ends the
 * daemon (which restores on SIGINT and SIGTERM itself) and leaves the guard to do its job if needed. Killing the whole
 * group with SIGKILL ends both: then the next `tp connect` or `tp quit` repairs, as before.
 *
 * Only resolv.conf mode needs it: systemd-resolved's per-link settings go away with tp's device.
 */
import { pidAlive } from "../process.ts";
import { restoreResolvConf, type RestoreResult } from "./resolv_conf.ts";

/** The name of the internal command the guard runs (cli/main.ts): never typed by a person, never listed. */
export const RESTORE_DNS_COMMAND = "_restore-dns";

/**
 * The guard's shell: ignore the signals a process group gets, wait for a line or end-of-file, and on end-of-file
 * (the daemon is gone) run the restore command given as its arguments.
 */
export const GUARD_SCRIPT = `trap '' HUP INT TERM; read -r line; [ "$line" = disarm ] && exit 0; exec "$@"`;

/** The environment the guard keeps: where to find programs, and Deno's cache when tp runs from source. */
const GUARD_ENV = ["PATH", "HOME", "XDG_CACHE_HOME", "DENO_DIR", "DENO_NO_UPDATE_CHECK", "NO_COLOR"] as const;

export interface ResolvConfGuard {
  /** The guard's pid, for `tp status` and tests. */
  readonly pid: number;
  /** Ends the guard without it touching anything (the daemon has restored resolv.conf itself), and waits for it. */
  disarm(): Promise<void>;
}

/**
 * Starts the guard. `restoreArgv` is the command it runs when the daemon is gone: tp itself with
 * `_restore-dns STATE_DIR PID` (restoreCommand()).
 */
export function startResolvConfGuard(
  restoreArgv: readonly string[],
  options: { shell?: string } = {},
): ResolvConfGuard {
  // Only what running tp needs: the daemon's other variables (TP_TOKEN among them) stay with the daemon.
  const env: Record<string, string> = {};
  for (const k of GUARD_ENV) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  const child = new Deno.Command(options.shell ?? "/bin/sh", {
    args: ["-c", GUARD_SCRIPT, "tp-dns-guard", ...restoreArgv],
    cwd: "/",
    clearEnv: true,
    env,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  let disarmed: Promise<void> | null = null;
  return {
    pid: child.pid,
    disarm() {
      disarmed ??= (async () => {
        await writer.write(new TextEncoder().encode("disarm\n")).catch(() => {});
        await writer.close().catch(() => {});
        // The shell exits at once; a guard that does not (stopped, traced) must not hold the daemon up.
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, 2_000);
        await child.status;
        clearTimeout(timer);
      })();
      return disarmed;
    },
  };
}

/** The command line the guard runs: `tp _restore-dns STATE_DIR PID`, with `self` the argv that runs tp. */
export function restoreCommand(self: readonly string[], stateDir: string, daemonPid: number): string[] {
  return [...self, RESTORE_DNS_COMMAND, stateDir, String(daemonPid)];
}

export interface RestoreAfterDaemonOptions {
  /** Whether a pid still runs. Default pidAlive (a zombie counts as ended). */
  alive?: (pid: number) => boolean;
  /** How long to wait for the daemon's process to be gone after its end of the pipe closed. Default 2000 ms. */
  waitMs?: number;
}

/**
 * What the guard does once the daemon's end of the pipe has closed: waits (bounded) until the daemon's process is
 * gone (the kernel closes a dying process's files just before it ends), then restores resolv.conf, but only if this
 * daemon made the change recorded in the state directory: a change recorded by another pid (a later tp) is left
 * alone, and so is a file another program rewrote (restoreResolvConf()'s check).
 */
export async function restoreAfterDaemon(
  stateDir: string,
  daemonPid: number,
  options: RestoreAfterDaemonOptions = {},
): Promise<RestoreResult> {
  const alive = options.alive ?? pidAlive;
  const deadline = performance.now() + (options.waitMs ?? 2_000);
  while (alive(daemonPid)) {
    if (performance.now() >= deadline) {
      return {
        action: "daemon-running",
        message: `the daemon (pid ${daemonPid}) closed its DNS guard but still runs; left resolv.conf alone`,
      };
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return await restoreResolvConf({ stateDir }, { isRunning: (pid) => pid !== daemonPid });
}
