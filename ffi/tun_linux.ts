/**
 * A Linux TUN device (drivers/net/tun.c) behind the `TunDevice` interface, through FFI calls into libc.
 *
 * Reads: one `poll()` on a Deno worker thread (a nonblocking FFI symbol, so the JS thread stays free) over the TUN fd
 * and an eventfd that `close()` signals, then synchronous `read()` calls until EAGAIN or a full batch, into buffers
 * allocated once. Writes: synchronous `write()` calls, waiting in `poll(POLLOUT)` when the kernel queue is full.
 *
 * No segmentation offload (IFF_VNET_HDR): tp's daemon sets the MTU to 65535 instead, so the kernel hands over and
 * takes TCP segments of up to 64 KiB as plain packets. (An offload path was measured against that in
 * scripts/bench_stack.ts and removed: it was faster downloading, slower uploading.)
 */
import {
  check,
  cString,
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  type Libc,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  openLibc,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
} from "./_libc.ts";
import { isPermissionErrno, NEED_NET_ADMIN, OsError } from "./errors.ts";
import { newTunStats, type TunDevice, type TunStats } from "./tun.ts";

// include/uapi/linux/if_tun.h
const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int)
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_TUN_EXCL = 0x8000;
// include/uapi/linux/sockios.h, include/uapi/linux/if.h
const SIOCGIFMTU = 0x8921;
const SIOCSIFMTU = 0x8922;
const SIOCSIFTXQLEN = 0x8943;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;
/** The largest IP packet (IPv4 total length, IPv6 payload length without jumbograms). */
const MAX_IP_PACKET = 65535;

/** The name template tp uses when the caller gives none: the kernel replaces %d with the first free number. */
export const DEFAULT_NAME_TEMPLATE = "tp%d";
export const DEFAULT_MTU = 1500;
export const DEFAULT_BATCH_SIZE = 128;
/** How long `write` waits for room in a full kernel queue before it counts the packet as dropped. */
const WRITE_WAIT_MS = 1000;
/** Consecutive wake-ups without a packet after which `read` gives up (a kernel or tp bug, not normal operation). */
const MAX_SPURIOUS_WAKEUPS = 100_000;

export interface LinuxTunOptions {
  /** Interface name or template with one "%d" (default "tp%d"); at most 15 bytes. */
  name?: string;
  /** MTU to set on the interface (default 1500, range 68..65535). */
  mtu?: number;
  /** Most packets one `read` returns (default 128). */
  batchSize?: number;
  /**
   * Packets the kernel queues for `read` before it drops (the interface's txqueuelen, the size of the TUN driver's
   * ring; the driver's default is 500). Unset: left as the kernel made it.
   */
  txQueueLength?: number;
  /** libc bindings to use; by default the device opens its own and closes them with itself. */
  libc?: Libc;
}

/** Checks an interface name or name template the way the kernel's dev_valid_name() does, with clear errors. */
export function validateInterfaceName(name: string): void {
  const bytes = new TextEncoder().encode(name).length;
  if (bytes === 0) throw new RangeError("Interface name is empty");
  if (bytes >= IFNAMSIZ) {
    throw new RangeError(`Interface name "${name}" is too long: ${bytes} bytes, at most ${IFNAMSIZ - 1}`);
  }
  if (name === "." || name === ".." || /[\s/:]/.test(name)) {
    throw new RangeError(
      `Interface name "${name}" is invalid: it must not be "." or ".." or contain "/", ":" or spaces`,
    );
  }
  const percents = name.split("%").length - 1;
  if (percents > 1 || (percents === 1 && !name.includes("%d"))) {
    throw new RangeError(`Interface name template "${name}" is invalid: use at most one "%d" and no other "%"`);
  }
}

/**
 * Creates a TUN interface (IFF_TUN | IFF_NO_PI, non-blocking, close-on-exec) and sets its MTU. The interface is
 * down and has no address; configure it with `Netlink`. It disappears when the device is closed or the process ends.
 */
