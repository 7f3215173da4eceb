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
 *   fusermount3's setuid bit;
 * - root mounts only where the user could have mounted themselves (fusermount3's rules: an empty directory they can
 *   write to, and own if it is sticky), so whoever may ask the daemon for a mount cannot use it to cover a directory of
 *   root's (/etc/cron.d, say) with files from a pod.
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
import { errorMessage } from "../../base/error_message.ts";

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
/** The mount script's own lines on stderr: "tp-mount: mounted: /real/path", "tp-mount: refused: why". */
const SCRIPT_LINE = /^tp-mount: (mounted|refused): (.*)$/;
/** How long sshfs gets to exit after SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 5000;
/** How long sshfs may take to exit by itself once its mount is gone (it notices the FUSE device closing). */
const OWN_EXIT_MS = 2000;

/**
 * Runs as root. $1 = kernel mount options, $2 = source, $3 = DIR, $4/$5 = the user's uid/gid, $6 = setpriv (empty
 * when the user is root), the rest = the command that serves the mount. It enters DIR once and works on that
 * directory from then on, never on its path again (which the user could point elsewhere meanwhile), applying
 * fusermount3's rules for a user's mount point: empty, writable by the user, and theirs if sticky. Then it opens
 * /dev/fuse as fd 3, mounts it on the directory with a user's mount options, says where, and becomes the server
 * (sshfs as the user, through setpriv), which serves fd 3 (libfuse's /dev/fd/N mount point).
 */
const MOUNT_SCRIPT = `set -e
cd -P -- "$3"
refuse() { echo "tp-mount: refused: $1" >&2; exit 3; }
[ -z "$(ls -A .)" ] || refuse "the directory is not empty"
if [ -n "$6" ]; then
  "$6" --reuid="$4" --regid="$5" --clear-groups -- test -w . || refuse "uid $4 cannot write to it (a mount point must be theirs)"
  if [ -k . ] && [ "$(stat -c %u .)" != "$4" ]; then refuse "it is a sticky directory uid $4 does not own"; fi
fi
exec 3<>/dev/fuse
mount -c -i -t fuse.sshfs -o "$1" "$2" .
echo "tp-mount: mounted: $(pwd -P)" >&2
cd /
shift 6
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
    // Unmounted, sshfs exits by itself and half-closes its stream, so sftp-server ends cleanly: give it the moment
    // that takes before a signal would cut the stream with a reset (a lazily detached mount may keep it running).
    if (!this.#exited && result !== "lazily") await this.#exitWithin(OWN_EXIT_MS);
    if (!this.#exited) {
      this.#kill("SIGTERM");
      await this.#exitWithin(KILL_GRACE_MS);
      if (!this.#exited) this.#kill("SIGKILL");
    }
    await this.ended;
    await removeRecord(this.stateDir, this.name);
    return result;
  }

  async #exitWithin(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.ended, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch { /* exited meanwhile */ }
  }
}

/**
 * Mounts the far end of `stream` (an sftp-server) at `dir` for `opts.user`. A missing `dir` is created as the user
 * (`mkdir -p`, mode 0700), so they need the right to create it; an existing one must be an empty directory they can
 * write to (and own, if it is sticky, like /tmp), as fusermount3 asks of a user's mount point.
 * Throws a MountError naming the fix; on any failure nothing is left mounted, running or recorded, and the stream is
 * reset.
 */
export async function mountSshfs(stream: ByteStream, dir: string, opts: SshfsOptions): Promise<SshfsMount> {
  if (!NAME.test(opts.name)) throw new TypeError(`Mount name "${opts.name}" is not 1-64 of [A-Za-z0-9._-]`);
  const user = opts.user ?? { uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 };
  const source = mountSource(opts.name);
  let programs;
  const record: MountRecord = {
    name: opts.name,
    dir,
    uid: user.uid,
    gid: user.gid,
    createdAt: new Date().toISOString(),
  };
  try {
    programs = checkMountRequirements(user.uid);
    record.dir = await prepareMountPoint(dir, user);
    await writeRecord(opts.stateDir, record);
  } catch (e) {
    stream.reset(errorMessage(e));
    throw e;
  }

  const kernelOptions = `nosuid,nodev,fd=3,rootmode=40000,user_id=${user.uid},group_id=${user.gid}`;
  const sshfsArgs = ["-f", "-o", "slave", "-o", `uid=${user.uid},gid=${user.gid}`];
  if (opts.cacheTimeout !== undefined) sshfsArgs.push("-o", `dcache_timeout=${opts.cacheTimeout}`);
  sshfsArgs.push(source, "/dev/fd/3");
  const asUser = programs.setpriv
    ? [programs.setpriv, `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--no-new-privs", "--"]
    : [];
  const scriptArgs = [kernelOptions, source, record.dir, String(user.uid), String(user.gid), programs.setpriv ?? ""];
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", MOUNT_SCRIPT, "tp-mount", ...scriptArgs, ...asUser, programs.sshfs, ...sshfsArgs],
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
  let scriptSaid!: (m: { what: string; text: string }) => void;
  const script = new Promise<{ what: string; text: string }>((r) => (scriptSaid = r));
  const ended = bridgeProcess(child, stream, {
    name: "sshfs",
    // A reset ends sshfs's input, as the daemon's death would: it exits, and the mount is dead until unmounted.
    onReset: "close-stdin",
    log: (line) => {
      const m = SCRIPT_LINE.exec(line);
      if (m) return scriptSaid({ what: m[1]!, text: m[2]! });
      lastLines.push(line);
      if (lastLines.length > KEPT_STDERR_LINES) lastLines.shift();
      opts.log?.(line);
    },
  });
  const fail = async (e: MountError): Promise<never> => {
    stream.reset(e.message);
    await ended;
    await removeRecord(opts.stateDir, opts.name);
    throw e;
  };

  const said = await Promise.race([script, ended.then(() => undefined)]);
  if (said?.what !== "mounted") {
    const fix = "choose an empty directory of your own or a new path (--mount DIR)";
    if (said?.what === "refused") {
      return fail(new MountError("mount-point", `Cannot mount the pod's volumes at "${dir}": ${said.text}; ${fix}`));
    }
    const why = lastLines.filter((l) => l.trim()).at(-1) ?? "the mount script exited";
    return fail(new MountError("mount-failed", `Cannot mount the pod's volumes at "${dir}": ${why}`));
  }
  if (said.text !== record.dir) {
    record.dir = said.text; // where it really is (the path moved between the check and the mount)
    await writeRecord(opts.stateDir, record);
  }
  const mount = new SshfsMount(record.dir, opts.name, user, child.pid, opts.stateDir, ended, child);

  const failure = await waitAnswers(mount, opts.readyTimeoutMs ?? 30_000);
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

