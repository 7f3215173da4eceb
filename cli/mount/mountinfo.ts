/**
 * The kernel's mount table for this process's mount namespace, `/proc/self/mountinfo` (proc(5)): one line per mount,
 * `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`, where spaces, tabs,
 * newlines and backslashes in paths are written as octal escapes (`\040`).
 */

export interface MountEntry {
  id: number;
  parentId: number;
  /** "0:40": the device; for FUSE the minor is the connection's number under /sys/fs/fuse/connections. */
  device: string;
  mountPoint: string;
  /** Per-mount options ("rw,nosuid,nodev,relatime"). */
  options: string;
  fstype: string;
  source: string;
  /** Superblock options; FUSE puts `user_id=` and `group_id=` (the mount's owner) here. */
  superOptions: string;
}

/** Undoes the kernel's octal escapes (fs/proc_namespace.c mangle(): space, tab, newline, backslash). */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses mountinfo text; a line that does not have the fields is skipped and counted in `malformed`. */
export function parseMountinfo(text: string): { entries: MountEntry[]; malformed: number } {
  const entries: MountEntry[] = [];
  let malformed = 0;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    if (f.length < 10 || sep < 0 || f.length < sep + 4) {
      malformed++;
      continue;
    }
    entries.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      device: f[2]!,
      mountPoint: unescapeMountField(f[4]!),
      options: f[5]!,
      fstype: f[sep + 1]!,
      source: unescapeMountField(f[sep + 2]!),
      superOptions: f[sep + 3]!,
    });
  }
  return { entries, malformed };
}

/** This process's mount table. */
export function readMountTable(path = "/proc/self/mountinfo"): MountEntry[] {
  return parseMountinfo(Deno.readTextFileSync(path)).entries;
}

/** The mount at exactly `dir` (the last one, when several are stacked there), or undefined. */
export function mountAt(dir: string, table: MountEntry[] = readMountTable()): MountEntry | undefined {
  return table.findLast((e) => e.mountPoint === dir);
}

/** One option's value from an option list ("user_id" in "rw,user_id=1000,group_id=1000" is "1000"). */
export function mountOption(options: string, name: string): string | undefined {
  for (const o of options.split(",")) if (o.startsWith(`${name}=`)) return o.slice(name.length + 1);
  return undefined;
}
