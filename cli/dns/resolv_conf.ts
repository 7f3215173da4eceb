/**
 * resolv.conf mode (no systemd-resolved): while connected, /etc/resolv.conf names only tp's DNS address, and the
 * search list starts with `<ns>.svc.<domain> svc.<domain> <domain>`. The original nameservers become tp's upstreams.
 *
 * - The file is rewritten IN PLACE (open, truncate, write), never replaced by a rename: under `ip netns exec`, in
 *   containers and with some network managers /etc/resolv.conf is a bind mount or a symlink that must stay as it is.
 * - Before the first write, the exact original bytes go to `<stateDir>/resolv.conf.orig`, and
 *   `<stateDir>/resolv.conf.json` records the path, the daemon's pid and the SHA-256 of what tp wrote.
 * - `restoreResolvConf()` (on `tp quit`) writes the original back byte for byte, but only if the file still holds
 *   what tp wrote: if something else rewrote it meanwhile (a DHCP client, a VPN), its content wins and the backup is
 *   kept for the user. `repairResolvConf()` does the same after a crash, when the recorded pid is gone.
 *
 * Why only tp's nameserver, and not the original ones after it as a fallback: musl asks every nameserver at once and
 * takes the first answer, and glibc's `options rotate` spreads queries over them, so either would send cluster names
 * to servers that answer NXDOMAIN for them. After a crash the file is repaired by the next `tp connect` or `tp quit`.
 */
import { pidAlive } from "../process.ts";

export interface ResolvConf {
  nameservers: string[];
  /** The effective search list (the last `search` or `domain` line wins, as in resolv.conf(5)). */
  search: string[];
  /** Every option from `options` lines, in order. */
  options: string[];
}

export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], options: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [key, ...args] = line.split(/\s+/);
    if (key === "nameserver" && args[0]) conf.nameservers.push(args[0]);
    else if (key === "search") conf.search = args;
    else if (key === "domain" && args[0]) conf.search = [args[0]];
    else if (key === "options") conf.options.push(...args);
  }
  return conf;
}

/**
 * The resolv.conf tp writes: a header comment, tp's nameserver where the first nameserver was, the search list
 * with tp's domains first (duplicates dropped), every other line (comments, options, sortlist) kept in order.
 */
export function rewriteResolvConf(
  original: string,
  options: { dnsAddress: string; searchDomains: readonly string[]; backupPath: string },
): string {
  const conf = parseResolvConf(original);
  const search = [...new Set([...options.searchDomains, ...conf.search])];
  const out = [
    `# Written by tp while connected; \`tp quit\` restores the original (saved in ${options.backupPath}).`,
  ];
  let placed = false;
  const place = () => {
    if (placed) return;
    placed = true;
    out.push(`nameserver ${options.dnsAddress}`, `search ${search.join(" ")}`);
  };
  for (const line of original.replace(/\n$/, "").split("\n")) {
    const key = line.trim().split(/\s+/)[0];
    if (key === "nameserver") {
      place();
      out.push(`# ${line.trim()}  (tp forwards to it)`);
    } else if (key === "search" || key === "domain") {
      continue;
    } else {
      out.push(line);
    }
  }
  place();
  return out.join("\n") + "\n";
}

export interface ResolvConfPaths {
  /** The resolv.conf to change. Default /etc/resolv.conf. */
  path?: string;
  /** tp's state directory (created if missing). */
  stateDir: string;
}

interface Record {
  path: string;
  pid: number;
  writtenSha256: string;
  at: string;
}

export interface ApplyResult {
  /** The original nameservers: tp's upstreams. */
  upstreams: string[];
  /** The original search list, for reference. */
  originalSearch: string[];
  /** What `repairResolvConf()` said, when a crashed tp's change was undone first. */
  repaired: string | null;
}

export interface RestoreResult {
  action: "restored" | "kept-foreign-change" | "nothing-to-restore" | "daemon-running";
  message: string;
}

function backupFiles(stateDir: string) {
  return { orig: `${stateDir}/resolv.conf.orig`, record: `${stateDir}/resolv.conf.json` };
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Writes `bytes` into the existing file: open, truncate, write. Never a rename. */
async function writeInPlace(path: string, bytes: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { write: true, truncate: true });
  try {
    for (let o = 0; o < bytes.length;) o += await f.write(bytes.subarray(o));
    await f.sync();
  } finally {
    f.close();
  }
}

