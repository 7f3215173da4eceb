/**
 * What mounting the pod's volumes needs on the workstation, each checked before anything starts so that a missing
 * piece is one line naming the fix: root (tp's daemon), FUSE, sshfs, and util-linux's mount, umount and setpriv.
 */
import { MountError } from "./errors.ts";

/** Where programs are looked up: PATH, then the system directories a root daemon's PATH may lack. */
export const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export function findProgram(name: string, path = `${Deno.env.get("PATH") ?? ""}:${SYSTEM_PATH}`): string | undefined {
  for (const d of path.split(":")) {
    if (!d) continue;
    try {
      const st = Deno.statSync(`${d}/${name}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return `${d}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}

export interface MountPrograms {
  sshfs: string;
  mount: string;
  umount: string;
  /** Only when the mount's user is not root. */
  setpriv?: string;
}

export interface RequirementOptions {
  /** Where to look for programs (default: PATH, then SYSTEM_PATH). */
  path?: string;
  /** Default /dev/fuse. */
  fuseDevice?: string;
}

/** Checks everything a mount for `uid` needs; throws a MountError naming the first thing missing. */
export function checkMountRequirements(uid: number, opts: RequirementOptions = {}): MountPrograms {
  const fuseDevice = opts.fuseDevice ?? "/dev/fuse";
  const find = (name: string) => opts.path === undefined ? findProgram(name) : findProgram(name, opts.path);
  if (Deno.uid() !== 0) {
    throw new MountError(
      "not-root",
      "Mounting the pod's volumes needs root (tp's daemon runs as root): run it through tp connect",
    );
  }
  try {
    Deno.statSync(fuseDevice);
  } catch {
    throw new MountError(
      "no-fuse",
      `FUSE is not available (no ${fuseDevice}): load it with "modprobe fuse" (in a container, pass --device ` +
        `/dev/fuse), or pass --mount=false`,
    );
  }
  const sshfs = find("sshfs");
  if (!sshfs) {
    throw new MountError(
      "no-sshfs",
      "sshfs is not installed: install it to mount the pod's volumes (Debian/Ubuntu: apt-get install sshfs; " +
        "Fedora: dnf install fuse-sshfs), or pass --mount=false",
    );
  }
  const util = (name: string) => {
    const p = find(name);
    if (!p) {
      throw new MountError(
        "no-tool",
        `${name} is not installed: install util-linux (Debian: apt-get install ${
          name === "setpriv" ? "util-linux" : "mount"
        })`,
      );
    }
    return p;
  };
  const programs: MountPrograms = { sshfs, mount: util("mount"), umount: util("umount") };
  if (uid !== 0) programs.setpriv = util("setpriv");
  return programs;
}
