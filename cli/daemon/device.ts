/**
 * tp's network interface: a TUN device with one address per family, and the routes that send the cluster's subnets
 * to it. Closing the device removes it and its routes (the kernel's doing), so the routes need no teardown of their
 * own; while the daemon runs they follow the cluster's subnets, a route at a time.
 */
import { createTun, type TunDevice } from "../../ffi/mod.ts";
import type { Netlink } from "../../ffi/netlink.ts";
import { type Cidr, formatAddress, formatCidr } from "../../net/cidr.ts";
import { errorMessage } from "../../base/error_message.ts";
import { conflictMessage, diffRoutes, type ExistingRoute, findConflicts } from "./routes.ts";
import type { Log } from "./log_file.ts";
import type { Up } from "./stages.ts";

/**
 * The device's MTU: the largest the kernel allows. Packets between the apps and tp never cross a wire, so the kernel
 * hands tp whole 64 KiB TCP segments (MSS 65495) and takes them back, a fraction of the per-packet work of 1500
 * (scripts/bench_stack.ts: upload 544 -> 988 MB/s, download 287 -> 1227 MB/s).
 */
export const DEVICE_MTU = 65535;
/**
 * Packets the kernel queues on the device for the daemon to read (its txqueuelen; the TUN driver's default is 500,
 * 10 ms of a 500 Mbit/s UDP flow of 1,200-byte datagrams). A daemon waiting longer than that for a CPU lost 0.7-1 % of
 * such a flow there (the device's TX drops). 2048 waits 40 ms; TCP keeps little in it either way (TCP small queues
 * hold each socket to about 1 ms of its rate below it), and the TUN driver orphans what it queues, so the memory is the
 * queued packets' only while the daemon is late.
 */
export const DEVICE_QUEUE = 2048;

/** The routes this machine has, as the conflict check (routes.ts) reads them. */
export function existingRoutes(nl: Pick<Netlink, "routes">): ExistingRoute[] {
  return nl.routes().map((r) => ({ dst: r.dst, dev: r.dev, table: r.table, type: r.type }));
}

/**
 * Creates the device, up, with its addresses for `routes` (`deviceAddresses`) and no link-local one (no router
 * solicitations or MLD reports on tp's device). Down: closes it, which removes it and its routes.
 */
export function openDevice(nl: Netlink, routes: readonly Cidr[]): Up<{ tun: TunDevice; addresses: string[] }> {
  const tun = createTun({ mtu: DEVICE_MTU, txQueueLength: DEVICE_QUEUE });
  try {
    nl.disableIpv6AddrGen(tun.name);
    nl.setLinkUp(tun.name);
    const addresses = deviceAddresses(routes);
    for (const a of addresses) nl.addAddress(tun.name, a, { noPrefixRoute: true });
    return { value: { tun, addresses }, down: () => tun.close() };
  } catch (e) {
    tun.close();
    throw e;
  }
}

/**
 * The device's own addresses, one per family it routes: the network address of the first routed block of that
 * family (as a host address, with no prefix route). The kernel needs one to add routes and to pick a source address
 * for the apps' packets; a subnet's network address is never a pod or a service, so taking it costs nothing.
 */
export function deviceAddresses(routes: readonly Cidr[]): string[] {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    const hostBits = family === 4 ? 32 : 128;
    const block = routes.find((r) => r.family === family && r.prefix <= hostBits - 2);
    if (block) out.push(`${formatAddress(family, block.base)}/${hostBits}`);
  }
  return out;
}

/** What DeviceRoutes asks of rtnetlink. */
export type RouteTable = Pick<Netlink, "addRoute" | "deleteRoute" | "routes">;

/** The routes to the device: the first ones added at once, then kept in step with the cluster's subnets. */
export class DeviceRoutes {
  readonly #nl: RouteTable;
  readonly #device: string;
  readonly #allowConflicting: readonly string[];
  readonly #log: Log;
  #routes: readonly Cidr[];

  /** Routes `routes` to `device` (checked for conflicts already). The device's close takes them down. */
  constructor(
    nl: RouteTable,
    device: string,
    routes: readonly Cidr[],
    opts: { allowConflicting: readonly string[]; log: Log },
  ) {
    for (const r of routes) nl.addRoute({ dst: formatCidr(r), dev: device });
    this.#nl = nl;
    this.#device = device;
    this.#allowConflicting = opts.allowConflicting;
    this.#log = opts.log;
    this.#routes = routes;
  }

  /** The routes this device has now, as CIDR text, for the user and the state file. */
  get list(): string[] {
    return this.#routes.map(formatCidr);
  }

  /**
   * Goes over to `want`: routes what is new (unless it collides with a route of this machine's, which is logged) and
   * drops what is gone; a route the kernel refuses is logged and skipped. What the device has afterwards is what
   * `list` says (a skipped route is not listed, so the next change tries it again). Returns whether the plan changed.
   */
  update(want: readonly Cidr[]): boolean {
    const nl = this.#nl, device = this.#device, log = this.#log;
    const { add, remove } = diffRoutes(this.#routes, want);
    if (!add.length && !remove.length) return false;
    const taken = findConflicts(add, existingRoutes(nl), { ownDevice: device, allow: this.#allowConflicting });
    const routed = new Map(this.#routes.map((c) => [formatCidr(c), c]));
    for (const c of add) {
      const name = formatCidr(c);
      if (taken.some((t) => t.ours === name)) {
        log(`not routing the cluster's new subnet ${name}: ${conflictMessage(taken.filter((t) => t.ours === name))}`);
        continue;
      }
      try {
        nl.addRoute({ dst: name, dev: device });
        routed.set(name, c);
        log(`routing the cluster's new subnet ${name} to ${device}`);
      } catch (e) {
        log(`cannot route ${name}: ${errorMessage(e)}`, "warn");
      }
    }
    for (const c of remove) {
      try {
        nl.deleteRoute({ dst: formatCidr(c), dev: device });
        routed.delete(formatCidr(c));
        log(`no longer routing ${formatCidr(c)}: the cluster dropped it`);
      } catch (e) {
        log(`cannot remove the route ${formatCidr(c)}: ${errorMessage(e)}`, "warn");
      }
    }
    // In the plan's order; a route the kernel would not remove stays listed after them (the device still has it).
    const wanted = want.filter((c) => routed.delete(formatCidr(c)));
    this.#routes = [...wanted, ...routed.values()];
    return true;
  }
}