export function createTun(options: LinuxTunOptions = {}): LinuxTun {
  const template = options.name ?? DEFAULT_NAME_TEMPLATE;
  validateInterfaceName(template);
  const mtu = options.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > MAX_IP_PACKET) {
    throw new RangeError(`MTU ${mtu} is out of range: use an integer from 68 to 65535`);
  }
  const qlen = options.txQueueLength;
  if (qlen !== undefined && (!Number.isInteger(qlen) || qlen < 1 || qlen > 65536)) {
    throw new RangeError(`Transmit queue length ${qlen} is out of range: use an integer from 1 to 65536`);
  }
  const ownLibc = options.libc === undefined;
  const libc = options.libc ?? openLibc();
  let fd = -1;
  try {
    fd = libc.symbols.open(cString("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
    check(libc, fd, "open /dev/net/tun", openTunMessage);
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(new TextEncoder().encode(template));
    let flags = IFF_TUN | IFF_NO_PI;
    // Without %d the name is exact: fail with EBUSY if it exists instead of attaching to someone else's device.
    if (!template.includes("%d")) flags |= IFF_TUN_EXCL;
    new DataView(ifr.buffer).setUint16(16, flags, true);
    check(libc, libc.symbols.ioctl(fd, BigInt(TUNSETIFF), ifr), "ioctl TUNSETIFF", (e) => setIffMessage(e, template));
    const name = new TextDecoder().decode(ifr.subarray(0, ifr.indexOf(0)));
    if (mtu !== interfaceMtu(libc, name)) setInterfaceMtu(libc, name, mtu);
    if (options.txQueueLength !== undefined) setTxQueueLength(libc, name, options.txQueueLength);
    return new LinuxTun(libc, ownLibc, fd, name, mtu, options);
  } catch (e) {
    if (fd >= 0) libc.symbols.close(fd);
    if (ownLibc) libc.close();
    throw e;
  }
}

/**
 * Wraps an already configured TUN file descriptor (e.g. one handed over by a privileged helper). The fd must have
 * been opened non-blocking, with IFF_NO_PI and without IFF_VNET_HDR. The device owns the fd from now on.
 */
export function wrapTunFd(fd: number, name: string, options: Omit<LinuxTunOptions, "name"> = {}): LinuxTun {
  validateInterfaceName(name);
  const ownLibc = options.libc === undefined;
  const libc = options.libc ?? openLibc();
  try {
    return new LinuxTun(libc, ownLibc, fd, name, options.mtu ?? interfaceMtu(libc, name), options);
  } catch (e) {
    if (ownLibc) libc.close();
    throw e;
  }
}

/** The Linux TUN device. Construct with `createTun` or `wrapTunFd`. */
export class LinuxTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly batchSize: number;
  readonly stats: TunStats = newTunStats();

  readonly #libc: Libc;
  readonly #ownLibc: boolean;
  readonly #fd: number;
  readonly #eventFd: number;
  /** struct pollfd[2]: the TUN fd and the eventfd close() signals. */
  readonly #pollFds = new Uint8Array(16);
  readonly #pollOut = new Uint8Array(8);
  /** Read buffers, each a view of one allocation. */
  readonly #buffers: Uint8Array<ArrayBuffer>[] = [];
  #reading = false;
  #closed = false;
  #released = false;

  /** @internal Use `createTun` or `wrapTunFd`. */
  constructor(libc: Libc, ownLibc: boolean, fd: number, name: string, mtu: number, options: LinuxTunOptions) {
    this.#libc = libc;
    this.#ownLibc = ownLibc;
    this.#fd = fd;
    this.name = name;
    this.mtu = mtu;
    this.batchSize = Math.max(options.batchSize ?? DEFAULT_BATCH_SIZE, 1);
    if (!Number.isInteger(this.batchSize) || this.batchSize > 4096) {
      throw new RangeError(`Batch size ${options.batchSize} is out of range: use an integer from 1 to 4096`);
    }
    // One spare byte per buffer shows a packet longer than expected (truncated reads are drops, not packets).
    const bufferLen = mtu + 1;
    const pool = new ArrayBuffer(bufferLen * this.batchSize);
    for (let i = 0; i < this.batchSize; i++) this.#buffers.push(new Uint8Array(pool, i * bufferLen, bufferLen));
    this.#eventFd = check(
      libc,
      libc.symbols.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
      "eventfd",
      (e) => `Cannot create the eventfd that wakes ${name}'s reader (${describe(e)})`,
    );
    const pfd = new DataView(this.#pollFds.buffer);
    pfd.setInt32(0, fd, true);
    pfd.setInt16(4, POLLIN, true);
    pfd.setInt32(8, this.#eventFd, true);
    pfd.setInt16(12, POLLIN, true);
    const out = new DataView(this.#pollOut.buffer);
    out.setInt32(0, fd, true);
    out.setInt16(4, POLLOUT, true);
  }

  /** The file descriptor, e.g. to hand to a helper process. Owned by the device: do not close it. */
  get fd(): number {
    return this.#fd;
  }

  async read(): Promise<Uint8Array[]> {
    if (this.#reading) throw new TypeError(`${this.name}: read() called while another read() is pending`);
    if (this.#closed) return [];
    this.#reading = true;
    try {
      for (let wakeups = 0; wakeups < MAX_SPURIOUS_WAKEUPS; wakeups++) {
        // Always poll first, even with packets queued: the await is a real trip through the event loop, so a
        // flood of packets cannot starve timers and other I/O of the JS thread.
        await this.#libc.symbols.pollAsync(this.#pollFds, 2n, -1);
        if (this.#closed) return [];
        const packets = this.#drain();
        if (packets.length > 0) return packets;
        const revents = new DataView(this.#pollFds.buffer).getInt16(6, true);
        if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
          throw new OsError(`${this.name} failed (poll revents 0x${revents.toString(16)}): was it deleted?`, "poll", 5);
        }
      }
      throw new Error(`${this.name}: poll() woke ${MAX_SPURIOUS_WAKEUPS} times without a packet`);
    } finally {
      this.#reading = false;
      if (this.#closed) this.#release();
    }
  }

  /** Reads until EAGAIN or a full batch. */
  #drain(): Uint8Array[] {
    const out: Uint8Array[] = [];
    const { read } = this.#libc.symbols;
    const fd = this.#fd;
    for (let interrupts = 0; out.length < this.batchSize;) {
      // A truncated read keeps its buffer for the next packet.
      const buf = this.#buffers[out.length]!;
      const n = read(fd, buf, BigInt(buf.length));
      if (n < 0) {
        const errno = this.#libc.errno();
        if (errno === EAGAIN) break;
        if (errno === EINTR && ++interrupts < 100) continue;
        throw new OsError(`Reading from ${this.name} failed (${describe(errno)}): was it deleted?`, "read", errno);
      }
      if (n >= buf.length) {
        this.stats.readDrops++; // longer than the buffer: truncated
        continue;
      }
      out.push(buf.subarray(0, n));
    }
    this.stats.readPackets += out.length;
    return out;
  }

  write(packets: readonly Uint8Array[]): number {
    if (this.#closed) throw new TypeError(`${this.name}: write() called after close()`);
    const { write } = this.#libc.symbols;
    let written = 0;
    for (const packet of packets) {
      for (let attempt = 0;; attempt++) {
        const n = write(this.#fd, packet, BigInt(packet.length));
        if (n >= 0) {
          written++;
          break;
        }
        const errno = this.#libc.errno();
        if (errno === EAGAIN && attempt < 2 && this.#waitWritable()) continue;
        if (errno === EINTR && attempt < 100) continue;
        if (errno === 9 || errno === 77) { // EBADF, EBADFD: the device is gone
          throw new OsError(`Writing to ${this.name} failed (${describe(errno)}): was it deleted?`, "write", errno);
        }
        this.stats.writeDrops++; // EINVAL, EMSGSIZE, EIO, or EAGAIN after waiting: the packet is lost
        break;
      }
    }
    this.stats.writtenPackets += written;
    return written;
  }

  /** Waits (synchronously, bounded) for room in the kernel queue. */
  #waitWritable(): boolean {
    return this.#libc.symbols.poll(this.#pollOut, 1n, WRITE_WAIT_MS) > 0;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#reading) {
      // Wake the pending poll(); it holds its own reference to the TUN file until it returns, and read()'s
      // finally releases the rest. Closing the TUN fd now already makes the name unusable for new opens.
      const one = new Uint8Array(8);
      one[0] = 1;
      this.#libc.symbols.write(this.#eventFd, one, 8n);
      this.#libc.symbols.close(this.#fd);
    } else {
      this.#libc.symbols.close(this.#fd);
      this.#release();
    }
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#libc.symbols.close(this.#eventFd);
    if (this.#ownLibc) this.#libc.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads an interface's MTU with SIOCGIFMTU on a throwaway socket. */
function interfaceMtu(libc: Libc, name: string): number {
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name));
  ifreqCall(libc, SIOCGIFMTU, ifr, `Cannot read the MTU of ${name}`);
  return new DataView(ifr.buffer).getInt32(16, true);
}

/** Sets an interface's MTU with SIOCSIFMTU (the TUN driver has no ioctl of its own for it). */
function setInterfaceMtu(libc: Libc, name: string, mtu: number): void {
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name));
  new DataView(ifr.buffer).setInt32(16, mtu, true);
  ifreqCall(libc, SIOCSIFMTU, ifr, `Cannot set the MTU of ${name} to ${mtu}`);
}

/** Sets an interface's txqueuelen with SIOCSIFTXQLEN (for a TUN, the ring of packets waiting for `read`). */
function setTxQueueLength(libc: Libc, name: string, length: number): void {
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name));
  new DataView(ifr.buffer).setInt32(16, length, true);
  ifreqCall(libc, SIOCSIFTXQLEN, ifr, `Cannot set the transmit queue length of ${name} to ${length}`);
}

function ifreqCall(libc: Libc, request: number, ifr: Uint8Array<ArrayBuffer>, what: string): void {
  const AF_INET = 2, SOCK_DGRAM = 2;
  const sock = check(libc, libc.symbols.socket(AF_INET, SOCK_DGRAM | O_CLOEXEC, 0), "socket", (e) => {
    return `${what}: no socket for the request (${describe(e)})`;
  });
  try {
    check(libc, libc.symbols.ioctl(sock, BigInt(request), ifr), "ioctl", (e) => {
      return isPermissionErrno(e) ? `${what}: ${NEED_NET_ADMIN}` : `${what} (${describe(e)})`;
    });
  } finally {
    libc.symbols.close(sock);
  }
}

/** Why this machine has no usable TUN device node (a one-line cause and fix), or null when /dev/net/tun is there. */
export function tunDeviceProblem(): string | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.statSync("/dev/net/tun").isCharDevice) return null;
    return "/dev/net/tun is not a character device: remove it and load the tun module (modprobe tun)";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return openTunMessage(2);
    return null; // opening it says more (createTun)
  }
}

