/**
 * A daemon started by another version of tp (tp was upgraded while connected). Its control socket still answers,
 * but it may not do what this version's commands expect (a newer `tp intercept` reads answers an older daemon does
 * not give), so the commands that talk to it say so, with the fix, instead of failing in ways that name neither.
 */
import { VERSION } from "../../base/version.ts";

/** What to tell the user when the daemon's version (from its status) is not this tp's; null when they match. */
export function versionSkewNote(daemonVersion: unknown, mine: string = VERSION): string | null {
  if (typeof daemonVersion !== "string" || daemonVersion === "" || daemonVersion === mine) return null;
  return `the running daemon is tp ${daemonVersion.slice(0, 40)}, this is tp ${mine}: run tp quit, then tp connect, ` +
    `to use this version`;
}
