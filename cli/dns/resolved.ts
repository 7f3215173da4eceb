/**
 * systemd-resolved mode: when resolved runs, tp leaves /etc/resolv.conf alone and configures its own link instead,
 * as split DNS: the link gets tp's DNS address, the search domains `<ns>.svc.<domain> svc.<domain> <domain>`, and
 * routing-only domains (`~cluster.local`, `~<ns>`, `~svc`, the reverse zones of the cluster's subnets). resolved then
 * sends only those names to tp; every other name keeps going where it went before.
 *
 * tp talks to resolved over the system bus (org.freedesktop.resolve1's SetLinkDNS, SetLinkDomains,
 * SetLinkDefaultRoute, SetLinkDNSSEC, RevertLink; resolved_dbus.ts), and runs `resolvectl` (resolvectl(1): `dns`,
 * `domain`, `default-route`, `dnssec`, `revert`) when the bus cannot be reached: no socket, connection refused, or
 * authentication rejected. `configureResolved()` is the entry point; it says which way it went. An error from resolved
 * itself is not a reason to try resolvectl, which would ask the same resolved over the same bus. When the TUN device
 * goes away its per-link settings go with it, so reverting on quit is belt and braces, and a crash leaves nothing
 * behind.
 *
 * Upstreams in this mode are not the stub 127.0.0.53 (a cluster-looking name tp passes upstream would come back to
 * tp through the routing domains): they are the uplink servers resolved lists in /run/systemd/resolve/resolv.conf.
 */
import { DBusConnectError, DBusConnection, systemBusAddress, unixSocketPath } from "./dbus.ts";
import { parseResolvConf } from "./resolv_conf.ts";
import {
  applyResolvedDbus,
  type LinkDnsSettings,
  linkDomains,
  linkIndex,
  revertResolvedDbus,
} from "./resolved_dbus.ts";

export type { LinkDnsSettings } from "./resolved_dbus.ts";

export interface ResolvedDetection {
  running: boolean;
  /** The resolvectl executable found on PATH, or null. */
  resolvectl: string | null;
  /** The system bus's socket when it exists, or null. */
  busSocket: string | null;
  /** Why it is (not) used, for the log. */
  reason: string;
}

export interface DetectOptions {
  /** resolved's runtime directory. Default /run/systemd/resolve. */
  runDir?: string;
  /** The PATH to look for resolvectl in. Default $PATH. */
  path?: string;
  /** The system bus's address. Default $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket. */
  busAddress?: string;
}

function isDir(p: string): boolean {
  try {
    return Deno.statSync(p).isDirectory;
  } catch {
    return false;
  }
}

function findOnPath(name: string, path: string): string | null {
  for (const dir of path.split(":").filter(Boolean)) {
    try {
      const st = Deno.statSync(`${dir}/${name}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

function isSocket(p: string): boolean {
  try {
    return Deno.statSync(p).isSocket === true;
  } catch {
    return false;
  }
}

/**
 * resolved's Varlink socket (systemd 246 and later; nss-resolve talks to it). Like the rest of its runtime directory it
 * stays when resolved stops (the unit has RuntimeDirectoryPreserve=yes), but then nothing accepts connections on it.
 */
export const RESOLVED_VARLINK = "io.systemd.Resolve";

/**
 * Whether something accepts connections on the unix socket `path`: false when the connection is refused (no process
 * listens) or the socket is gone, null when that cannot be told (no permission, say).
 */
async function listening(path: string): Promise<boolean | null> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.NotFound) return false;
    return null;
  }
}

/**
 * resolved counts as running when its runtime directory exists (it creates it at start, sd-resolved(8)), its Varlink
 * socket, where there is one, accepts a connection (a stopped or disabled resolved leaves the directory and the socket
 * behind until the next boot), and there is a way to configure it: the system bus's socket, or `resolvectl`.
 */
export async function detectResolved(options: DetectOptions = {}): Promise<ResolvedDetection> {
  const runDir = options.runDir ?? "/run/systemd/resolve";
  const resolvectl = findOnPath("resolvectl", options.path ?? Deno.env.get("PATH") ?? "");
  const busPath = unixSocketPath(options.busAddress ?? systemBusAddress());
  const busSocket = busPath !== null && isSocket(busPath) ? busPath : null;
  const found = { resolvectl, busSocket };
  if (!isDir(runDir)) return { running: false, ...found, reason: `${runDir} does not exist` };
  const varlink = `${runDir}/${RESOLVED_VARLINK}`;
  if (isSocket(varlink) && await listening(varlink) === false) {
    return {
      running: false,
      ...found,
      reason: `${runDir} exists but nothing listens on ${varlink}: systemd-resolved has stopped`,
    };
  }
  if (!busSocket && !resolvectl) {
    const bus = busPath ?? options.busAddress ?? systemBusAddress();
    return {
      running: false,
      ...found,
      reason: `${runDir} exists but the system bus socket ${bus} does not, and resolvectl is not on PATH`,
    };
  }
  const ways = [busSocket && `the system bus socket ${busSocket}`, resolvectl].filter(Boolean).join(" or ");
  return { running: true, ...found, reason: `${runDir} exists, and tp can configure resolved through ${ways}` };
}

/** The resolvectl command lines that configure the link, in order. */
export function resolvedApplyCommands(s: LinkDnsSettings, resolvectl = "resolvectl"): string[][] {
  const domains = linkDomains(s).map((d) => d.routingOnly ? `~${d.domain}` : d.domain);
  return [
    [resolvectl, "dns", s.link, s.dnsAddress],
    [resolvectl, "domain", s.link, ...domains],
    // Only the domains above go to tp; this link is never the default route for other names.
    [resolvectl, "default-route", s.link, "false"],
    // The cluster's DNS does not sign its zone: validation on this link would fail every answer.
    [resolvectl, "dnssec", s.link, "no"],
  ];
}

/** The resolvectl command line that undoes them. */
export function resolvedRevertCommands(link: string, resolvectl = "resolvectl"): string[][] {
  return [[resolvectl, "revert", link]];
}

async function runAll(commands: string[][]): Promise<void> {
  for (const [cmd, ...args] of commands) {
    const out = await new Deno.Command(cmd!, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim();
      throw new Error(`\`${[cmd, ...args].join(" ")}\` failed (exit ${out.code}): ${err}`);
    }
  }
}

