/**
 * ICMP echo ("ping") through the kernel's unprivileged ICMP sockets: `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)` and
 * its IPv6 twin (Linux 3.0+, net/ipv4/ping.c). Neither node nor Deno has them, so they are called through FFI. The
 * kernel allows them to processes whose group is in `net.ipv4.ping_group_range` (for both families; per network
 * namespace); container runtimes set that range for pods.
 *
 * On such a socket the kernel writes the echo identifier (the socket's own "port") and the checksum; tp sends the
 * type, a sequence number of its own and the data, and matches each reply by its source address and sequence. One
 * socket per family serves every echo at once; a poll on a Deno worker thread waits for replies while any echo is
 * pending, and holds nothing while none is.
 */
import {
  AF_INET,
  AF_INET6,
  check,
  EACCES,
  EINTR,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  type Libc,
  openLibc,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
} from "./_libc.ts";
import { ipToString as formatAddress, parseAddress } from "../net/wire/address.ts";
import { errnoName, isPermissionErrno, OsError } from "./errors.ts";

const ECHO_REQUEST = { 4: 8, 6: 128 } as const; // RFC 792, RFC 4443 section 4.1
const ECHO_REPLY = { 4: 0, 6: 129 } as const;
const SOCKADDR_IN_LEN = 16;
const SOCKADDR_IN6_LEN = 28;
/** How long one poll waits before the loop looks whether echoes are still pending (it ends when none are). */
const POLL_MS = 100;
/** Largest echo payload: an IPv4 packet's 65535 bytes less its 20-byte header and the 8-byte ICMP header. */
export const MAX_ECHO_DATA = 65507;

export interface IcmpPingerOptions {
  /** libc bindings to use; by default the pinger opens its own and closes them in `close()`. */
  libc?: Libc;
}

interface Pending {
  resolve(data: Uint8Array | null): void;
  timer: ReturnType<typeof setTimeout>;
}

interface FamilySocket {
  fd: number;
  nextSeq: number;
}

/** Sends ICMP echo requests and waits for their replies. */
export class IcmpPinger {
  readonly #libc: Libc;
  readonly #ownLibc: boolean;
  readonly #sockets = new Map<4 | 6, FamilySocket>();
  /** Why a family's socket cannot be opened (the kernel's answer is the same until its settings change). */
  readonly #refused = new Map<4 | 6, OsError>();
  /** Echoes waiting for a reply, by `family|source address|sequence`. */
  readonly #pending = new Map<string, Pending>();
  readonly #scratch = new Uint8Array(65536);
  readonly #from = new Uint8Array(SOCKADDR_IN6_LEN);
  readonly #fromLen = new Uint8Array(4);
  #loop: Promise<void> | null = null;
  #closed = false;

  constructor(options: IcmpPingerOptions = {}) {
    this.#ownLibc = options.libc === undefined;
    this.#libc = options.libc ?? openLibc();
  }

  /** Echoes waiting for a reply now. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Sends one echo request with `data` to `destination` (an IPv4 or IPv6 address) and resolves with the reply's data,
   * or null when no reply came within `timeoutMs` (or the kernel could not send it: no route, a full buffer).
   * Rejects with an OsError when the kernel does not allow this process ICMP sockets (`errno` EACCES: its group is
   * outside net.ipv4.ping_group_range), and a SyntaxError for a bad address.
   */
  echo(destination: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array | null> {
    if (this.#closed) return Promise.reject(new TypeError("IcmpPinger.echo() called after close()"));
    if (data.length > MAX_ECHO_DATA) {
      return Promise.reject(new RangeError(`Echo data of ${data.length} bytes is over ${MAX_ECHO_DATA}`));
    }
    const { family, address } = parseAddress(destination);
    let sock: FamilySocket;
    try {
      sock = this.#socket(family);
    } catch (e) {
      return Promise.reject(e);
    }
    const from = formatAddress(address);
    let seq = sock.nextSeq;
    for (let i = 0; i < 65536 && this.#pending.has(`${family}|${from}|${seq}`); i++) seq = (seq + 1) & 0xffff;
    if (this.#pending.has(`${family}|${from}|${seq}`)) return Promise.resolve(null);
    sock.nextSeq = (seq + 1) & 0xffff;
    const key = `${family}|${from}|${seq}`;

    const message = new Uint8Array(8 + data.length);
    message[0] = ECHO_REQUEST[family];
    message[6] = seq >> 8;
    message[7] = seq & 0xff;
    message.set(data, 8);
    const to = sockaddr(family, address);
    const libc = this.#libc;
    let sent = -1;
    for (let attempt = 0; attempt < 100 && sent < 0; attempt++) {
      sent = libc.symbols.sendto(sock.fd, message, BigInt(message.length), 0, to, to.length);
      if (sent < 0 && libc.errno() !== EINTR) break;
    }
    // No route, a full socket buffer, a message too big: the echo is lost, as it would be on a network.
    if (sent < 0) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(key);
        resolve(null);
      }, timeoutMs);
      this.#pending.set(key, { resolve, timer });
      this.#loop ??= this.#run();
    });
  }

