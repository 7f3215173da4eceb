/**
 * A UDP socket's error queue (IP_RECVERR, IPV6_RECVERR: ip(7), ipv6(7)): where Linux keeps a record of each ICMP
 * error for the socket, apart from the pending error (`sk_err`) that the next send or receive returns.
 *
 * Why: sendmmsg() that sent some datagrams and then met the pending error returns the count sent, and the error is
 * gone (net/socket.c, __sys_sendmmsg: "We only return an error if no datagrams were able to be sent"; the failed
 * sendmsg took it with sock_error()). recvmmsg() puts it back for the next call; sendmmsg() does not. The record in
 * the error queue stays, so a partial sendmmsg() reads it there. The queue must be read empty whenever the pending
 * error is reported (the same ICMP messages) or poll() reports POLLERR for it without end.
 */
import type { Libc } from "./_libc.ts";

const IPPROTO_IP = 0; // linux/in.h
const IP_RECVERR = 11; // linux/in.h
const IPPROTO_IPV6 = 41; // linux/in6.h
const IPV6_RECVERR = 25; // linux/in6.h
const MSG_DONTWAIT = 0x40; // linux/socket.h
const MSG_ERRQUEUE = 0x2000; // linux/socket.h
const MSGHDR_LEN = 56; // struct msghdr on 64-bit Linux
/** Room for a cmsghdr (16 bytes), a sock_extended_err (16) and the offender's sockaddr_in6 (28), aligned. */
const CONTROL_LEN = 128;

/** Asks the kernel to keep the socket's ICMP errors in its error queue too. Returns false when it refuses. */
export function enableErrorQueue(libc: Libc, fd: number, family: 4 | 6): boolean {
  const one = new Uint8Array(4);
  new DataView(one.buffer).setInt32(0, 1, true);
  const level = family === 4 ? IPPROTO_IP : IPPROTO_IPV6;
  const name = family === 4 ? IP_RECVERR : IPV6_RECVERR;
  return libc.symbols.setsockopt(fd, level, name, one, 4) === 0;
}

/** Reads error queues (one buffer for all sockets: the calls are synchronous). */
export class ErrorQueueReader {
  readonly #msg = new Uint8Array(MSGHDR_LEN);
  readonly #control = new Uint8Array(CONTROL_LEN);
  readonly #m = new DataView(this.#msg.buffer);
  readonly #c = new DataView(this.#control.buffer);

  constructor(readonly libc: Libc) {
    // msg_name NULL, no iovec (the datagram's bytes are not wanted), msg_control at 32, msg_controllen at 40.
    this.#m.setBigUint64(32, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#control))), true);
  }

  /** Empties the socket's error queue; the errno of the last error in it (ee_errno), or undefined when empty. */
  take(fd: number): number | undefined {
    let last: number | undefined;
    for (let i = 0; i < 1024; i++) {
      this.#m.setBigUint64(40, BigInt(CONTROL_LEN), true);
      this.#m.setUint32(48, 0, true);
      if (this.libc.symbols.recvmsg(fd, this.#msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break; // EAGAIN: empty
      const len = Number(this.#m.getBigUint64(40, true));
      // One cmsghdr (cmsg_len 8 bytes, cmsg_level, cmsg_type), then struct sock_extended_err: ee_errno first.
      if (len < 20) continue;
      const level = this.#c.getInt32(8, true), type = this.#c.getInt32(12, true);
      if ((level === IPPROTO_IP && type === IP_RECVERR) || (level === IPPROTO_IPV6 && type === IPV6_RECVERR)) {
        last = this.#c.getUint32(16, true);
      }
    }
    return last;
  }
}
