/**
 * tp's operating-system layer: the TUN device and (on Linux) rtnetlink, through Deno FFI into libc.
 * Needs `--allow-ffi` at run time (FFI is stable in Deno 2; no `--unstable-ffi`).
 */
export type { TunDevice, TunStats } from "./tun.ts";
export { MemoryTun, type MemoryTunOptions } from "./tun_memory.ts";
export { createTun, LinuxTun, type LinuxTunOptions, validateInterfaceName, wrapTunFd } from "./tun_linux.ts";
export { errnoName, OsError } from "./errors.ts";
export { type Libc, openLibc } from "./_libc.ts";
