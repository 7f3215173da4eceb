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

export async function writeState(paths: StatePaths, state: DaemonState): Promise<void> {
  await Deno.mkdir(paths.dir, { recursive: true, mode: 0o755 });
  await Deno.writeTextFile(paths.state, JSON.stringify(state, null, 2) + "\n");
}

/** Removes the socket and state file; missing files are fine. */
export async function removeState(paths: StatePaths): Promise<void> {
  for (const p of [paths.socket, paths.state]) await Deno.remove(p).catch(() => {});
}
