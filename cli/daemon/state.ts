/**
 * The daemon's state directory: its control socket, its state file (what it changed on this machine, so a later
 * tp can undo it after a crash) and its log. Default /run/tp; TP_STATE_DIR overrides it (tests, several labs).
 */

export { pidAlive } from "../process.ts";

export interface StatePaths {
  dir: string;
  socket: string;
  state: string;
  log: string;
}

export function statePaths(dir = Deno.env.get("TP_STATE_DIR") ?? "/run/tp"): StatePaths {
  return { dir, socket: `${dir}/daemon.sock`, state: `${dir}/daemon.json`, log: `${dir}/daemon.log` };
}

/** What a running daemon records about itself; the settings let `tp connect` compare a second request. */
export interface DaemonState {
  pid: number;
  startedAt: string;
  settings: Record<string, unknown>;
  device?: string;
  routes?: string[];
}

export async function readState(paths: StatePaths): Promise<DaemonState | null> {
  try {
    return JSON.parse(await Deno.readTextFile(paths.state)) as DaemonState;
  } catch {
    return null;
  }
}

/** Replaces the state file: a new file (never through a symlink: O_EXCL), then a rename over the old one. */
export async function writeState(paths: StatePaths, state: DaemonState): Promise<void> {
  await Deno.mkdir(paths.dir, { recursive: true, mode: 0o755 });
  const tmp = `${paths.state}.tmp-${Deno.pid}`;
  await Deno.remove(tmp).catch(() => {});
  await Deno.writeTextFile(tmp, JSON.stringify(state, null, 2) + "\n", { createNew: true, mode: 0o644 });
  await Deno.rename(tmp, paths.state);
}

/**
 * This user cannot use the state directory or the control socket in it (EACCES): the message names the path, who
 * owns it with which mode, and the fix. Typically /run/tp made by an earlier tp run as root under umask 077 (0700).
 */
export class StateAccessError extends Error {
  override name = "StateAccessError";
}

/** The StateAccessError for a permission error on `path` (the socket, or a file in the state directory). */
export function stateAccessError(path: string): StateAccessError {
  const dir = path.replace(/\/[^/]*$/, "") || "/";
  const as = `as ${Deno.uid() === 0 ? "root" : `uid ${Deno.uid()}`}`;
  const dirInfo = statOrNull(dir);
  if (dirInfo && !canSearch(dirInfo)) {
    return new StateAccessError(
      `cannot use tp's state directory ${dir} ${as}: it belongs to ${owner(dirInfo)} with mode ${mode(dirInfo)} ` +
        `(an earlier tp run as root made it so); run "sudo tp quit", which repairs it, or "sudo chmod 755 ${dir}"`,
    );
  }
  const info = statOrNull(path);
  const what = info ? ` (it belongs to ${owner(info)}, group ${info.gid}, with mode ${mode(info)})` : "";
  return new StateAccessError(
    `cannot use ${path} ${as}${what}: the daemon was started by root, or by another user through sudo; ` +
      `run this tp command with sudo`,
  );
}

/**
 * Root makes the state directory, or repairs one it finds (mode 0755: the files in it decide who may do what; a
 * directory left 0700 would lock every non-root `tp status` out). Returns what it repaired, for the user, or null.
 */
export async function ensureStateDir(paths: StatePaths): Promise<string | null> {
  await Deno.mkdir(paths.dir, { recursive: true, mode: 0o755 });
  const info = await Deno.stat(paths.dir);
  if ((info.mode! & 0o777) === 0o755 || (Deno.uid() !== 0 && info.uid !== Deno.uid())) return null;
  await Deno.chmod(paths.dir, 0o755);
  return `repaired tp's state directory ${paths.dir}: mode ${mode(info)} -> 0755, so tp status works without sudo`;
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

function canSearch(info: Deno.FileInfo): boolean {
  if (Deno.uid() === 0) return true;
  const m = info.mode! & 0o777;
  if (info.uid === Deno.uid()) return (m & 0o100) !== 0;
  if (info.gid === Deno.gid()) return (m & 0o010) !== 0;
  return (m & 0o001) !== 0;
}

const owner = (info: Deno.FileInfo) => (info.uid === 0 ? "root" : `uid ${info.uid}`);
const mode = (info: Deno.FileInfo) => `0${(info.mode! & 0o777).toString(8).padStart(3, "0")}`;

/** Removes the socket and state file; missing files are fine. */
export async function removeState(paths: StatePaths): Promise<void> {
  for (const p of [paths.socket, paths.state]) await Deno.remove(p).catch(() => {});
}
