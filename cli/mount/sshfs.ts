/**
 * The workstation's half of a volume mount: sshfs in slave mode (`-o slave`: SFTP on its stdin/stdout, no ssh),
 * bridged to a ByteStream whose other end is the agent's sftp-server (agent/sftp.ts). The pod's volumes appear under
 * DIR at their container paths, because the agent serves the directory they are mounted under.
 *
 * Whose mount: the user's who ran tp. Root (tp's daemon) makes the mount itself, on a /dev/fuse descriptor, with the
 * kernel options fusermount3 gives a user's mount (`user_id=`, `group_id=`, nosuid, nodev), and then sshfs runs as
 * that user on the descriptor (libfuse's `/dev/fd/N` mount point). So:
 * - only that user can use the mount (the kernel refuses everyone else, root included), and they can unmount it with
 *   `fusermount3 -u`, as with any mount of their own; `-o uid=,gid=` shows them as the owner of every file (the pod's
 *   uids mean nothing here; permissions are checked by the agent's sftp-server, as the agent's user);
 * - sshfs, which parses what the pod sends, runs without root;
 * - it does not depend on /dev/fuse being usable by users (Debian makes it 0666, containers and some VMs 0600), nor on
 *   fusermount3's setuid bit.
 * Telepresence runs sshfs from its user daemon with `-F none -C -o slave -o follow_symlinks -o allow_root`. The ssh
 * options do nothing in slave mode (no ssh runs; the stream is already encrypted by the connection it rides).
 * follow_symlinks is left out: with it a symlink made through the mount fails with EIO once made (the kernel expects
 * a link and sshfs reports its target), and `ls -l` hides links. Without it links are links, as in the pod; the ones
 * Kubernetes makes in secret and configMap volumes are relative, so they resolve inside the mount. allow_root would
 * need user_allow_other in /etc/fuse.conf, and is left out.
 *
 * The mount is recorded (records.ts) before sshfs starts. `mountSshfs` resolves once the mount answers (a stat of DIR
 * as the user comes back with the user as owner). Nothing is unmounted behind the caller's back: when sshfs exits (the
 * stream ended or was reset) `ended` resolves and the mount is dead ("Transport endpoint is not connected") until
 * `unmount()`, or until `repairMounts` at the next start if this process died.
 *
 * The mount lives in this process's mount namespace (`ip netns exec` gives each command its own: look at it through
 * /proc/PID/root/DIR, or `nsenter -t PID -m`).
 */
import type { ByteStream } from "../../proto/byte_stream.ts";
import { bridgeProcess, type ProcessBridgeEnd } from "../../proto/byte_stream_process.ts";
import { MountError } from "./errors.ts";
import { mountAt } from "./mountinfo.ts";
import { type MountRecord, processStartTime, removeRecord, writeRecord } from "./records.ts";
import { checkMountRequirements, SYSTEM_PATH } from "./requirements.ts";
import { mountSource, type UnmountResult, unmountTpMount } from "./unmount.ts";

export interface MountUser {
  uid: number;
  gid: number;
}

export interface SshfsOptions {
  /** Unique among the mounts of this state dir ([A-Za-z0-9._-], 1-64): names the record and the source `tp.NAME:`. */
  name: string;
  /** The daemon's state directory; the mount's record goes to `<stateDir>/mounts/NAME.json`. */
  stateDir: string;
  /** The user the mount belongs to: who ran tp (SUDO_UID/SUDO_GID under sudo). Default: this process's user. */
  user?: MountUser;
  /** Seconds sshfs keeps attributes and directory listings (its -o dcache_timeout; sshfs's default is 20). */
  cacheTimeout?: number;
  /** sshfs's stderr, one line at a time (bounded). */
  log?: (line: string) => void;
  /** How long to wait for the mount to answer its first stat. Default 30 s. */
  readyTimeoutMs?: number;
}