  /** Ends every pending echo (each resolves null), waits for the poll to return, and closes the sockets. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.resolve(null);
    }
    this.#pending.clear();
    await this.#loop;
    for (const s of this.#sockets.values()) this.#libc.symbols.close(s.fd);
    this.#sockets.clear();
    if (this.#ownLibc) this.#libc.close();
  }

  #socket(family: 4 | 6): FamilySocket {
    const open = this.#sockets.get(family);
    if (open) return open;
    const refused = this.#refused.get(family);
    if (refused) throw refused;
    const libc = this.#libc;
    try {
      const fd = check(
        libc,
        libc.symbols.socket(
          family === 4 ? AF_INET : AF_INET6,
          SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
          family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6,
        ),
        "socket",
        (errno) => refusedMessage(family, errno),
      );
      const s = { fd, nextSeq: crypto.getRandomValues(new Uint16Array(1))[0]! };
      this.#sockets.set(family, s);
      return s;
    } catch (e) {
      if (e instanceof OsError) this.#refused.set(family, e);
      throw e;
    }
  }

  /** Polls the sockets while echoes are pending. */
  async #run(): Promise<void> {
    const { pollAsync } = this.#libc.symbols;
    try {
      while (this.#pending.size > 0 && !this.#closed) {
        const socks = [...this.#sockets.entries()];
        const fds = new Uint8Array(8 * socks.length);
        const view = new DataView(fds.buffer);
        socks.forEach(([, s], i) => {
          view.setInt32(8 * i, s.fd, true);
          view.setInt16(8 * i + 4, POLLIN, true);
        });
        const n = await pollAsync(fds, BigInt(socks.length), POLL_MS);
        if (n <= 0 || this.#closed) continue;
        socks.forEach(([family, s], i) => {
          if (view.getInt16(8 * i + 6, true) !== 0) this.#drain(family, s.fd);
        });
      }
    } finally {
      this.#loop = null;
      // An echo sent while the loop was ending starts it again.
      if (this.#pending.size > 0 && !this.#closed) this.#loop = this.#run();
    }
  }

  /** Reads every reply queued on a socket and settles the echoes they answer. */
  #drain(family: 4 | 6, fd: number): void {
    const libc = this.#libc;
    const lenView = new DataView(this.#fromLen.buffer);
    for (let i = 0, interrupts = 0; i < 256; i++) {
      lenView.setUint32(0, this.#from.length, true);
      const n = libc.symbols.recvfrom(fd, this.#scratch, BigInt(this.#scratch.length), 0, this.#from, this.#fromLen);
      if (n < 0) {
        const errno = libc.errno();
        if (errno === EINTR && ++interrupts < 100) continue;
        return; // EAGAIN: all read; anything else (an ICMP error the kernel queued) ends this round
      }
      if (n < 8 || this.#scratch[0] !== ECHO_REPLY[family]) continue;
      const seq = (this.#scratch[6]! << 8) | this.#scratch[7]!;
      const from = formatAddress(this.#from.subarray(family === 4 ? 4 : 8, family === 4 ? 8 : 24));
      const key = `${family}|${from}|${seq}`;
      const p = this.#pending.get(key);
      if (!p) continue;
      this.#pending.delete(key);
      clearTimeout(p.timer);
      p.resolve(this.#scratch.slice(8, n));
    }
  }
}

/** struct sockaddr_in or sockaddr_in6 with port 0 (an ICMP socket takes no port on sendto). */
function sockaddr(family: 4 | 6, address: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(family === 4 ? SOCKADDR_IN_LEN : SOCKADDR_IN6_LEN);
  new DataView(out.buffer).setUint16(0, family === 4 ? AF_INET : AF_INET6, true);
  out.set(address, family === 4 ? 4 : 8);
  return out;
}

/** Why the kernel refused an ICMP socket, and the fix. */
function refusedMessage(family: 4 | 6, errno: number): string {
  const what = `Cannot open an ICMP${family === 6 ? "v6" : ""} echo socket (${errnoName(errno)})`;
  if (errno !== EACCES && !isPermissionErrno(errno)) return what;
  let range = "";
  try {
    range = Deno.readTextFileSync("/proc/sys/net/ipv4/ping_group_range").trim().replace(/\s+/g, " ");
  } catch { /* not readable: the message goes without it */ }
  return `${what}: this process's group (gid ${Deno.gid()}) is outside net.ipv4.ping_group_range` +
    `${range ? ` ("${range}")` : ""}; allow it with sysctl -w net.ipv4.ping_group_range="0 2147483647" ` +
    `(in a pod: the securityContext's sysctls)`;
}