/** Writes a file of tp's own state atomically (a temporary file and a rename inside the state directory). */
async function writeState(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.remove(tmp).catch(() => {});
  await Deno.writeFile(tmp, bytes, { mode: 0o600, createNew: true }); // O_EXCL: never through a symlink
  await Deno.rename(tmp, path);
}

/** Re-exported for callers of this module. */
export { pidAlive };

async function readRecord(stateDir: string): Promise<Record | null> {
  try {
    return JSON.parse(await Deno.readTextFile(backupFiles(stateDir).record)) as Record;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Points resolv.conf at tp. A change left by a crashed tp is undone first; a change made by a running tp (another
 * pid) is an error. `pid` is the daemon's (default this process).
 */
export async function applyResolvConf(
  paths: ResolvConfPaths,
  options: { dnsAddress: string; searchDomains: readonly string[]; pid?: number },
): Promise<ApplyResult> {
  const path = paths.path ?? "/etc/resolv.conf";
  const files = backupFiles(paths.stateDir);
  const pid = options.pid ?? Deno.pid;
  let repaired: string | null = null;
  const existing = await readRecord(paths.stateDir);
  if (existing) {
    if (existing.pid !== pid && pidAlive(existing.pid)) {
      throw new Error(`${existing.path} is already managed by tp (pid ${existing.pid}): run \`tp quit\` first`);
    }
    repaired = (await restoreResolvConf(paths, { isRunning: () => false })).message;
  }
  await Deno.mkdir(paths.stateDir, { recursive: true, mode: 0o700 });
  const original = await Deno.readFile(path);
  const text = new TextDecoder().decode(original);
  const conf = parseResolvConf(text);
  const written = new TextEncoder().encode(
    rewriteResolvConf(text, { ...options, backupPath: files.orig }),
  );
  await writeState(files.orig, original);
  const record: Record = { path, pid, writtenSha256: await sha256(written), at: new Date().toISOString() };
  await writeState(files.record, new TextEncoder().encode(JSON.stringify(record, null, 2) + "\n"));
  await writeInPlace(path, written);
  return { upstreams: conf.nameservers, originalSearch: conf.search, repaired };
}

/**
 * Puts the original resolv.conf back, byte for byte, if the file still holds what tp wrote. `isRunning` says whether
 * the recorded daemon still runs (default: its pid is alive and is not this process); if it does, nothing changes.
 */
export async function restoreResolvConf(
  paths: ResolvConfPaths,
  options: { isRunning?: (pid: number) => boolean } = {},
): Promise<RestoreResult> {
  const files = backupFiles(paths.stateDir);
  const record = await readRecord(paths.stateDir);
  if (!record) return { action: "nothing-to-restore", message: "tp has no resolv.conf change to undo" };
  const isRunning = options.isRunning ?? ((pid: number) => pid !== Deno.pid && pidAlive(pid));
  if (isRunning(record.pid)) {
    return {
      action: "daemon-running",
      message: `tp (pid ${record.pid}) is running and manages ${record.path}; left it alone`,
    };
  }
  const path = paths.path ?? record.path;
  const current = await Deno.readFile(path);
  if (await sha256(current) !== record.writtenSha256) {
    await Deno.remove(files.record);
    return {
      action: "kept-foreign-change",
      message: `${path} was changed by something else after tp wrote it; kept that change (tp's backup of the ` +
        `original stays in ${files.orig})`,
    };
  }
  await writeInPlace(path, await Deno.readFile(files.orig));
  await Deno.remove(files.record);
  await Deno.remove(files.orig);
  return { action: "restored", message: `restored the original ${path} (saved by tp pid ${record.pid})` };
}

/**
 * After a crash: if tp's state directory holds a resolv.conf backup and its daemon no longer runs, restores the
 * original and says what it did; null when there was nothing to repair (or the daemon runs).
 */
export async function repairResolvConf(
  stateDir: string,
  options: { path?: string; isRunning?: (pid: number) => boolean } = {},
): Promise<string | null> {
  const r = await restoreResolvConf({ stateDir, ...(options.path ? { path: options.path } : {}) }, options);
  if (r.action === "nothing-to-restore" || r.action === "daemon-running") return null;
  return `tp found DNS settings left by a tp that is gone: ${r.message}`;
}
