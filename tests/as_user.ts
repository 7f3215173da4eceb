/**
 * Runs tp as the unprivileged user `nobody`, the way a user without root meets it: the same Deno and source, with
 * Deno's cache reachable through a bind mount in a private mount namespace (root's cache is usually under /root,
 * which other users cannot enter). Nothing is mocked: the user, the permissions and sudo are the machine's own.
 * With `sudo`, nobody may run anything as root through sudo without a password: a sudoers file of the test's own is
 * bind-mounted over /etc/sudoers in that mount namespace only, so the machine's sudo configuration never changes.
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
  /** Let nobody use sudo without a password (nobody only: sudo wants an account). */
  sudo?: boolean;
  /** Run in this network namespace (a lab namespace's name). */
  netns?: string;
  /** More environment variables. */
  env?: Record<string, string>;
}

/** The sudoers file of `sudo: true`: root's rule, and nobody's without a password (SETENV for --preserve-env). */
const SUDOERS = `Defaults env_reset
Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
root ALL=(ALL:ALL) ALL
nobody ALL=(root) NOPASSWD:SETENV: ALL
`;

/** How tp runs as another user: this Deno, this source, only from the cache. */
export function tpArgv(args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", "--quiet", "--cached-only", `${ROOT}/cli/main.ts`, ...args];
}

/** `tp ARGS` as user nobody (or `opts.uid`), stdin not a terminal; bounded to 60 s. */
export function tpAsNobody(args: string[], opts: AsUserOptions): Promise<ExecResult> {
  return asNobody(tpArgv(args), opts);
}

/** Runs `argv` as user nobody (or `opts.uid`) with tp's environment, stdin not a terminal; bounded to 60 s. */
export async function asNobody(argv: string[], opts: AsUserOptions): Promise<ExecResult> {
  requireRoot();
  requireTools("unshare", "setpriv", "mount", ...(opts.sudo ? ["sudo"] : []));
  const mnt = `${opts.scratch}/deno-cache`;
  await Deno.mkdir(mnt, { recursive: true });
  const binds = [await denoDir(), mnt];
  if (opts.sudo) {
    const file = `${opts.scratch}/sudoers`;
    await Deno.writeTextFile(file, SUDOERS, { mode: 0o440 });
    await Deno.chmod(file, 0o440);
    binds.push(file, "/etc/sudoers");
  }
  const env = [
    `DENO_DIR=${mnt}`,
    `TP_STATE_DIR=${opts.stateDir}`,
    `PATH=${opts.path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}`,
    "NO_COLOR=1",
    "DENO_NO_UPDATE_CHECK=1",
    ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
  ];
  return await exec([
    ...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []),
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; shift 2; done; shift; exec "$@"',
    "sh",
    ...binds,
    "--",
    "setpriv",
    `--reuid=${opts.uid ?? NOBODY}`,
    `--regid=${opts.gid ?? opts.uid ?? NOBODY}`,
    ...(opts.sudo ? ["--init-groups"] : ["--clear-groups"]),
    "--reset-env",
    "/usr/bin/env",
    ...env,
    ...argv,
  ], { timeoutMs: 60_000 });
}
