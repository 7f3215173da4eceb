/**
 * tp's operating-system layer: the TUN device and (on Linux) rtnetlink, through Deno FFI into libc.
 * Needs `--allow-ffi` at run time (FFI is stable in Deno 2; no `--unstable-ffi`).
 */
export type { TunDevice, TunStats } from "./tun.ts";
export { MemoryTun, type MemoryTunOptions } from "./tun_memory.ts";
export {
  createTun,
  LinuxTun,
  type LinuxTunOptions,
  tunDeviceProblem,
  validateInterfaceName,
  wrapTunFd,
} from "./tun_linux.ts";
export {
  type AddAddressOptions,
  Netlink,
  type RouteInfo,
  type RouteSpec,
  type RouteType,
  type Table,
} from "./netlink.ts";
export { errnoName, NEED_NET_ADMIN, OsError } from "./errors.ts";
export { type Libc, openLibc } from "./_libc.ts";
export {
  ECONNREFUSED,
  type UdpConnectOptions,
  UdpPoller,
  type UdpPollerOptions,
  UdpSocket,
  type UdpSocketStats,
} from "./udp_socket.ts";
