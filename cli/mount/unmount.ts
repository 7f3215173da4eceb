/** Unmounting one of tp's mounts: umount(8), and a lazy unmount (`umount -l`) when something still uses it. */
import { MountError } from "./errors.ts";
import { mountAt, type MountEntry } from "./mountinfo.ts";
import { findProgram } from "./requirements.ts";

export type UnmountResult = "unmounted" | "lazily" | "not-mounted";

/** The source tp gives a mount named `name`, as findmnt shows it. */
export function mountSource(name: string): string {
  return `tp.${name}:`;
}

/** Whether `entry` is tp's sshfs mount named `name` (so that nothing mounted there since is ever unmounted). */
export function isTpMount(entry: MountEntry | undefined, name: string): entry is MountEntry {
  return entry !== undefined && entry.fstype === "fuse.sshfs" && entry.source === mountSource(name);
}

async function umount(args: string[]): Promise<{ ok: boolean; error: string }> {
  const program = findProgram("umount");
  if (!program) {
    throw new MountError("no-tool", "umount is not installed: install util-linux (Debian: apt-get install mount)");
  }
  const out = await new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "piped" }).output();
  return { ok: out.success, error: new TextDecoder().decode(out.stderr).trim().split("\n")[0] ?? "" };
}

/**
 * Unmounts tp's mount `name` at `dir` if it is there. A mount in use (a shell inside it, an open file) is detached
 * lazily: it disappears from the namespace now and the kernel lets go of it when its last user does.
 */
export async function unmountTpMount(dir: string, name: string): Promise<UnmountResult> {
  if (!isTpMount(mountAt(dir), name)) return "not-mounted";
  const first = await umount([dir]);
  if (first.ok) return "unmounted";
  if (!isTpMount(mountAt(dir), name)) return "not-mounted"; // went away meanwhile
  const lazy = await umount(["-l", dir]);
  if (lazy.ok) return "lazily";
  throw new MountError("mount-failed", `Cannot unmount "${dir}": ${lazy.error || first.error}`);
}
