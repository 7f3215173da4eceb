/**
 * Root acts only in a state directory that only root controls. TP_STATE_DIR passes through sudo, and the daemon,
 * as root, appends to its log there, writes its state there and, after a crash, writes back what its state files
 * name (the resolv.conf backup): in a directory another user can write, they could plant a symlink and have root
 * write through it. So root refuses a state directory that it does not own, that others may write, or that lies
 * under a directory another user controls (a sticky directory such as /tmp is fine as a parent: others cannot
 * rename or remove root's entries in it). In a directory that passes, only root can plant a symlink; writes still
 * never follow one (`noSymlinkAt`), in case an earlier run left one.
 */

/** Root was pointed at a state directory another user controls. */
export class UnsafeStateDirError extends Error {
  override name = "UnsafeStateDirError";
}

const STICKY = 0o1000;

/** Why root must not use `dir` as its state directory, or null when it may (missing parts root will create). */
export function stateDirProblem(dir: string): string | null {
  if (!dir.startsWith("/")) return `it is not an absolute path`;
  const parts = dir.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return `it has a ".." in it`;
  let at = "/";
  for (let i = 0; i <= parts.length; i++) {
    const last = i === parts.length;
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(at);
      if (info.isSymlink) {
        if (info.uid !== 0) return `${at} is a symlink that belongs to ${who(info.uid)}`;
        at = Deno.realPathSync(at);
        info = Deno.statSync(at);
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null; // root creates the rest, in a directory checked above
      if (e instanceof Deno.errors.PermissionDenied) return null; // not root: the root daemon checks it again
      throw e;
    }
    const what = last ? "it" : `its parent ${at}`;
    if (!info.isDirectory) return `${what} is not a directory`;
    if (info.uid !== 0) return `${what} belongs to ${who(info.uid)}`;
    const mode = info.mode!;
    if ((mode & 0o022) !== 0 && (last || (mode & STICKY) === 0)) {
      return `${what} may be written by other users (mode 0${(mode & 0o7777).toString(8)})`;
    }
    if (!last) at = at === "/" ? `/${parts[i]}` : `${at}/${parts[i]}`;
  }
  return null;
}

/**
 * Throws UnsafeStateDirError naming the problem and the fix. Called where root will act in `dir`: by root, and by a
 * user's `tp connect` before it starts the root daemon there (which checks again).
 */
export function checkStateDir(dir: string): void {
  const problem = stateDirProblem(dir);
  if (!problem) return;
  throw new UnsafeStateDirError(
    `refusing the state directory ${dir} (TP_STATE_DIR): ${problem}, and tp writes there as root; leave ` +
      `TP_STATE_DIR unset (/run/tp), or name a directory that only root may write`,
  );
}

/**
 * Makes sure a write to `path` creates or writes a regular file and follows no symlink: a symlink (or anything but a
 * regular file) found there is removed first. Deno cannot open with O_NOFOLLOW; in a state directory only root may
 * write (checkStateDir), nobody else can put one back between this and the write.
 */
export function noSymlinkAt(path: string): void {
  try {
    const info = Deno.lstatSync(path);
    if (!info.isFile) Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

const who = (uid: number | null) => (uid === 0 ? "root" : `uid ${uid}`);
