/**
 * Whether the system's resolver points at tp right now, for `tp status`: read from where the C library and
 * systemd-resolved take it (resolv.conf itself; resolved's settings for tp's link), never from what tp last wrote.
 */
import { parseAddress } from "../../net/wire/address.ts";
import { DBusConnection, DBusVariant, systemBusAddress } from "./dbus.ts";
import { parseResolvConf } from "./resolv_conf.ts";
import { linkIndex, RESOLVE1 } from "./resolved_dbus.ts";

export interface ResolverCheck {
  /** Whether names tp answers reach tp's DNS address. */
  pointsAtTp: boolean;
  /** What was read, for a person: "/etc/resolv.conf names 198.19.0.255 first". */
  detail: string;
}

/** resolv.conf mode: the file points at tp when its first nameserver is tp's (the C library asks that one first). */
export async function checkResolvConf(path: string, dnsAddress: string): Promise<ResolverCheck> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    return { pointsAtTp: false, detail: `cannot read ${path}: ${(e as Error).message}` };
  }
  const ns = parseResolvConf(text).nameservers;
  if (ns[0] === dnsAddress) return { pointsAtTp: true, detail: `${path} names tp's ${dnsAddress} first` };
  return {
    pointsAtTp: false,
    detail: ns.length
      ? `${path} names ${ns.join(", ")}, not tp's ${dnsAddress}`
      : `${path} names no nameserver, not tp's ${dnsAddress}`,
  };
}

/** The addresses in a Link's `DNS` property, a(iay): (family, address bytes) pairs. */
export function linkDnsAddresses(value: unknown): string[] {
  const out: string[] = [];
  for (const entry of Array.isArray(value) ? value : []) {
    const bytes = Array.isArray(entry) ? entry[1] : undefined;
    if (!(bytes instanceof Uint8Array)) continue;
    if (bytes.length === 4) out.push(bytes.join("."));
    else if (bytes.length === 16) {
      const words = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
      out.push(words.join(":"));
    }
  }
  return out;
}

/** Whether `list` holds `address` (IPv6 compared by value, not by spelling). */
function holds(list: readonly string[], address: string): boolean {
  const want = parseAddress(address);
  return list.some((a) => {
    try {
      const got = parseAddress(a);
      return got.family === want.family && got.address.every((b, i) => b === want.address[i]);
    } catch {
      return false;
    }
  });
}

export interface ResolvedCheckOptions {
  /** Ask over this bus (the way tp configured the link); without it, run `resolvectl`. */
  busAddress?: string;
  resolvectl?: string | null;
  timeoutMs?: number;
  sysClassNet?: string;
}

/**
 * systemd-resolved mode: the link's DNS servers as resolved holds them now, over D-Bus (Manager.GetLink, then the
 * Link's `DNS` property, org.freedesktop.resolve1(5)) or with `resolvectl dns LINK`.
 */
export async function checkResolvedLink(
  link: string,
  dnsAddress: string,
  options: ResolvedCheckOptions = {},
): Promise<ResolverCheck> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  let servers: string[];
  let how: string;
  try {
    if (options.resolvectl && options.busAddress === undefined) {
      how = "resolvectl";
      servers = await resolvectlServers(options.resolvectl, link, timeoutMs);
    } else {
      how = "D-Bus";
      servers = await dbusServers(link, options.busAddress ?? systemBusAddress(), timeoutMs, options.sysClassNet);
    }
  } catch (e) {
    return { pointsAtTp: false, detail: `cannot ask systemd-resolved about ${link}: ${(e as Error).message}` };
  }
  const list = servers.join(", ") || "none";
  return holds(servers, dnsAddress)
    ? { pointsAtTp: true, detail: `systemd-resolved sends ${link}'s domains to tp's ${dnsAddress} (asked over ${how})` }
    : { pointsAtTp: false, detail: `systemd-resolved's DNS servers for ${link} are ${list}, not tp's ${dnsAddress}` };
}

async function dbusServers(link: string, busAddress: string, timeoutMs: number, sysClassNet?: string) {
  const ifindex = await linkIndex(link, sysClassNet);
  const conn = await DBusConnection.connect(busAddress, { timeoutMs });
  try {
    const [path] = await conn.call({ ...RESOLVE1, member: "GetLink", signature: "i", body: [ifindex] });
    const [v] = await conn.call({
      destination: RESOLVE1.destination,
      path: String(path),
      interface: "org.freedesktop.DBus.Properties",
      member: "Get",
      signature: "ss",
      body: ["org.freedesktop.resolve1.Link", "DNS"],
    });
    return linkDnsAddresses(v instanceof DBusVariant ? v.value : v);
  } finally {
    conn.close();
    await conn.done;
  }
}

/** `resolvectl dns LINK` prints "Link 7 (tp0): 198.19.0.255 2001:db8::1". */
export function parseResolvectlDns(out: string): string[] {
  const line = out.split("\n").find((l) => /^Link \d+ \(/.test(l)) ?? "";
  return line.replace(/^[^:]*\):/, "").trim().split(/\s+/).filter(Boolean).map((a) => a.replace(/%.*$/, ""));
}

async function resolvectlServers(resolvectl: string, link: string, timeoutMs: number): Promise<string[]> {
  const out = await new Deno.Command(resolvectl, {
    args: ["dns", link],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`);
  return parseResolvectlDns(new TextDecoder().decode(out.stdout));
}
