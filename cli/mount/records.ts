/**
 * How tp remembers its mounts: one JSON file per mount in `<state dir>/mounts/`, written before sshfs starts and
 * removed once the mount is gone, so that after the daemon is killed (-9) the next start finds every mount it left and
 * the sshfs process that served it. A file per mount, not one list: mounts come and go independently, and no update
 * rewrites another mount's record.
 */

export interface MountRecord {
  /** Unique per state dir; names the record file and the mount's source (`tp.NAME:` in findmnt). */
  name: string;
  /** The mount point. */
  dir: string;
  /** The user the mount belongs to. */
  uid: number;
  gid: number;
  /** sshfs's process id and start time (clock ticks since boot, /proc/PID/stat field 22): together they name it. */
  pid?: number;
  pidStart?: number;
  createdAt: string;
}

export function recordsDir(stateDir: string): string {
  return `${stateDir}/mounts`;
}

function recordPath(stateDir: string, name: string): string {
  return `${recordsDir(stateDir)}/${name}.json`;
}

/** Writes (or replaces) a record atomically: a reader sees the old file or the new one, never half of one. */
export async function writeRecord(stateDir: string, r: MountRecord): Promise<void> {
  await Deno.mkdir(recordsDir(stateDir), { recursive: true, mode: 0o755 });
  const tmp = `${recordPath(stateDir, r.name)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(r, null, 2) + "\n");
  await Deno.rename(tmp, recordPath(stateDir, r.name));
}

export async function removeRecord(stateDir: string, name: string): Promise<void> {
  await Deno.remove(recordPath(stateDir, name)).catch(() => {});
}

/** Every readable record; files that do not parse are skipped and counted. */
export async function readRecords(stateDir: string): Promise<{ records: MountRecord[]; unreadable: number }> {
  const records: MountRecord[] = [];
  let unreadable = 0;
  let entries: Deno.DirEntry[] = [];
  try {
    entries = await Array.fromAsync(Deno.readDir(recordsDir(stateDir)));
  } catch {
    return { records, unreadable };
  }
  for (const e of entries) {
    if (!e.isFile || !e.name.endsWith(".json")) continue;
    try {
      const r = JSON.parse(await Deno.readTextFile(`${recordsDir(stateDir)}/${e.name}`)) as MountRecord;
      if (typeof r.name !== "string" || typeof r.dir !== "string") throw new SyntaxError("not a mount record");
      records.push(r);
    } catch {
      unreadable++;
    }
  }
  records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  return { records, unreadable };
}

/** A process's start time (/proc/PID/stat field 22, clock ticks since boot), or undefined when it is gone. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (f[0] === "Z") return undefined; // exited, not yet reaped
    return Number(f[19]);
  } catch {
    return undefined;
  }
}

/** Whether the record's sshfs still runs: the same pid with the same start time (a reused pid has another). */
export function sshfsRunning(r: MountRecord): boolean {
  return r.pid !== undefined && r.pidStart !== undefined && processStartTime(r.pid) === r.pidStart;
}