/** Undefined once the mount answers a stat by its user, with them as the owner; else why not. */
async function waitAnswers(mount: SshfsMount, timeoutMs: number): Promise<string | undefined> {
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

/**
 * Makes `dir` when missing, as the user, and gives early, clear answers for the common mistakes (not a directory, a
 * mount already there); the rules that guard root's mount are applied by the mount script, on the directory itself.
 * Returns the path with symlinks resolved, as the mount table will show it.
 */
async function prepareMountPoint(dir: string, user: MountUser): Promise<string> {
  const fix = "choose an empty directory of your own or a new path (--mount DIR)";
  if (!dir.startsWith("/")) throw new TypeError(`Mount point "${dir}" is not an absolute path`);
  let st: Deno.FileInfo | undefined;
  try {
    st = await Deno.stat(dir);
  } catch { /* missing: made below */ }
  if (!st) {
    const out = await new Deno.Command("mkdir", {
      args: ["-p", "-m", "0700", "--", dir],
      uid: user.uid,
      gid: user.gid,
      clearEnv: true,
      env: { PATH: SYSTEM_PATH },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).trim().replace(/^mkdir: /, "");
      throw new MountError("mount-point", `Cannot create the mount point as uid ${user.uid}: ${why}; ${fix}`);
    }
    st = await Deno.stat(dir);
  }
  if (!st.isDirectory) {
    throw new MountError("mount-point", `Cannot mount the pod's volumes at "${dir}": not a directory; ${fix}`);
  }
  const real = await Deno.realPath(dir);
  if (mountAt(real)) {
    throw new MountError(
      "mount-point",
      `Cannot mount the pod's volumes at "${dir}": something is mounted there already; ${fix}`,
    );
  }
  return real;
}
