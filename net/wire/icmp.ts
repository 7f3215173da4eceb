/**
 * The ICMP message layout shared by ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): type, code, checksum, four bytes
 * whose meaning depends on the type, then data. One view serves both; `icmpv4.ts` and `icmpv6.ts` map types to
 * the family-neutral `IcmpRepr` below.
 */
import { read16, read32 } from "./_bytes.ts";
import type { DropReason } from "./drop.ts";

export const ICMP_HEADER_LEN = 8;

export class IcmpMessage {
  constructor(readonly buffer: Uint8Array) {}

  /** Validates that the 8-byte header fits; the message is the whole buffer. */
  static newChecked(buffer: Uint8Array): IcmpMessage | DropReason {
    return buffer.length < ICMP_HEADER_LEN ? "truncated" : new IcmpMessage(buffer);
  }

  get type(): number {
    return this.buffer[0]!;
  }
  get code(): number {
    return this.buffer[1]!;
  }
  get checksum(): number {
    return read16(this.buffer, 2);
  }
  /** Echo identifier (bytes 4-5). */
  get ident(): number {
    return read16(this.buffer, 4);
  }
  /** Echo sequence number (bytes 6-7). */
  get seqNo(): number {
    return read16(this.buffer, 6);
  }
  /** The four type-specific bytes as one number (ICMPv6 packet-too-big MTU). */
  get rest(): number {
    return read32(this.buffer, 4);
  }
  /** Echo data, or the quoted invoking packet of an error. */
  get data(): Uint8Array {
    return this.buffer.subarray(ICMP_HEADER_LEN);
  }
}

/**
 * An ICMP message tp understands. `data` is the echo payload or, for errors, the start of the invoking packet
 * (IP header first). ICMPv4 "fragmentation needed" (type 3 code 4, RFC 1191) is `packetTooBig`.
 */
export type IcmpRepr =
  | { kind: "echoRequest" | "echoReply"; ident: number; seqNo: number; data: Uint8Array }
  | { kind: "destinationUnreachable"; code: number; data: Uint8Array }
  | { kind: "packetTooBig"; mtu: number; data: Uint8Array }
  | { kind: "timeExceeded"; code: number; data: Uint8Array };

export function icmpBufferLen(repr: IcmpRepr): number {
  return ICMP_HEADER_LEN + repr.data.length;
}

/** True for error messages, which must never be answered with another error (RFC 1122 3.2.2, RFC 4443 2.4). */
export function isIcmpError(repr: IcmpRepr): boolean {
  return repr.kind !== "echoRequest" && repr.kind !== "echoReply";
}
