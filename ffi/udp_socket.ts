/**
 * Connected UDP sockets through FFI into libc, for the one thing `node:dgram` under Deno does not do: report the
 * destination's ICMP port unreachable. On a connected UDP socket Linux turns that ICMP error into a pending socket
 * error (`sk_err`, see `__udp4_lib_err` in net/ipv4/udp.c) that the next `recv()` or `send()` returns as ECONNREFUSED.
 *
 * Every socket is opened through a `UdpPoller`, which waits for all of its sockets in ONE `poll()` on a Deno worker
 * thread (a nonblocking FFI symbol), woken through an eventfd when its set of sockets changes. One poll per socket
 * would not do: Deno runs nonblocking FFI calls on a pool of 32 blocking threads (measured on Deno 2.9: a 33rd
 * pending `poll()` never starts), shared with file system calls and DNS lookups, so 32 idle UDP flows would stall
 * the whole process.
 *
 * Receiving: when a socket is readable the poller reads its datagrams (synchronous `recvmmsg()` of up to 16 until
 * EAGAIN, at most `batchSize` per wake) into a queue of the socket's own, which `receive()` empties. A socket whose queue holds
 * `maxQueuedBytes` is left out of the poll until `receive()` takes from it, so the kernel's socket buffer fills and
 * drops, as it would for any slow UDP reader. Sending: a synchronous `send()`; a full socket buffer drops. Each socket
 * keeps its ICMP errors in its error queue too (`_udp_error_queue.ts`), where a refusal that a partial sendmmsg() took
 * is read back.
 */
import {
  AF_INET,
  AF_INET6,
  check,
  EAGAIN,
  ECONNREFUSED,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  EMSGSIZE,
  ENOBUFS,
  type Libc,
  openLibc,
  POLLERR,
  POLLIN,
  POLLNVAL,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
} from "./_libc.ts";
import { parseAddress } from "../net/wire/address.ts";
import { errnoName, OsError } from "./errors.ts";
import { enableErrorQueue, ErrorQueueReader } from "./_udp_error_queue.ts";

export { ECONNREFUSED };

/** Room for any UDP payload: 65535 - 8 (UDP header) - 20 (IPv4 header) or - 0 (IPv6, no jumbograms). */
const RECEIVE_BUFFER = 65536;
const DEFAULT_BATCH_SIZE = 256;
const DEFAULT_MAX_QUEUED_BYTES = 512 * 1024;
/**
 * The receive buffer each socket asks for. Linux's default (net.core.rmem_default, 208 KiB) holds about 90 datagrams
 * of 1,200 bytes (each is charged its skb's truesize, about 2.3 KiB), 2 ms at 500 Mbit/s: on a busy machine the
 * poller's thread waits longer than that for a CPU, and the kernel dropped 7-8 % of a 500 Mbit/s flow there
 * (UdpRcvbufErrors). 1 MiB (the kernel doubles it for its bookkeeping) holds about 900, 17 ms at that rate. It costs
 * memory only while datagrams wait in it.
 */
const DEFAULT_RECEIVE_BUFFER_BYTES = 1 << 20;
/** Consecutive failed `poll()` calls (errno is not readable there) after which the poller gives up. */
const MAX_POLL_FAILURES = 1000;
/**
 * `sendMany` sends at most this many datagrams, and at most SEND_BATCH_BYTES of them, per sendmmsg(). Each batch
 * reaches the destination's socket in one go, before its reader runs: half of Linux's default receive buffer
 * (net.core.rmem_default, 208 KiB, charged about 2.3 KiB per 1,200-byte datagram) is about 45 of them.
 */
const SEND_BATCH = 32;
/** Most datagrams one recvmmsg() reads: 16 buffers of RECEIVE_BUFFER, 1 MiB for the process. */
const RECEIVE_BATCH = 16;
const SEND_BATCH_BYTES = 65536;
const MMSGHDR_LEN = 64; // struct mmsghdr on 64-bit Linux: struct msghdr (56 bytes), unsigned int msg_len, padding
const IOVEC_LEN = 16; // struct iovec: void *iov_base, size_t iov_len
const SOCKADDR_IN_LEN = 16; // struct sockaddr_in, linux/in.h
const SOCKADDR_IN6_LEN = 28; // struct sockaddr_in6, linux/in6.h