function openTunMessage(errno: number): string {
  if (isPermissionErrno(errno)) return NEED_NET_ADMIN;
  if (errno === 2) {
    return "/dev/net/tun is missing: load the tun module (modprobe tun), or in a container run with --device /dev/net/tun";
  }
  if (errno === 19 || errno === 6) {
    return "/dev/net/tun exists but the tun driver is not loaded: load the tun module (modprobe tun)";
  }
  return `Cannot open /dev/net/tun (${describe(errno)})`;
}

function setIffMessage(errno: number, template: string): string {
  if (isPermissionErrno(errno)) return NEED_NET_ADMIN;
  if (errno === 16) {
    return `A network interface named "${template}" already exists: choose another name, or delete it if an ` +
      `earlier tp left it behind (ip link delete ${template})`;
  }
  if (errno === 22) {
    return `Cannot create a TUN interface named "${template}": the name is taken by a device that is not a TUN, ` +
      "or the kernel rejected it";
  }
  if (errno === 23 || errno === 28) return `Cannot create "${template}": the kernel ran out of interface names`;
  return `Cannot create a TUN interface named "${template}" (${describe(errno)})`;
}

/** "EPERM, errno 1" style detail for messages about rarer failures. */
function describe(errno: number): string {
  return new OsError("", "", errno).code + `, errno ${errno}`;
}
