/**
 * rtnetlink (include/uapi/linux/rtnetlink.h) over an AF_NETLINK socket through FFI: what `tp connect` does to its
 * device (up, no IPv6 address generation, addresses, routes added and deleted) and the route dump it checks for
 * conflicts, with kernel errors turned into messages that say what failed.
 *
 * Requests are synchronous: rtnetlink handles a request inside sendmsg(), so the answer is queued by the time
 * `send` returns; `recv` waits at most 5 s (SO_RCVTIMEO) in case something is badly wrong.
 */
import {
  AF_NETLINK,
  check,
  type Libc,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  openLibc,
  SO_RCVTIMEO,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./_libc.ts";
import { formatPrefix, ipToString, parseAddress, parseNetwork, parsePrefix } from "../net/wire/address.ts";
import { errnoName, isPermissionErrno, OsError } from "./errors.ts";
import {
  attributes,
  type Message,
  MessageBuilder,
  messages,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseError,
  readString,
  readU32,
} from "./_netlink_wire.ts";

// include/uapi/linux/rtnetlink.h
const RTM_NEWLINK = 16, RTM_GETLINK = 18;
const RTM_NEWADDR = 20, RTM_GETADDR = 22;
const RTM_NEWROUTE = 24, RTM_DELROUTE = 25, RTM_GETROUTE = 26;
const RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PRIORITY = 6, RTA_PREFSRC = 7, RTA_TABLE = 15;
const RT_SCOPE_UNIVERSE = 0, RT_SCOPE_LINK = 253, RT_SCOPE_NOWHERE = 255;
const RTPROT_STATIC = 4;
// include/uapi/linux/if_link.h, if_addr.h, socket.h, if.h
const IFLA_IFNAME = 3, IFLA_AF_SPEC = 26;
const IFLA_INET6_ADDR_GEN_MODE = 8, IN6_ADDR_GEN_MODE_NONE = 1;
const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_FLAGS = 8;
const IFA_F_NODAD = 0x02, IFA_F_NOPREFIXROUTE = 0x200;
const AF_INET = 2, AF_INET6 = 10;
const IFF_UP = 0x1;
const EEXIST = 17, ESRCH = 3, ENODEV = 19, ENETUNREACH = 101, EAFNOSUPPORT = 97;
const RECV_TIMEOUT_S = 5;
const RECV_BUFFER = 65536;
/** Most datagrams one dump may take (a dump of 10^6 routes is ~ 2000 datagrams). */
const MAX_DUMP_DATAGRAMS = 100_000;

const TABLES = { default: 253, main: 254, local: 255 } as const;
/** A routing table: a number (1..2^32-1) or one of the kernel's named tables. */
export type Table = number | keyof typeof TABLES;

const ROUTE_TYPES = [
  "unspec",
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
  "nat",
] as const;
/** Route types (RTN_*). "throw" ends the lookup in this table, so the next policy rule applies. */
export type RouteType = (typeof ROUTE_TYPES)[number];

/** An address as the dump sees it (for the address check of `addRoute`). */
interface AddressInfo {
  index: number;
  dev: string;
  family: 4 | 6;
  address: string;
  prefixLength: number;
}

export interface RouteSpec {
  /** Destination CIDR with host bits zero ("198.18.0.0/15", "2001:db8::/32"). */
  dst: string;
  /** Output device name; needed for "unicast" routes without a gateway. */
  dev?: string;
  gateway?: string;
  /** Default "main". */
  table?: Table;
  /** Default "unicast". */
  type?: RouteType;
  /** RTA_PRIORITY, the metric iproute2 shows. */
  metric?: number;
  /** rtm_protocol; default RTPROT_STATIC (4). */
  protocol?: number;
}

export interface RouteInfo {
  family: 4 | 6;
  /** Destination CIDR; the default route is "0.0.0.0/0" or "::/0". */
  dst: string;
  table: number;
  type: RouteType;
  protocol: number;
  scope: number;
  ifindex?: number;
  dev?: string;
  gateway?: string;
  metric?: number;
  prefsrc?: string;
}

export interface AddAddressOptions {
  /** Do not create the prefix route the kernel adds for a prefix shorter than a host (IFA_F_NOPREFIXROUTE). */
  noPrefixRoute?: boolean;
}

/** An rtnetlink socket. `Netlink.open()`, then `close()` when done. */
export class Netlink {
  readonly #libc: Libc;
  readonly #ownLibc: boolean;
  readonly #fd: number;
  readonly #recvBuf = new Uint8Array(RECV_BUFFER);
  #seq = Math.floor(Math.random() * 0x7fffffff);
  #closed = false;

  private constructor(libc: Libc, ownLibc: boolean, fd: number) {
    this.#libc = libc;
    this.#ownLibc = ownLibc;
    this.#fd = fd;
  }

  /** Opens an AF_NETLINK/NETLINK_ROUTE socket (close-on-exec) with extended acks and a receive timeout. */
  static open(options: { libc?: Libc } = {}): Netlink {
    const ownLibc = options.libc === undefined;
    const libc = options.libc ?? openLibc();
    let fd = -1;
    try {
      fd = check(libc, libc.symbols.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), "socket", (e) => {
        return `Cannot open a netlink socket (${errnoName(e)}): the kernel must support rtnetlink`;
      });
      const one = new Uint8Array(4);
      one[0] = 1;
      // Extended acks add the kernel's own explanation to errors; failure here only loses that text.
      libc.symbols.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
      const timeval = new BigInt64Array([BigInt(RECV_TIMEOUT_S), 0n]);
      libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(timeval.buffer), 16);
      const sa = new Uint8Array(12); // struct sockaddr_nl: family, pad, pid 0 (kernel assigns), groups 0
      new DataView(sa.buffer).setUint16(0, AF_NETLINK, true);
      check(libc, libc.symbols.bind(fd, sa, 12), "bind", (e) => `Cannot bind a netlink socket (${errnoName(e)})`);
      return new Netlink(libc, ownLibc, fd);
    } catch (e) {
      if (fd >= 0) libc.symbols.close(fd);
      if (ownLibc) libc.close();
      throw e;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#libc.symbols.close(this.#fd);
    if (this.#ownLibc) this.#libc.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // ---- links ----

  /** The interface index of `name`. */
  #linkIndex(name: string): number {
    const b = new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST).fixed(new Uint8Array(16)).string(IFLA_IFNAME, name);
    const replies = this.#transact(b, (errno) => {
      if (errno === ENODEV) return `No network interface named "${name}"`;
      return `Cannot look up network interface "${name}"`;
    });
    const link = replies.find((m) => m.type === RTM_NEWLINK);
    if (!link) throw new OsError(`No network interface named "${name}"`, "RTM_GETLINK", ENODEV);
    return new DataView(link.body.buffer, link.body.byteOffset).getInt32(4, true);
  }

  /** Brings `dev` up. */
  setLinkUp(dev: string): void {
    this.#setLink(dev, "bring up", (b) => b, IFF_UP, IFF_UP);
  }

  /**
   * Sets IFLA_INET6_ADDR_GEN_MODE  /**
   * Sets IFLA_INET6_ADDR_GEN_MODE to "none": no link-local address, hence no router solicitations, DAD or MLD noise
   * from the kernel on the device. Call it before `setLinkUp`. A kernel without IPv6 makes this a no-op.
   */
  disableIpv6AddrGen(dev: string): void {
    try {
      this.#setLink(
        dev,
        "disable IPv6 address generation on",
        (b) => b.begin(IFLA_AF_SPEC).begin(AF_INET6).u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE).end().end(),
        0,
        0,
      );
    } catch (e) {
      if (e instanceof OsError && e.errno === EAFNOSUPPORT) return;
      throw e;
    }
  }

  #setLink(dev: string, what: string, attrs: (b: MessageBuilder) => MessageBuilder, flags: number, change: number) {
    const index = this.#linkIndex(dev);
    const hdr = new Uint8Array(16);
    const v = new DataView(hdr.buffer);
    v.setInt32(4, index, true);
    v.setUint32(8, flags, true);
    v.setUint32(12, change, true);
    const b = attrs(new MessageBuilder(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK).fixed(hdr));
    this.#transact(b, () => `Cannot ${what} ${dev}`);
  }

  /** Interface names by index, from a dump like `ip link show`. */
  #linkNames(): Map<number, string> {
    const b = new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP).fixed(new Uint8Array(16));
    return new Map(
      this.#dump(b, RTM_NEWLINK, "links").map((m) => {
        const index = new DataView(m.body.buffer, m.body.byteOffset, m.body.length).getInt32(4, true);
        return [index, readString(attributes(m.body.subarray(16)).get(IFLA_IFNAME)) ?? ""];
      }),
    );
  }

  // ---- addresses ----

  /** Adds an address ("198.18.0.1/32", "2001:db8::1/128") to `dev`. IPv6 addresses skip DAD (IFA_F_NODAD). */
  addAddress(dev: string, cidr: string, options: AddAddressOptions = {}): void {
    const prefix = parsePrefix(cidr);
    const index = this.#linkIndex(dev);
    let flags = prefix.family === 6 ? IFA_F_NODAD : 0;
    if (options.noPrefixRoute) flags |= IFA_F_NOPREFIXROUTE;
    const hdr = new Uint8Array(8);
    hdr[0] = prefix.family === 4 ? AF_INET : AF_INET6;
    hdr[1] = prefix.prefixLength;
    hdr[2] = flags & 0xff;
    new DataView(hdr.buffer).setUint32(4, index, true);
    const b = new MessageBuilder(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
      .fixed(hdr)
      .attr(IFA_LOCAL, prefix.address)
      .attr(IFA_ADDRESS, prefix.address)
      .u32(IFA_FLAGS, flags);
    const text = formatPrefix(prefix);
    this.#transact(b, (errno) => {
      if (errno === EEXIST) return `Address ${text} already exists on dev ${dev}`;
      return `Cannot add address ${text} to dev ${dev}`;
    });
  }

  /** Every address, like `ip addr show`. */
  #addresses(): AddressInfo[] {
    const names = this.#linkNames();
    const b = new MessageBuilder(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP).fixed(new Uint8Array(8));
    return this.#dump(b, RTM_NEWADDR, "addresses").flatMap((m) => {
      const family = m.body[0] === AF_INET ? 4 : m.body[0] === AF_INET6 ? 6 : 0;
      if (family === 0) return [];
      const index = new DataView(m.body.buffer, m.body.byteOffset).getUint32(4, true);
      const attrs = attributes(m.body.subarray(8));
      const bytes = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
      if (!bytes) return [];
      return [{ index, dev: names.get(index) ?? "", family, address: ipToString(bytes), prefixLength: m.body[1]! }];
    });
  }

  // ---- routes ----

  /**
   * Adds a route. A "unicast" route with `dev` and no gateway is a device route (scope link). Throws RangeError
   * when `dev` has no address of the route's family (the kernel would accept a route it cannot source packets for).
   */
  addRoute(route: RouteSpec): void {
    this.#route(RTM_NEWROUTE, route);
  }

  deleteRoute(route: RouteSpec): void {
    this.#route(RTM_DELROUTE, route);
  }

  #route(type: number, route: RouteSpec): void {
    const add = type === RTM_NEWROUTE;
    const dst = parseNetwork(route.dst);
    const table = tableId(route.table ?? "main");
    const rtype = route.type ?? "unicast";
    const rtn = ROUTE_TYPES.indexOf(rtype);
    if (rtn < 0) throw new RangeError(`Unknown route type "${rtype}"`);
    const gateway = route.gateway === undefined ? undefined : parseAddress(route.gateway);
    if (gateway && gateway.family !== dst.family) {
      throw new RangeError(`Route ${route.dst}: gateway ${route.gateway} is not an IPv${dst.family} address`);
    }
    if (add && rtype === "unicast" && route.dev === undefined && gateway === undefined) {
      throw new TypeError(`Route ${route.dst}: a unicast route needs a dev or a gateway`);
    }
    const where = describeRoute(route, table);
    const index = route.dev === undefined ? undefined : this.#linkIndex(route.dev);
    if (add && route.dev !== undefined && rtype === "unicast") {
      const has = this.#addresses().some((a) => a.dev === route.dev && a.family === dst.family);
      if (!has) {
        throw new RangeError(
          `Cannot add route ${formatPrefix(dst)} on dev ${route.dev}: ${route.dev} has no IPv${dst.family} address ` +
            `(add one first)`,
        );
      }
    }
    const hdr = new Uint8Array(12);
    hdr[0] = dst.family === 4 ? AF_INET : AF_INET6;
    hdr[1] = dst.prefixLength;
    hdr[4] = table < 256 ? table : 0;
    hdr[5] = route.protocol ?? RTPROT_STATIC;
    hdr[6] = !add ? RT_SCOPE_NOWHERE : rtype === "unicast" && !gateway ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    hdr[7] = rtn;
    const b = new MessageBuilder(type, NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0))
      .fixed(hdr)
      .u32(RTA_TABLE, table);
    if (dst.prefixLength > 0) b.attr(RTA_DST, dst.address);
    if (index !== undefined) b.u32(RTA_OIF, index);
    if (gateway) b.attr(RTA_GATEWAY, gateway.address);
    if (route.metric !== undefined) b.u32(RTA_PRIORITY, route.metric);
    this.#transact(b, (errno) => {
      if (add && errno === EEXIST) {
        const existing = this.routes().find((r) =>
          r.dst === formatPrefix(dst) && r.table === table && (route.metric === undefined || r.metric === route.metric)
        );
        const on = existing?.dev ? ` on dev ${existing.dev}` : "";
        return `Route ${formatPrefix(dst)} already exists${on} (table ${tableName(table)})`;
      }
      if (add && errno === ENETUNREACH) return `Cannot add route ${where}: gateway ${route.gateway} is not reachable`;
      if (!add && errno === ESRCH) return `No route ${where} to delete`;
      return `Cannot ${add ? "add" : "delete"} route ${where}`;
    });
  }

  /** Every route of every table and family, like `ip route show table all` plus `ip -6 route show table all`. */
  routes(): RouteInfo[] {
    const names = this.#linkNames();
    const b = new MessageBuilder(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP).fixed(new Uint8Array(12));
    return this.#dump(b, RTM_NEWROUTE, "routes").flatMap((m) => {
      const body = m.body;
      const family = body[0] === AF_INET ? 4 : body[0] === AF_INET6 ? 6 : 0;
      if (family === 0) return [];
      const attrs = attributes(body.subarray(12));
      const dstBytes = attrs.get(RTA_DST) ?? new Uint8Array(family === 4 ? 4 : 16);
      const info: RouteInfo = {
        family,
        dst: `${ipToString(dstBytes)}/${body[1]}`,
        table: readU32(attrs.get(RTA_TABLE)) ?? body[4]!,
        type: ROUTE_TYPES[body[7]!] ?? "unspec",
        protocol: body[5]!,
        scope: body[6]!,
      };
      const oif = readU32(attrs.get(RTA_OIF));
      if (oif !== undefined) {
        info.ifindex = oif;
        const dev = names.get(oif);
        if (dev !== undefined) info.dev = dev;
      }
      const gw = attrs.get(RTA_GATEWAY);
      if (gw) info.gateway = ipToString(gw);
      const metric = readU32(attrs.get(RTA_PRIORITY));
      if (metric !== undefined) info.metric = metric;
      const prefsrc = attrs.get(RTA_PREFSRC);
      if (prefsrc) info.prefsrc = ipToString(prefsrc);
      return [info];
    });
  }

  // ---- transport ----

  /** Sends one request and collects replies until its ACK (or error); throws an OsError on a kernel error. */
  #transact(b: MessageBuilder, explain: (errno: number) => string): Message[] {
    const seq = this.#send(b);
    const out: Message[] = [];
    for (let i = 0; i < MAX_DUMP_DATAGRAMS; i++) {
      for (const m of this.#receive()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const { errno, kernelMessage } = parseError(m);
          if (errno === 0) return out;
          throw this.#error(errno, explain(errno), kernelMessage);
        }
        out.push({ ...m, body: m.body.slice() }); // the receive buffer is reused by the next datagram
        // A request without NLM_F_ACK (RTM_GETLINK by name) ends with its single answer.
        if (!(m.flags & NLM_F_MULTI)) return out;
      }
    }
    throw new Error("netlink: the kernel's answer never ended");
  }

  /** Sends a dump request and returns its messages of `type`. */
  #dump(b: MessageBuilder, type: number, what: string): Message[] {
    const seq = this.#send(b);
    const out: Message[] = [];
    for (let i = 0; i < MAX_DUMP_DATAGRAMS; i++) {
      for (const m of this.#receive()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_DONE) return out;
        if (m.type === NLMSG_ERROR) {
          const { errno, kernelMessage } = parseError(m);
          throw this.#error(errno, `Cannot list ${what}`, kernelMessage);
        }
        if (m.type === type) out.push({ ...m, body: m.body.slice() }); // the receive buffer is reused
      }
    }
    throw new Error(`netlink: the dump of ${what} never ended`);
  }

  #send(b: MessageBuilder): number {
    if (this.#closed) throw new TypeError("Netlink socket used after close()");
    this.#seq = (this.#seq + 1) >>> 0;
    const msg = b.finish(this.#seq);
    check(this.#libc, this.#libc.symbols.send(this.#fd, msg, BigInt(msg.length), 0), "send", (e) => {
      return `Cannot send a netlink request (${errnoName(e)})`;
    });
    return this.#seq;
  }

  #receive(): Generator<Message> {
    const buf = this.#recvBuf;
    for (let attempt = 0;; attempt++) {
      const n = this.#libc.symbols.recv(this.#fd, buf, BigInt(buf.length), 0);
      if (n >= 0) return messages(buf.subarray(0, n));
      const errno = this.#libc.errno();
      if (errno === 4 && attempt < 100) continue; // EINTR
      if (errno === 11) {
        throw new OsError(`netlink: no answer from the kernel within ${RECV_TIMEOUT_S} s`, "recv", errno);
      }
      throw new OsError(`Cannot receive a netlink answer (${errnoName(errno)})`, "recv", errno);
    }
  }

  /**
   * The error for a failed request: `what` already explains the expected conditions (EEXIST, ESRCH, ...); a message
   * starting "Cannot" gets the errno and the kernel's extended-ack text appended.
   */
  #error(errno: number, what: string, kernelMessage: string | undefined): OsError {
    let message = what;
    if (isPermissionErrno(errno)) message += ": tp needs root or CAP_NET_ADMIN to change the network configuration";
    else if (what.startsWith("Cannot")) message += ` (${errnoName(errno)}${kernelMessage ? `: ${kernelMessage}` : ""})`;
    return new OsError(message, "rtnetlink", errno);
  }
}

function tableId(table: Table): number {
  if (typeof table === "string") {
    const id = TABLES[table];
    if (id === undefined) {
      throw new RangeError(`Unknown routing table "${table}": use main, local, default or a number`);
    }
    return id;
  }
  if (!Number.isInteger(table) || table < 1 || table > 0xffffffff) {
    throw new RangeError(`Routing table ${table} is out of range: use an integer from 1 to 4294967295`);
  }
  return table;
}

function tableName(id: number): string {
  for (const [name, value] of Object.entries(TABLES)) if (value === id) return name;
  return String(id);
}

function describeRoute(route: RouteSpec, table: number): string {
  const via = route.gateway ? ` via ${route.gateway}` : "";
  const dev = route.dev ? ` on dev ${route.dev}` : "";
  const type = route.type && route.type !== "unicast" ? `${route.type} ` : "";
  return `${type}${route.dst}${via}${dev} (table ${tableName(table)})`;
}