export interface UdpPollerOptions {
  /** libc bindings to use; by default the poller opens its own and closes them in `close()`. */
  libc?: Libc;
  /** Most datagrams read from one socket per wake-up, so one busy flow cannot starve the others (default 256). */
  batchSize?: number;
}

export interface UdpConnectOptions {
  /** Received bytes a socket queues before it stops reading and lets the kernel drop (default 512 KiB). */
  maxQueuedBytes?: number;
  /**
   * The kernel receive buffer to ask for (SO_RCVBUF; default 1 MiB). With CAP_NET_ADMIN it is set past
   * net.core.rmem_max (SO_RCVBUFFORCE); without, the kernel caps it there.
   */
  receiveBufferBytes?: number;
}

/** What `UdpSocket.sendMany` did with the datagrams from `start`. */
export interface SendManyResult {
  /** Datagrams the kernel took. */
  sent: number;
  /** Datagrams dropped for a full socket buffer (EAGAIN, ENOBUFS; counted in `stats.sendDrops` too). */
  dropped: number;
  /**
   * The datagram the kernel refused with an error, and the error (as `send` throws it). `sendMany` stops there: the
   * datagrams after `index` were not sent.
   */
  failed?: { index: number; error: OsError };
}

/** Counters of one socket. */
export interface UdpSocketStats {
  sentDatagrams: number;
  receivedDatagrams: number;
  /** Datagrams `send()` dropped because the socket buffer was full (EAGAIN, ENOBUFS). */
  sendDrops: number;
}

/** Opens connected UDP sockets and waits for all of them in one `poll()`. */
export class UdpPoller {
  readonly #libc: Libc;
  readonly #ownLibc: boolean;
  readonly #batchSize: number;
  readonly #eventFd: number;
  readonly #sockets = new Set<UdpSocket>();
  /** The sockets of the pending poll, in pollfd order after the eventfd. */
  #polled: UdpSocket[] = [];
  /** struct pollfd[]: the eventfd, then `#polled`. */
  #pollFds = new Uint8Array(8 * 16);
  /** File descriptors of sockets closed while a poll may still watch them: closed once it returns. */
  #deferredClose: number[] = [];
  #receiveVector: MessageVector | undefined;
  #sendVector: MessageVector | undefined;
  #errorQueue: ErrorQueueReader | undefined;
  #dirty = true;
  #woken = false;
  #loop: Promise<void> | null = null;
  #closed = false;
  #released = false;