/**
 * Configures the link with resolvectl only. On a failure part-way, the link is reverted before the error is thrown.
 * `configureResolved()` tries the bus first.
 */
export async function applyResolved(s: LinkDnsSettings, resolvectl = "resolvectl"): Promise<void> {
  try {
    await runAll(resolvedApplyCommands(s, resolvectl));
  } catch (e) {
    await runAll(resolvedRevertCommands(s.link, resolvectl)).catch(() => {});
    throw e;
  }
}

/** Reverts the link with resolvectl. */
export async function revertResolved(link: string, resolvectl = "resolvectl"): Promise<void> {
  await runAll(resolvedRevertCommands(link, resolvectl));
}

/** How the link was configured, for the log and `tp status`. */
export type ResolvedVia = "dbus" | "resolvectl";

export interface ResolvedLinkOptions {
  /** The system bus's address. Default $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket. */
  busAddress?: string;
  /** resolvectl, for when the bus cannot be reached (ResolvedDetection.resolvectl); null or absent: none. */
  resolvectl?: string | null;
  /** Bounds connecting to the bus and each call. Default 5000 ms. */
  timeoutMs?: number;
  /** Where interface indexes are read. Default /sys/class/net. */
  sysClassNet?: string;
}

/** A configured link. */
export interface ResolvedLink {
  readonly via: ResolvedVia;
  /** Why resolvectl was used instead of the bus; "" when the bus was used. */
  readonly note: string;
  /** Undoes the settings, the way they were made (resolvectl if the bus has gone away since). */
  revert(): Promise<void>;
}

async function connectBus(o: ResolvedLinkOptions): Promise<DBusConnection> {
  return await DBusConnection.connect(
    o.busAddress ?? systemBusAddress(),
    o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs },
  );
}

async function withBus(conn: DBusConnection, fn: (conn: DBusConnection) => Promise<void>): Promise<void> {
  try {
    await fn(conn);
  } finally {
    conn.close();
    await conn.done;
  }
}

/**
 * Configures the link over the system bus, or with resolvectl when the bus cannot be reached (DBusConnectError) and
 * `resolvectl` is given. On a failure part-way the link is reverted before the error is thrown.
 */
export async function configureResolved(s: LinkDnsSettings, options: ResolvedLinkOptions = {}): Promise<ResolvedLink> {
  let conn: DBusConnection;
  try {
    conn = await connectBus(options);
  } catch (e) {
    if (!(e instanceof DBusConnectError)) throw e;
    const resolvectl = options.resolvectl;
    if (!resolvectl) throw new Error(`systemd-resolved: ${e.message}, and resolvectl is not on PATH`, { cause: e });
    await applyResolved(s, resolvectl);
    return { via: "resolvectl", note: e.message, revert: () => revertResolved(s.link, resolvectl) };
  }
  let ifindex = 0;
  await withBus(conn, async (conn) => {
    ifindex = await linkIndex(s.link, options.sysClassNet);
    await applyResolvedDbus({ ...s, ifindex }, conn);
  });
  const revert = async () => {
    let conn: DBusConnection;
    try {
      conn = await connectBus(options);
    } catch (e) {
      if (!(e instanceof DBusConnectError) || !options.resolvectl) throw e;
      return await revertResolved(s.link, options.resolvectl);
    }
    await withBus(conn, (conn) => revertResolvedDbus(ifindex, conn));
  };
  return { via: "dbus", note: "", revert };
}

/** The uplink nameservers resolved uses (its non-stub resolv.conf), as tp's upstreams. */
export async function resolvedUpstreams(runDir = "/run/systemd/resolve"): Promise<string[]> {
  const conf = parseResolvConf(await Deno.readTextFile(`${runDir}/resolv.conf`));
  return conf.nameservers.filter((ns) => !ns.startsWith("127.0.0.5"));
}
