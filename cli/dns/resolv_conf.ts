/**
 * resolv.conf mode (no systemd-resolved): while connected, /etc/resolv.conf names only tp's DNS address, and the
 * search list starts with `<ns>.svc.<domain> svc.<domain> <domain>`. The original nameservers become tp's upstreams.
 *
 * - The file is rewritten IN PLACE, never replaced by a rename: under `ip netns exec`, in containers and with some
 *   network managers /etc/resolv.conf is a bind mount (which no rename may replace) or a symlink that must stay as it
 *   is. So that no failure leaves it empty or half-written (`writeVerified`): the new bytes are written over the old
 *   ones from offset 0 in one write, without truncating first, then the file is cut to their length and read back.
 *   If the write fails (ENOSPC) or reads back wrong, the old bytes go back the same way (they fit in the blocks the
 *   file already holds) and the error is reported. A reader (or a crash) can only ever find the old content, the new
 *   one, or the new one's first bytes over the old one's rest, which `isTornWrite` recognizes.
 * - Before the first write, the exact original bytes go to `<stateDir>/resolv.conf.orig`, and
 *   `<stateDir>/resolv.conf.json` records the path, the daemon's pid and what tp writes (its SHA-256 and bytes).
 * - `restoreResolvConf()` (on `tp quit`) writes the original back byte for byte, but only if the file still holds
 *   what tp wrote (or a write of tp's that a crash cut short, or already the original): if something else rewrote it
 *   meanwhile (a DHCP client, a VPN), its content wins and the backup is kept for the user. The backup is removed only
 *   once the file reads back as the original. `repairResolvConf()` does the same after a crash, when the recorded pid
 *   is gone.
 *
 * Why only tp's nameserver, and not the original ones after it as a fallback: musl asks every nameserver at once and
 * takes the first answer, and glibc's `options rotate` spreads queries over them, so either would send cluster names
 * to servers that answer NXDOMAIN for them. After a crash the file is repaired by the next `tp connect` or `tp quit`.
 */
import { bytesEqual } from "../../base/bytes.ts";
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
  /** What tp wrote (base64), to recognize a write of it a crash cut short. Missing in records of older tps. */
  written?: string;
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

/** Puts `bytes` in the existing file from offset 0, then cuts it to their length; never truncates first. */
async function overwrite(path: string, bytes: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { read: true, write: true });
  try {
    await f.seek(0, Deno.SeekMode.Start);
    for (let o = 0; o < bytes.length;) o += await f.write(bytes.subarray(o));
    await f.truncate(bytes.length);
    await f.sync();
  } finally {
    f.close();
  }
}

/**
 * Replaces the file's content `previous` with `next`, in place (the same inode), and reads it back. On any failure
 * (ENOSPC, a short write, other bytes read back) it puts `previous` back the same way and throws: the file then holds
 * `previous` again, never nothing.
 */
export async function writeVerified(path: string, next: Uint8Array, previous: Uint8Array): Promise<void> {
  try {
    await overwrite(path, next);
    if (!bytesEqual(await Deno.readFile(path), next)) {
      throw new Error(`${path} does not read back what tp wrote to it`);
    }
  } catch (e) {
    try {
      await overwrite(path, previous);
    } catch { /* the record lets the next tp repair it */ }
    throw e;
  }
}

/**
 * Whether `current` is what `overwrite(from -> to)` can leave behind: `from`, `to`, or to's first k bytes over
 * from's rest (to[0, k) + from[k, ...), its length the larger of the two), as after a crash in the middle.
 */
export function isTornWrite(current: Uint8Array, from: Uint8Array, to: Uint8Array): boolean {
  if (bytesEqual(current, from) || bytesEqual(current, to)) return true;
  let prefix = 0; // bytes current shares with `to` from the start
  while (prefix < current.length && prefix < to.length && current[prefix] === to[prefix]) prefix++;
  if (current.length > from.length) return current.length <= to.length && prefix === current.length;
  if (current.length !== from.length) return false;
  let suffix = 0; // bytes current shares with `from` from the end
  while (suffix < current.length && current[current.length - 1 - suffix] === from[from.length - 1 - suffix]) suffix++;
  return current.length - suffix <= prefix;
}

/** Writes a file of tp's own state atomically (a temporary file and a rename inside the state directory). */
async function writeState(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.remove(tmp).catch(() => {});
  await Deno.writeFile(tmp, bytes, { mode: 0o600, createNew: true }); // O_EXCL: never through a symlink
  await Deno.rename(tmp, path);
}

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
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
  const record: Record = {
    path,
    pid,
    writtenSha256: await sha256(written),
    written: toBase64(written),
    at: new Date().toISOString(),
  };
  await writeState(files.record, new TextEncoder().encode(JSON.stringify(record, null, 2) + "\n"));
  try {
    await writeVerified(path, written, original);
  } catch (e) {
    // The original is back in place: nothing to restore later. Else the record stays for the repair.
    const now = await Deno.readFile(path).catch(() => null);
    if (now && bytesEqual(now, original)) {
      await Deno.remove(files.record).catch(() => {});
      await Deno.remove(files.orig).catch(() => {});
    }
    throw new Error(`cannot write ${path}: ${(e as Error).message}; it still holds its original content`, {
      cause: e,
    });
  }
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
  const original = await Deno.readFile(files.orig);
  const written = record.written === undefined ? null : fromBase64(record.written);
  const ours = await sha256(current) === record.writtenSha256 ||
    // a write of tp's cut short by a crash (either way), or an older tp's truncate-then-write that never finished
    (written && (isTornWrite(current, original, written) || isTornWrite(current, written, original))) ||
    current.length === 0;
  if (!ours) {
    await Deno.remove(files.record);
    return {
      action: "kept-foreign-change",
      message: `${path} was changed by something else after tp wrote it; kept that change (tp's backup of the ` +
        `original stays in ${files.orig})`,
    };
  }
  const already = bytesEqual(current, original);
  if (!already) await writeVerified(path, original, current);
  // Only now, with the original read back, does the backup go.
  await Deno.remove(files.record);
  await Deno.remove(files.orig);
  return {
    action: "restored",
    message: already
      ? `${path} still held its original content (tp pid ${record.pid} ended before changing it); removed tp's backup`
      : `restored the original ${path} (saved by tp pid ${record.pid})`,
  };
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

/**
 * Whether the resolv.conf tp changed still holds what tp wrote (its SHA-256 against the record's): false when another
 * program has rewritten it since, null when tp has no change recorded in `stateDir`.
 */
export async function resolvConfHoldsTpsWrite(paths: ResolvConfPaths): Promise<boolean | null> {
  const record = await readRecord(paths.stateDir);
  if (!record) return null;
  return await sha256(await Deno.readFile(paths.path ?? record.path)) === record.writtenSha256;
}
