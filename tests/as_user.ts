/**
 * Runs tp as the unprivileged user `nobody`, the way a user without root meets it: the same Deno and source, with
 * Deno's cache reachable through a bind mount in a private mount namespace (root's cache is usually under /root,
 * which other users cannot enter). Nothing is mocked: the user, the permissions and sudo are the machine's own.
 */
import { exec, type ExecResult, requireRoot, requireTools, ROOT } from "./lab.ts";

export const NOBODY = 65534;

let cacheDir: string | undefined;

/** Deno's cache directory, as this Deno sees it (DENO_DIR or its default). */
async function denoDir(): Promise<string> {
  if (cacheDir) return cacheDir;
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped", stderr: "null" })
    .output();
  cacheDir = (JSON.parse(new TextDecoder().decode(out.stdout)) as { denoDir: string }).denoDir;
  return cacheDir;
}

export interface AsUserOptions {
  /** TP_STATE_DIR for tp. */
  stateDir: string;
  /** PATH for tp (default: the system's). */
  path?: string;
  /** A directory that `nobody` can enter, where the cache is mounted. */
  scratch: string;
  /** Run as this uid (and gid) instead of nobody's: another local user, who needs no account. */
  uid?: number;
  /** Its group (default: the uid's number, or nobody's group). */
  gid?: number;
}

/** `tp ARGS` as user nobody (or `opts.uid`), stdin not a terminal; bounded to 60 s. */
export async function tpAsNobody(args: string[], opts: AsUserOptions): Promise<ExecResult> {
  requireRoot();
  requireTools("unshare", "setpriv", "mount");
  const mnt = `${opts.scratch}/deno-cache`;
  await Deno.mkdir(mnt, { recursive: true });
  const env = [
    `DENO_DIR=${mnt}`,
    `TP_STATE_DIR=${opts.stateDir}`,
    `PATH=${opts.path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}`,
    "NO_COLOR=1",
    "DENO_NO_UPDATE_CHECK=1",
  ];
  const tp = [Deno.execPath(), "run", "--allow-all", "--quiet", "--cached-only", `${ROOT}/cli/main.ts`, ...args];
  return await exec([
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind "$1" "$2" && shift 2 && exec "$@"',
    "sh",
    await denoDir(),
    mnt,
    "setpriv",
    `--reuid=${opts.uid ?? NOBODY}`,
    `--regid=${opts.gid ?? opts.uid ?? NOBODY}`,
    "--clear-groups",
    "--reset-env",
    "/usr/bin/env",
    ...env,
    ...tp,
  ], { timeoutMs: 60_000 });
}