  constructor(options: UdpPollerOptions = {}) {
    this.#batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isInteger(this.#batchSize) || this.#batchSize < 1) {
      throw new RangeError(`Batch size ${options.batchSize} is out of range: use a positive integer`);
    }
    this.#ownLibc = options.libc === undefined;
    this.#libc = options.libc ?? openLibc();
    try {
      this.#eventFd = check(
        this.#libc,
        this.#libc.symbols.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
        "eventfd",
        (e) => `Cannot create the eventfd that wakes the UDP poller (${describe(e)})`,
      );
    } catch (e) {
      if (this.#ownLibc) this.#libc.close();
      throw e;
    }
  }

  /** Open sockets. */
  get size(): number {
    return this.#sockets.size;
  }

  /**
   * Opens a UDP socket (IPv4 or IPv6 by the address; non-blocking, close-on-exec), binds it to an ephemeral port on
   * every local address and connects it to `remote`: it then sends only there and receives only from there. Throws
   * an OsError when the kernel refuses (ENETUNREACH: no route), a SyntaxError for a bad address.
   */
  connect(remote: { hostname: string; port: number }, options: UdpConnectOptions = {}): UdpSocket {
    if (this.#closed) throw new TypeError("UdpPoller.connect() called after close()");
    const { hostname, port } = remote;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new RangeError(`UDP port ${port} is out of range: use an integer from 1 to 65535`);
    }
    const { family, address } = parseAddress(hostname);
    const libc = this.#libc;
    const what = `UDP socket to ${family === 6 ? `[${hostname}]` : hostname}:${port}`;
    const fd = check(
      libc,
      libc.symbols.socket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
      "socket",
      (e) => `Cannot open a ${what} (${describe(e)})`,
    );
    try {
      setReceiveBuffer(libc, fd, options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER_BYTES);
      enableErrorQueue(libc, fd, family); // a refusal a partial sendmmsg() took stays readable (_udp_error_queue.ts)
      const any = sockaddr(family, new Uint8Array(family === 4 ? 4 : 16), 0);
      check(libc, libc.symbols.bind(fd, any, any.length), "bind", (e) => `Cannot bind a ${what} (${describe(e)})`);
      const to = sockaddr(family, address, port);
      check(
        libc,
        libc.symbols.connect(fd, to, to.length),
        "connect",
        (e) => `Cannot connect a ${what} (${describe(e)})`,
      );
      const local = new Uint8Array(SOCKADDR_IN6_LEN);
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, local.length, true);
      check(libc, libc.symbols.getsockname(fd, local, len), "getsockname", (e) => `${what}: ${describe(e)}`);
      const localPort = new DataView(local.buffer).getUint16(2);
      const socket = new UdpSocket(this, fd, { hostname, port }, localPort, options.maxQueuedBytes);
      this.#sockets.add(socket);
      this.#changed();
      return socket;
    } catch (e) {
      libc.symbols.close(fd);
      throw e;
    }
  }

  /** Closes every socket, waits for the pending poll to return and releases the eventfd (and libc, if its own). */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const s of [...this.#sockets]) s.close();
    }
    await this.#loop;
    this.#release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal The libc bindings, for the sockets' synchronous calls. */
  get libc(): Libc {
    return this.#libc;
  }

  /** @internal The buffers of `sendMany`, made on first use and shared by every socket (all calls are synchronous). */
  get sendVector(): MessageVector {
    return this.#sendVector ??= new MessageVector(SEND_BATCH, SEND_BATCH_BYTES);
  }

  /** @internal The reader of the sockets' error queues, made on first use and shared (all calls are synchronous). */
  get errorQueue(): ErrorQueueReader {
    return this.#errorQueue ??= new ErrorQueueReader(this.#libc);
  }

  /** @internal A socket closed: forget it; its fd is closed now, or after the pending poll if one may watch it. */
  remove(socket: UdpSocket, fd: number): void {
    this.#sockets.delete(socket);
    if (this.#loop === null) this.#libc.symbols.close(fd);
    else this.#deferredClose.push(fd);
    this.#changed();
  }

  /** @internal The set of sockets to poll changed (one opened, closed, paused or resumed). */
  changed(): void {
    this.#changed();
  }

  #changed(): void {
    this.#dirty = true;
    if (this.#loop === null) {
      if (this.#sockets.size > 0) this.#loop = this.#run();
      return;
    }
    if (this.#woken) return;
    this.#woken = true;
    const one = new Uint8Array(8);
    one[0] = 1;
    this.#libc.symbols.write(this.#eventFd, one, 8n);
  }

  /** Polls while there are sockets; ends when the last one closes. */
  async #run(): Promise<void> {
    const { pollAsync, read } = this.#libc.symbols;
    const counter = new Uint8Array(8);
    let failures = 0;
    try {
      while (this.#sockets.size > 0 || this.#deferredClose.length > 0) {
        // The first iteration runs synchronously inside connect(): start the poll from a fresh task instead.
        await Promise.resolve();
        const count = this.#build();
        const result = await pollAsync(this.#pollFds, BigInt(count), -1);
        for (const fd of this.#deferredClose.splice(0)) this.#libc.symbols.close(fd);
        if (result < 0) {
          if (++failures >= MAX_POLL_FAILURES) {
            const error = new OsError(`poll() on UDP sockets failed ${failures} times in a row`, "poll", 5);
            for (const s of this.#sockets) s.fail(error);
            return;
          }
          continue;
        }
        failures = 0;
        const view = new DataView(this.#pollFds.buffer);
        if (view.getInt16(6, true) !== 0) {
          read(this.#eventFd, counter, 8n);
          this.#woken = false;
        }
        for (let i = 0; i < this.#polled.length; i++) {
          const revents = view.getInt16(8 * (i + 1) + 6, true);
          if (revents === 0) continue;
          const socket = this.#polled[i]!;
          if (socket.closed) continue;
          if (revents & POLLNVAL) {
            socket.fail(new OsError(`${socket}: the socket's file descriptor is gone`, "poll", 9));
          } else if (
            socket.drain(this.#receiveVector ??= receiveVector(), this.#batchSize, (revents & POLLERR) !== 0)
          ) this.#dirty = true;
        }
      }
    } finally {
      for (const fd of this.#deferredClose.splice(0)) this.#libc.symbols.close(fd);
      this.#loop = null;
      this.#woken = false;
      this.#dirty = true;
      if (this.#closed) this.#release();
    }
  }

  /** Rebuilds the pollfd array when the set changed; returns how many entries it has. */
  #build(): number {
    if (!this.#dirty) return this.#polled.length + 1;
    this.#dirty = false;
    this.#polled = [...this.#sockets].filter((s) => !s.paused);
    const need = 8 * (this.#polled.length + 1);
    if (this.#pollFds.length < need) this.#pollFds = new Uint8Array(Math.max(need, this.#pollFds.length * 2));
    const view = new DataView(this.#pollFds.buffer);
    const entry = (i: number, fd: number) => {
      view.setInt32(8 * i, fd, true);
      view.setInt16(8 * i + 4, POLLIN, true); // POLLERR is always reported
      view.setInt16(8 * i + 6, 0, true);
    };
    entry(0, this.#eventFd);
    this.#polled.forEach((s, i) => entry(i + 1, s.fd));
    return this.#polled.length + 1;
  }

  #release(): void {
    if (this.#released || this.#loop !== null) return;
    this.#released = true;
    this.#libc.symbols.close(this.#eventFd);
    if (this.#ownLibc) this.#libc.close();
  }
}

/**
 * One connected UDP socket. Open it with `UdpPoller.connect`; close it when done (its poller does not close it
 * before its own `close()`).
 */
export class UdpSocket {
  /** Where the socket sends to and receives from. */
  readonly remote: { readonly hostname: string; readonly port: number };
  /** The ephemeral port the kernel chose. */
  readonly localPort: number;
  readonly stats: UdpSocketStats = { sentDatagrams: 0, receivedDatagrams: 0, sendDrops: 0 };

  readonly #poller: UdpPoller;
  readonly #fd: number;
  readonly #maxQueuedBytes: number;
  /** Datagrams and errors in arrival order. */
  #queue: (Uint8Array | OsError)[] = [];
  #queuedBytes = 0;
  #waiter: ((value: void) => void) | null = null;
  #paused = false;
  #failed = false;
  #closed = false;

  /** @internal Use `UdpPoller.connect`. */
  constructor(
    poller: UdpPoller,
    fd: number,
    remote: { hostname: string; port: number },
    localPort: number,
    maxQueuedBytes = DEFAULT_MAX_QUEUED_BYTES,
  ) {
    if (!Number.isInteger(maxQueuedBytes) || maxQueuedBytes < 1) {
      throw new RangeError(`maxQueuedBytes ${maxQueuedBytes} is out of range: use a positive integer`);
    }
    this.#poller = poller;
    this.#fd = fd;
    this.remote = { ...remote };
    this.localPort = localPort;
    this.#maxQueuedBytes = maxQueuedBytes;
  }

  /**
   * The kernel's receive buffer in bytes (SO_RCVBUF as getsockopt reports it: twice what was asked, the kernel's
   * bookkeeping included).
   */
  get receiveBufferBytes(): number {
    const value = new Uint8Array(4);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, 4, true);
    const libc = this.#poller.libc;
    check(libc, libc.symbols.getsockopt(this.#fd, SOL_SOCKET, SO_RCVBUF, value, len), "getsockopt", (e) => {
      return `${this}: cannot read SO_RCVBUF (${describe(e)})`;
    });
    return new DataView(value.buffer).getInt32(0, true);
  }

  /** @internal */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal True while the queue is full and the poller leaves the socket out. */
  get paused(): boolean {
    return this.#paused || this.#failed;
  }

  /**
   * Sends one datagram, synchronously. Returns true when the kernel took it, false when it dropped it for a full
   * socket buffer (counted in `stats.sendDrops`). Throws an OsError for an error the kernel reports instead: a
   * pending one from the network (`errno` ECONNREFUSED after the destination's ICMP port unreachable, EHOSTUNREACH,
   * ...; reported once, by whichever of `send` or `receive` comes first) or EMSGSIZE for a datagram too large.
   * The socket stays usable after such an error.
   */
  send(datagram: Uint8Array): boolean {
    if (this.#closed) throw new TypeError(`${this}: send() called after close()`);
    const libc = this.#poller.libc;
    for (let attempt = 0; attempt < 100; attempt++) {
      const n = libc.symbols.send(this.#fd, datagram as Uint8Array<ArrayBuffer>, BigInt(datagram.length), 0);
      if (n >= 0) {
        this.stats.sentDatagrams++;
        return true;
      }
      const errno = libc.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN || errno === ENOBUFS) break;
      this.#poller.errorQueue.take(this.#fd); // the same ICMP messages as the error reported now
      throw this.#error(errno, "send");
    }
    this.stats.sendDrops++;
    return false;
  }

  /**
   * Sends `datagrams` from `start` on, as `send` would one by one, in sendmmsg() calls of up to 32 datagrams or 64 KiB:
   * one system call, and one wake-up of the destination's reader, per batch, with a sched_yield() between batches. Datagrams the socket buffer has no room
   * for are dropped and counted; at the first other error (ECONNREFUSED, EMSGSIZE, ...) it stops and says which.
   */
  sendMany(datagrams: readonly Uint8Array[], start = 0): SendManyResult {
    if (this.#closed) throw new TypeError(`${this}: sendMany() called after close()`);
    const libc = this.#poller.libc;
    const vector = this.#poller.sendVector;
    let sent = 0, dropped = 0;
    for (let i = start; i < datagrams.length;) {
      const count = vector.fill(datagrams, i);
      if (count === 0) {
        this.stats.sentDatagrams += sent;
        this.stats.sendDrops += dropped;
        return { sent, dropped, failed: { index: i, error: this.#error(EMSGSIZE, "sendmmsg") } };
      }
      for (let k = 0, interrupts = 0; k < count;) {
        const n = libc.symbols.sendmmsg(this.#fd, vector.headers(k), count - k, 0);
        if (n > 0) {
          sent += n;
          k += n;
          if (k < count) {
            // Cut short: the next datagram met an error, which sendmmsg() does not return once some were sent. A
            // pending one (ICMP port unreachable...) is gone from the socket, but not from its error queue.
            const lost = this.#poller.errorQueue.take(this.#fd);
            if (lost !== undefined) {
              this.stats.sentDatagrams += sent;
              this.stats.sendDrops += dropped;
              return { sent, dropped, failed: { index: i + k, error: this.#error(lost, "sendmmsg") } };
            }
          }
          continue;
        }
        const errno = libc.errno();
        if (errno === EINTR && ++interrupts < 100) continue;
        if (errno === EAGAIN || errno === ENOBUFS || errno === EINTR) {
          dropped++; // that one is lost, as `send` loses it; the rest of the batch tries again
          k++;
          continue;
        }
        this.stats.sentDatagrams += sent;
        this.stats.sendDrops += dropped;
        this.#poller.errorQueue.take(this.#fd); // the same ICMP messages as the error reported now
        return { sent, dropped, failed: { index: i + k, error: this.#error(errno, "sendmmsg") } };
      }
      i += count;
      // More to send: let the destination's reader take this batch first. The wake-up put it on this CPU's queue,
      // and while the manager keeps the CPU the next batches pile up in a receive buffer that holds about three
      // (208 KiB by default). At 500 and 1000 Mbit/s from the workstation, 3 rounds A/B: the destination's drops
      // (UdpRcvbufErrors) fell in each pair, 16-63k -> 11-32k and 82-130k -> 36-65k of 208k and 416k datagrams.
      if (i < datagrams.length) libc.symbols.sched_yield();
    }
    this.stats.sentDatagrams += sent;
    this.stats.sendDrops += dropped;
    return { sent, dropped };
  }

  /**
   * Waits for datagrams and returns every one queued, oldest first, each a copy of its own; `[]` once the socket is
   * closed. Rejects with an OsError when the kernel reported an error after the datagrams before it were taken:
   * `errno` ECONNREFUSED when the destination answered with ICMP port unreachable, EHOSTUNREACH and the like for
   * other ICMP errors. The socket stays usable: call `receive()` again to go on. One `receive()` at a time.
   */
  async receive(): Promise<Uint8Array[]> {
    if (this.#waiter !== null) throw new TypeError(`${this}: receive() called while another receive() is pending`);
    if (this.#queue.length === 0 && !this.#closed) {
      await new Promise<void>((resolve) => (this.#waiter = resolve));
      this.#waiter = null;
    }
    if (this.#closed) return [];
    const head = this.#queue[0];
    if (head instanceof OsError) {
      this.#queue.shift();
      throw head;
    }
    const errorAt = this.#queue.findIndex((item) => item instanceof OsError);
    const datagrams = (errorAt < 0 ? this.#queue.splice(0) : this.#queue.splice(0, errorAt)) as Uint8Array[];
    for (const d of datagrams) this.#queuedBytes -= d.length;
    if (this.#paused && this.#queuedBytes < this.#maxQueuedBytes) {
      this.#paused = false;
      this.#poller.changed();
    }
    return datagrams;
  }

  /** Closes the socket; a pending `receive()` returns `[]`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#poller.remove(this, this.#fd);
    this.#waiter?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * @internal Called by the poller when the socket is readable: reads up to `batchSize` datagrams or one error into
   * the queue (past `maxQueuedBytes` by one recvmmsg() at most). Returns true when the queue became full and the
   * socket must leave the poll. `pollErr`: poll() said POLLERR: the error queue has something, or an error waits.
   */
  drain(vector: MessageVector, batchSize: number, pollErr = false): boolean {
    const libc = this.#poller.libc;
    let full = false, reported = false;
    for (let i = 0, interrupts = 0; i < batchSize && !full;) {
      const n = libc.symbols.recvmmsg(this.#fd, vector.headers(0), Math.min(vector.size, batchSize - i), 0, null);
      if (n < 0) {
        const errno = libc.errno();
        if (errno === EAGAIN) break;
        if (errno === EINTR && ++interrupts < 100) continue;
        this.#queue.push(this.#error(errno, "recvmmsg"));
        reported = true;
        break;
      }
      for (let k = 0; k < n; k++) {
        const d = vector.received(k);
        this.#queue.push(d);
        this.#queuedBytes += d.length;
      }
      i += n;
      this.stats.receivedDatagrams += n;
      if (this.#queuedBytes >= this.#maxQueuedBytes) full = this.#paused = true;
      if (n < vector.size) break; // fewer than asked: the socket is empty (or an error waits for the next call)
    }
    if (pollErr) {
      // Read empty in any case (else POLLERR again at once). An error in it that no call here reported was taken from
      // the socket by a call that did not say so: it is reported now.
      const lost = this.#poller.errorQueue.take(this.#fd);
      if (lost !== undefined && !reported) this.#queue.push(this.#error(lost, "recvmsg"));
    }
    if (this.#queue.length > 0) this.#waiter?.();
    return full;
  }

  /** @internal The socket cannot be polled any more: `error` is its last word, and the poller leaves it out. */
  fail(error: OsError): void {
    this.#queue.push(error);
    this.#failed = true;
    this.#poller.changed();
    this.#waiter?.();
  }

  #error(errno: number, syscall: string): OsError {
    const why = errno === ECONNREFUSED
      ? "the destination port is closed (ICMP port unreachable)"
      : errno === EMSGSIZE
      ? "the datagram is larger than the path allows"
      : describe(errno);
    return new OsError(`${this}: ${why}`, syscall, errno);
  }

  toString(): string {
    const { hostname, port } = this.remote;
    return `UDP ${this.localPort} -> ${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  }
}

/**
 * The struct mmsghdr and struct iovec arrays of a sendmmsg() or recvmmsg() call, each iovec pointing into one buffer
 * (a copy per datagram is cheaper than a pointer per datagram through FFI). For sending, `fill` packs a batch's
 * datagrams one after the other; for receiving (`receiveVector`), each entry has a buffer of RECEIVE_BUFFER bytes.
 */
class MessageVector {
  readonly #headers: Uint8Array<ArrayBuffer>;
  readonly #iovecs: Uint8Array<ArrayBuffer>;
  readonly #data: Uint8Array<ArrayBuffer>;
  readonly #headerViews: Uint8Array<ArrayBuffer>[] = [];
  readonly #h: DataView;
  readonly #iov: DataView;
  /** The address of `#data`, a Number (user-space addresses are under 2^47). */
  readonly #dataAddress: number;

  constructor(readonly size: number, readonly bytes: number) {
    this.#headers = new Uint8Array(MMSGHDR_LEN * size);
    this.#iovecs = new Uint8Array(IOVEC_LEN * size);
    this.#data = new Uint8Array(bytes);
    this.#h = new DataView(this.#headers.buffer);
    this.#iov = new DataView(this.#iovecs.buffer);
    this.#dataAddress = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#data)));
    const iovAddress = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#iovecs)));
    for (let i = 0; i < size; i++) {
      // msghdr: msg_name NULL (the socket is connected), msg_iov at 16, msg_iovlen 1 at 24, no control data.
      setAddress(this.#h, MMSGHDR_LEN * i + 16, iovAddress + IOVEC_LEN * i);
      this.#h.setUint32(MMSGHDR_LEN * i + 24, 1, true);
      this.#headerViews.push(this.#headers.subarray(MMSGHDR_LEN * i));
    }
  }

  /**
   * Copies datagrams from `start` into the next batch; returns how many: at least one, or 0 when the first is over
   * the vector's bytes (64 KiB: larger than UDP allows).
   */
  fill(datagrams: readonly Uint8Array[], start: number): number {
    let count = 0, offset = 0;
    while (count < this.size && start + count < datagrams.length) {
      const d = datagrams[start + count]!;
      if (offset + d.length > this.bytes) break;
      this.#data.set(d, offset);
      setAddress(this.#iov, IOVEC_LEN * count, this.#dataAddress + offset);
      this.#iov.setUint32(IOVEC_LEN * count + 8, d.length, true);
      offset += d.length;
      count++;
    }
    return count;
  }

  /** Points entry i at its own RECEIVE_BUFFER bytes, for recvmmsg(). */
  spread(): void {
    for (let i = 0; i < this.size; i++) {
      setAddress(this.#iov, IOVEC_LEN * i, this.#dataAddress + RECEIVE_BUFFER * i);
      this.#iov.setUint32(IOVEC_LEN * i + 8, RECEIVE_BUFFER, true);
    }
  }

  /** A copy of the datagram recvmmsg() put in entry k (its length is the entry's msg_len). */
  received(k: number): Uint8Array {
    const len = this.#h.getUint32(MMSGHDR_LEN * k + 56, true);
    return this.#data.slice(RECEIVE_BUFFER * k, RECEIVE_BUFFER * k + len);
  }

  /** The mmsghdr array from entry `k` on. */
  headers(k: number): Uint8Array<ArrayBuffer> {
    return this.#headerViews[k]!;
  }
}

/** A vector for recvmmsg(): RECEIVE_BATCH entries of RECEIVE_BUFFER bytes each. */
function receiveVector(): MessageVector {
  const v = new MessageVector(RECEIVE_BATCH, RECEIVE_BATCH * RECEIVE_BUFFER);
  v.spread();
  return v;
}

/** Writes a 64-bit little-endian address held in a Number, without a BigInt. */
function setAddress(view: DataView, offset: number, address: number): void {
  view.setUint32(offset, address % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(address / 0x1_0000_0000), true);
}

/**
 * Asks for a receive buffer of `bytes`: SO_RCVBUFFORCE first (root may pass net.core.rmem_max), else SO_RCVBUF, which
 * the kernel caps at rmem_max. Neither failing matters: the socket works with the default buffer.
 */
function setReceiveBuffer(libc: Libc, fd: number, bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 0x7fffffff) {
    throw new RangeError(`receiveBufferBytes ${bytes} is out of range: use a positive 32-bit integer`);
  }
  const value = new Uint8Array(4);
  new DataView(value.buffer).setInt32(0, bytes, true);
  if (libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, value, 4) === 0) return;
  libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, 4);
}

/** struct sockaddr_in or sockaddr_in6 (port in network order). */
function sockaddr(family: 4 | 6, address: Uint8Array, port: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(family === 4 ? SOCKADDR_IN_LEN : SOCKADDR_IN6_LEN);
  const view = new DataView(out.buffer);
  view.setUint16(0, family === 4 ? AF_INET : AF_INET6, true);
  view.setUint16(2, port);
  out.set(address, family === 4 ? 4 : 8);
  return out;
}

/** "ECONNREFUSED, errno 111" style detail for messages. */
function describe(errno: number): string {
  const name = errno === ECONNREFUSED ? "ECONNREFUSED" : errnoName(errno);
  return name.startsWith("errno") ? name : `${name}, errno ${errno}`;
}
