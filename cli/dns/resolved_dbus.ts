/**
 * systemd-resolved's per-link settings over D-Bus: the Manager object's SetLink* methods (org.freedesktop.resolve1(5),
 * the calls resolvectl(1) itself makes). The same settings as the resolvectl command lines in resolved.ts, in the
 * same order: DNS server, domains, not the default route, no DNSSEC.
 */
import { parseAddress } from "../../net/wire/address.ts";
import type { DBusCall, DBusValue } from "./dbus.ts";
import { errorMessage } from "../../base/error_message.ts";

export interface LinkDnsSettings {
  /** The TUN device's name. */
  link: string;
  dnsAddress: string;
  /** Search domains, in order (`<ns>.svc.<domain>`, `svc.<domain>`, `<domain>`). */
  searchDomains: readonly string[];
  /** Routing-only domains, without the `~` (NameRouter.routingDomains()). */
  routingDomains: readonly string[];
}

/** Where the link settings live (org.freedesktop.resolve1(5)). */
export const RESOLVE1 = {
  destination: "org.freedesktop.resolve1",
  path: "/org/freedesktop/resolve1",
  interface: "org.freedesktop.resolve1.Manager",
} as const;

/** Address families as SetLinkDNS takes them (Linux include/linux/socket.h). */
const AF_INET = 2;
const AF_INET6 = 10;

/** What a D-Bus connection must do here; DBusConnection does it. */
export interface DBusCaller {
  call(msg: DBusCall): Promise<DBusValue[]>;
}

/**
 * The link's domains: the search domains, then the routing-only ones (`~` in resolvectl) that are not search
 * domains already. A search domain routes its names to the link too.
 */
export function linkDomains(s: LinkDnsSettings): { domain: string; routingOnly: boolean }[] {
  return [
    ...s.searchDomains.map((domain) => ({ domain, routingOnly: false })),
    ...s.routingDomains.filter((d) => !s.searchDomains.includes(d)).map((domain) => ({ domain, routingOnly: true })),
  ];
}

/** One Manager method call. */
export interface Resolve1Call {
  member: string;
  signature: string;
  body: unknown[];
}

/** The calls that configure the link, in order. Throws SyntaxError for a DNS address that is not one. */
export function resolvedDbusApplyCalls(s: LinkDnsSettings & { ifindex: number }): Resolve1Call[] {
  const { family, address } = parseAddress(s.dnsAddress);
  return [
    { member: "SetLinkDNS", signature: "ia(iay)", body: [s.ifindex, [[family === 4 ? AF_INET : AF_INET6, address]]] },
    {
      member: "SetLinkDomains",
      signature: "ia(sb)",
      body: [s.ifindex, linkDomains(s).map((d) => [d.domain, d.routingOnly])],
    },
    // Only the domains above go to tp; this link is never the default route for other names.
    { member: "SetLinkDefaultRoute", signature: "ib", body: [s.ifindex, false] },
    // The cluster's DNS does not sign its zone: validation on this link would fail every answer.
    { member: "SetLinkDNSSEC", signature: "is", body: [s.ifindex, "no"] },
  ];
}

/** The call that undoes them. */
export function resolvedDbusRevertCall(ifindex: number): Resolve1Call {
  return { member: "RevertLink", signature: "i", body: [ifindex] };
}

async function invoke(conn: DBusCaller, c: Resolve1Call): Promise<void> {
  try {
    await conn.call({ ...RESOLVE1, ...c });
  } catch (e) {
    const why = errorMessage(e);
    throw new Error(`systemd-resolved: D-Bus call ${c.member} on link ${c.body[0]} failed: ${why}`, { cause: e });
  }
}

/**
 * Configures the link through `conn`. On a failure part-way the link is reverted (RevertLink) and the error, which
 * names the call and quotes the D-Bus error, is thrown.
 */
export async function applyResolvedDbus(s: LinkDnsSettings & { ifindex: number }, conn: DBusCaller): Promise<void> {
  for (const c of resolvedDbusApplyCalls(s)) {
    try {
      await invoke(conn, c);
    } catch (e) {
      await invoke(conn, resolvedDbusRevertCall(s.ifindex)).catch(() => {});
      throw e;
    }
  }
}

/** Drops every per-link setting (resolvectl revert). */
export async function revertResolvedDbus(ifindex: number, conn: DBusCaller): Promise<void> {
  await invoke(conn, resolvedDbusRevertCall(ifindex));
}

/** A network interface's index, from /sys/class/net/<name>/ifindex (Documentation/ABI/testing/sysfs-class-net). */
export async function linkIndex(name: string, sysClassNet = "/sys/class/net"): Promise<number> {
  if (!name || name.includes("/") || name === "." || name === "..") {
    throw new TypeError(`Cannot use "${name}" as a network interface name`);
  }
  let text: string;
  try {
    text = await Deno.readTextFile(`${sysClassNet}/${name}/ifindex`);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "there is no such interface" : errorMessage(e);
    throw new Error(`Cannot find the index of network interface "${name}": ${why}`, { cause: e });
  }
  const index = Number(text.trim());
  if (!Number.isInteger(index) || index < 1) {
    throw new Error(`Cannot read the index of network interface "${name}": "${text.trim()}"`);
  }
  return index;
}
