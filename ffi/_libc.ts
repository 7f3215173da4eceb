/**
 * The libc functions tp calls, declared once. Open them with `openLibc()` and pass the result to whatever needs it;
 * there is no module-level handle. Needs `--allow-ffi` (FFI is stable in Deno 2; `--unstable-ffi` is not needed).
 *
 * ABI note: `read`, `write`, `send`, `sendto` and `recv` return `ssize_t`; they are declared with an `i32` result,
 * which on x86-64 and aarch64 is the low half of the same register. The lengths tp uses are far below 2^31, and -1
 * stays -1, and an `i32` result avoids a BigInt per call on the packet path.
 */
import { OsError } from "./errors.ts";
import { errorMessage } from "../base/error_message.ts";

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  /** ioctl(fd, request, pointer) */
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  /** poll() on a Deno worker thread: returns a Promise and leaves the JS thread free. errno is not readable. */
  pollAsync: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  /** getsockopt(fd, level, name, value, socklen_t *len) */
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  /** sendmmsg(fd, struct mmsghdr *msgvec, vlen, flags) */
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  /** recvmsg(fd, struct msghdr *msg, flags) */
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** recvmmsg(fd, struct mmsghdr *msgvec, vlen, flags, struct timespec *timeout) */
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** sendto(fd, buf, len, flags, dest_addr, addrlen) */
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "i32" },
  /** recvfrom(fd, buf, len, flags, src_addr, socklen_t *addrlen) */
  recvfrom: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"], result: "i32" },
  /** getsockname(fd, addr, socklen_t *addrlen) */
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** sched_yield(): lets another task runnable on this CPU run first */
  sched_yield: { parameters: [], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The libc bindings: call `symbols.*`, read `errno()` right after a call that returned -1, `close()` when done. */
export interface Libc {
  readonly symbols: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
  /** errno of the JS thread, valid right after a synchronous call that failed. */
  errno(): number;
  close(): void;
}

/** Linux constants, each from the header named beside it (x86-64 and aarch64 agree on all of them). */
export const O_RDWR = 0o2; // asm-generic/fcntl.h
export const O_NONBLOCK = 0o4000; // asm-generic/fcntl.h
export const O_CLOEXEC = 0o2000000; // asm-generic/fcntl.h
export const POLLIN = 0x1; // asm-generic/poll.h
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EFD_CLOEXEC = O_CLOEXEC; // linux/eventfd.h
export const EFD_NONBLOCK = O_NONBLOCK;
export const EINTR = 4;
export const EAGAIN = 11;
export const AF_NETLINK = 16; // linux/socket.h
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const SOL_SOCKET = 1; // asm-generic/socket.h
export const SO_RCVTIMEO = 20; // SO_RCVTIMEO_OLD, a struct timeval of two longs on 64-bit
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32; // root (CAP_NET_ADMIN): past net.core.wmem_max
export const SO_RCVBUFFORCE = 33;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;
export const AF_INET = 2; // linux/socket.h
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2; // linux/net.h
export const SOCK_NONBLOCK = O_NONBLOCK;
export const EMSGSIZE = 90; // asm-generic/errno.h
export const ENOBUFS = 105;
export const ECONNREFUSED = 111;
export const EACCES = 13;
export const EPROTONOSUPPORT = 93;
export const IPPROTO_ICMP = 1; // linux/in.h
export const IPPROTO_ICMPV6 = 58; // linux/in6.h
export const NETLINK_ROUTE = 0;
export const SOL_NETLINK = 270;
export const NETLINK_EXT_ACK = 11; // linux/netlink.h: error messages from the kernel in NLMSGERR_ATTR_MSG
export const NETLINK_GET_STRICT_CHK = 12;

/** Opens libc and returns its bindings. Throws a clear error where FFI is not allowed. */
export function openLibc(): Libc {
  if (Deno.build.os !== "linux") {
    throw new Error(`tp's libc bindings support Linux only, not ${Deno.build.os}`);
  }
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new Error("tp needs FFI access: run deno with --allow-ffi (or --allow-all)", { cause: e });
    }
    throw new Error(`Cannot load libc.so.6: ${errorMessage(e)}`, { cause: e });
  }
  const loc = lib.symbols.__errno_location();
  if (loc === null) throw new Error("__errno_location() returned NULL");
  const errnoView = new Deno.UnsafePointerView(loc);
  return {
    symbols: lib.symbols,
    errno: () => errnoView.getInt32(0),
    close: () => lib.close(),
  };
}

/** A NUL-terminated copy of a string, for `const char *` parameters. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Throws an OsError with `message` when `result` is -1, reading errno first. Returns the result otherwise. */
export function check(
  libc: Libc,
  result: number,
  syscall: string,
  message: (errno: number) => string,
): number {
  if (result !== -1) return result;
  const errno = libc.errno();
  throw new OsError(message(errno), syscall, errno);
}
