/**
 * The one error class of `ffi/`: an operating-system call that failed, with a message written for the person running
 * tp (what failed and what to do), so the CLI can print `error.message` as is.
 */

/** Linux errno names for the values tp's calls can meet (include/uapi/asm-generic/errno-base.h, errno.h). */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  28: "ENOSPC",
  34: "ERANGE",
  61: "ENODATA",
  90: "EMSGSIZE",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  110: "ETIMEDOUT",
  113: "EHOSTUNREACH",
};

/** The symbolic name of an errno value ("EPERM"), or "errno N" for one tp does not know. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** The errno value of a symbolic name, for comparisons in callers (`errnoValue("EEXIST") === 17`). */
export function errnoValue(name: string): number {
  for (const [value, n] of Object.entries(ERRNO_NAMES)) {
    if (n === name) return Number(value);
  }
  throw new RangeError(`Unknown errno name "${name}"`);
}

/**
 * A system call (or a netlink request) that failed. `message` is complete and meant for people; `code` ("EPERM"),
 * `errno` and `syscall` are for programs that want to react to one condition.
 */
export class OsError extends Error {
  override name = "OsError";
  /** The errno value, e.g. 1. */
  readonly errno: number;
  /** The errno name, e.g. "EPERM". */
  readonly code: string;
  /** What was called: "open /dev/net/tun", "ioctl TUNSETIFF", "RTM_NEWROUTE". */
  readonly syscall: string;

  constructor(message: string, syscall: string, errno: number, options?: ErrorOptions) {
    super(message, options);
    this.errno = errno;
    this.code = errnoName(errno);
    this.syscall = syscall;
  }
}

/** The advice shared by every "permission denied" on network configuration. */
export const NEED_NET_ADMIN = "tp needs root or CAP_NET_ADMIN to create its network interface";

/** True when an errno means the caller lacks the privilege (EPERM, EACCES). */
export function isPermissionErrno(errno: number): boolean {
  return errno === 1 || errno === 13;
}
