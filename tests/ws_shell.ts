/**
 * One mount namespace for a whole test's workstation commands, as a real workstation has.
 *
 * `ip netns exec` gives each command a mount namespace of its own (it unshares one to bind /etc/netns/NS/* and
 * remount /sys), so a FUSE mount made by tp's daemon is invisible to the next `ip netns exec` command, and dies with
 * the daemon's namespace when the daemon and its sshfs end: a kill -9 would leave nothing for `tp quit` to repair.
 * Here one sleeping process, started by `ip netns exec`, holds a namespace open; every command (`tp connect`, whose
 * daemon inherits it, `tp intercept -- CMD`, `tp quit`, cp, findmnt) enters its mount and network namespaces with
 * nsenter, so they all see the same mounts, as processes on a laptop do.
 */
import { exec, type ExecOptions, type ExecResult, LAB } from "./lab.ts";
import { STATE_DIR, TP } from "./connect_fixture.ts";

export interface User {
  uid: number;
  gid: number;
}

export interface WorkstationShell {
  /** The holder's pid: its /proc/PID/ns/mnt is the namespace. */
  pid: number;
  /** Runs a command in the namespace (as root, or as `user` through setpriv). */
  run(cmd: string[], opts?: ExecOptions & { user?: User }): Promise<ExecResult>;
  /** Starts a command in the namespace and returns at once (as `user` when given); ended by the caller by pid. */
  spawn(cmd: string[], opts?: { user?: User }): Deno.ChildProcess;
  /** `tp ARGS` in the namespace with the test's state directory (connect_fixture's STATE_DIR). */
  tp(args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Whether `pid` lives in this mount namespace. */
  holds(pid: number): boolean;
  stop(): Promise<void>;
}

function asUser(cmd: string[], user?: User): string[] {
  if (!user) return cmd;
  return ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--", ...cmd];
}

function mountNs(pid: number): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** Starts the holder in the lab's workstation namespace and waits until it has its own mount namespace. */
export async function startWorkstationShell(): Promise<WorkstationShell> {
  const holder = new Deno.Command("ip", {
    args: ["netns", "exec", LAB.namespaces.workstation, "sleep", "infinity"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const own = mountNs(Deno.pid);
  // ip execs sleep in place (same pid) once it has made the namespace.
  for (let i = 0; i < 200; i++) {
    const ns = mountNs(holder.pid);
    if (ns && ns !== own && Deno.readTextFileSync(`/proc/${holder.pid}/comm`).trim() === "sleep") break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const enter = (cmd: string[]) => ["nsenter", "-t", String(holder.pid), "-m", "-n", "--", ...cmd];
  const ns = mountNs(holder.pid);
  return {
    pid: holder.pid,
    run: (cmd, opts = {}) => exec(enter(asUser(cmd, opts.user)), opts),
    spawn: (cmd, opts = {}) =>
      new Deno.Command("setsid", {
        args: enter(asUser(cmd, opts.user)),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn(),
    tp: (args, opts = {}) =>
      exec(enter([TP, ...args]), {
        timeoutMs: 60_000,
        ...opts,
        env: { ...Deno.env.toObject(), TP_STATE_DIR: STATE_DIR, NO_COLOR: "1", ...(opts.env ?? {}) },
      }),
    holds: (pid) => ns !== undefined && mountNs(pid) === ns,
    async stop() {
      try {
        holder.kill("SIGKILL");
      } catch { /* gone */ }
      await holder.status;
    },
  };
}