/** sshfs's stderr lines kept for an error message. */
const KEPT_STDERR_LINES = 4;
/** Printed by the mount script between mount(8) and sshfs: the mount exists from here on. */
const MOUNTED_MARKER = "tp-mount: mounted";
/** How long sshfs gets to exit after SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 5000;

/**
 * Runs as root: opens /dev/fuse as fd 3, mounts it at DIR for the user (fusermount3's options for a user's mount),
 * says so, then becomes sshfs (through setpriv when the user is not root), which serves fd 3. $1 = mount options,
 * $2 = source, $3 = DIR, the rest = the command.
 */
const MOUNT_SCRIPT = `set -e
exec 3<>/dev/fuse
mount -i -t fuse.sshfs -o "$1" "$2" "$3"
echo "${MOUNTED_MARKER}" >&2
shift 3
exec "$@"`;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class SshfsMount {
  /** Resolves when sshfs has exited and the stream has ended on this side. */
  readonly ended: Promise<ProcessBridgeEnd>;
  #exited = false;
  #unmounting: Promise<UnmountResult> | undefined;

  constructor(
    readonly dir: string,
    readonly name: string,
    readonly user: MountUser,
    readonly pid: number,
    readonly stateDir: string,
    ended: Promise<ProcessBridgeEnd>,
    readonly child: Deno.ChildProcess,
  ) {
    this.ended = ended.finally(() => (this.#exited = true));
  }

  /** Whether sshfs has exited (the mount is dead if it is still mounted). */
  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Unmounts (lazily when busy), ends sshfs (SIGTERM, then SIGKILL after a grace period), waits for it, and drops
   * the record. Safe to call more than once and after sshfs exited.
   */
  unmount(): Promise<UnmountResult> {
    this.#unmounting ??= this.#unmount();
    return this.#unmounting;
  }

  async #unmount(): Promise<UnmountResult> {
    const result = await unmountTpMount(this.dir, this.name);
    if (!this.#exited) {
      this.#kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((r) => (timer = setTimeout(r, KILL_GRACE_MS)));
      await Promise.race([this.ended, grace]);
      clearTimeout(timer);
      if (!this.#exited) this.#kill("SIGKILL");
    }
    await this.ended;
    await removeRecord(this.stateDir, this.name);
    return result;
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch { /* exited meanwhile */ }
  }
}

/**
 * Mounts the far end of `stream` (an sftp-server) at `dir` for `opts.user`. `dir` is created when missing (the
 * directories made are given to the user); an existing one must be an empty directory that is not a mount point.
 * Throws a MountError naming the fix; on any failure nothing is left mounted, running or recorded, and the stream is
 * reset.
 */
export async function mountSshfs(stream: ByteStream, dir: string, opts: SshfsOptions): Promise<SshfsMount> {
  if (!NAME.test(opts.name)) throw new TypeError(`Mount name "${opts.name}" is not 1-64 of [A-Za-z0-9._-]`);
  const user = opts.user ?? { uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 };
  let programs;
  try {
    programs = checkMountRequirements(user.uid);
    dir = await prepareMountPoint(dir, user);
  } catch (e) {
    stream.reset((e as Error).message);
    throw e;
  }
  const source = mountSource(opts.name);
  const record: MountRecord = {
    name: opts.name,
    dir,
    uid: user.uid,
    gid: user.gid,
    createdAt: new Date().toISOString(),
  };
  await writeRecord(opts.stateDir, record);

  const kernelOptions = `nosuid,nodev,fd=3,rootmode=40000,user_id=${user.uid},group_id=${user.gid}`;
  const sshfsArgs = ["-f", "-o", "slave", "-o", `uid=${user.uid},gid=${user.gid}`];
  if (opts.cacheTimeout !== undefined) sshfsArgs.push("-o", `dcache_timeout=${opts.cacheTimeout}`);
  sshfsArgs.push(source, "/dev/fd/3");
  const asUser = programs.setpriv
    ? [programs.setpriv, `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--no-new-privs", "--"]
    : [];
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", MOUNT_SCRIPT, "tp-mount", kernelOptions, source, dir, ...asUser, programs.sshfs, ...sshfsArgs],
    clearEnv: true,
    env: { PATH: SYSTEM_PATH },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  record.pid = child.pid;
  const start = processStartTime(child.pid);
  if (start !== undefined) record.pidStart = start;
  await writeRecord(opts.stateDir, record);

  const lastLines: string[] = [];
  let markMounted!: () => void;
  const mounted = new Promise<void>((r) => (markMounted = r));
  const ended = bridgeProcess(child, stream, {
    name: "sshfs",
    // A reset ends sshfs's input, as the daemon's death would: it exits, and the mount is dead until unmounted.
    onReset: "close-stdin",
    log: (line) => {
      if (line === MOUNTED_MARKER) return markMounted();
      lastLines.push(line);
      if (lastLines.length > KEPT_STDERR_LINES) lastLines.shift();
      opts.log?.(line);
    },
  });
  const mount = new SshfsMount(dir, opts.name, user, child.pid, opts.stateDir, ended, child);

  const failure = await waitReady(mount, mounted, opts.readyTimeoutMs ?? 30_000);
  if (failure === undefined) return mount;
  stream.reset(failure);
  await mount.unmount().catch(() => {});
  const end = await ended;
  const agentReason = /^stream reset: (.*)$/.exec(end.reason)?.[1];
  if (agentReason && agentReason !== failure) {
    throw new MountError("agent", `The agent could not serve the volumes: ${agentReason}`);
  }
  const detail = lastLines.filter((l) => l.trim()).at(-1) ?? end.reason;
  throw new MountError("mount-failed", `Cannot mount the pod's volumes at "${dir}": ${failure}: ${detail}`);
}

/** Undefined once the mount answers as the user's; else why not. */
async function waitReady(mount: SshfsMount, mounted: Promise<void>, timeoutMs: number): Promise<string | undefined> {
  const exited = mount.ended.then(() => "exited" as const);
  if (await Promise.race([mounted.then(() => "mounted" as const), exited]) === "exited") return "mount(8) failed";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const probe = new Deno.Command("stat", {
    args: ["-c", "%u", mount.dir],
    uid: mount.user.uid,
    gid: mount.user.gid,
    clearEnv: true,
    env: { PATH: SYSTEM_PATH },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: abort.signal,
  }).output();
  const out = await probe.finally(() => clearTimeout(timer));
  if (abort.signal.aborted) return `the mount did not answer within ${timeoutMs} ms`;
  const owner = new TextDecoder().decode(out.stdout).trim();
  if (out.success && owner === String(mount.user.uid)) return undefined;
  if (mount.exited) return "sshfs exited before the mount answered";
  return `the mount does not answer (${new TextDecoder().decode(out.stderr).trim() || `owner ${owner}`})`;
}

/** Creates `dir` when missing (giving what it makes to the user) and checks it: an empty directory, not a mount. */
async function prepareMountPoint(dir: string, user: MountUser): Promise<string> {
  if (!dir.startsWith("/")) throw new TypeError(`Mount point "${dir}" is not an absolute path`);
  const made: string[] = [];
  for (let d = dir; d !== "/" && d !== ""; d = d.slice(0, d.lastIndexOf("/")) || "/") {
    try {
      await Deno.lstat(d);
      break;
    } catch {
      made.unshift(d);
    }
  }
  for (const d of made) {
    await Deno.mkdir(d, { mode: 0o700 });
    await Deno.chown(d, user.uid, user.gid);
  }
  const real = await Deno.realPath(dir);
  const fix = "choose an empty directory or a new path (--mount DIR)";
  const st = await Deno.stat(real);
  if (!st.isDirectory) {
    throw new MountError("mount-point", `Cannot mount the pod's volumes at "${dir}": not a directory; ${fix}`);
  }
  if (mountAt(real)) {
    throw new MountError(
      "mount-point",
      `Cannot mount the pod's volumes at "${dir}": something is mounted there already; ${fix}`,
    );
  }
  for await (const _ of Deno.readDir(real)) {
    throw new MountError(
      "mount-point",
      `Cannot mount the pod's volumes at "${dir}": the directory is not empty; ${fix}`,
    );
  }
  return real;
}
