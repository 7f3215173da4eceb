/** ICMPv6 (RFC 4443): type numbers, parse and emit of `IcmpRepr`. The checksum covers the IPv6 pseudo-header. */
import { write16, write32 } from "./_bytes.ts";
import { finishChecksum, foldSum, sumWords } from "./checksum.ts";
import type { DropReason } from "./drop.ts";
import { ICMP_HEADER_LEN, type IcmpMessage, type IcmpRepr } from "./icmp.ts";

export const Icmpv6Type = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAMETER_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
} as const;

/** Destination-unreachable codes (RFC 4443 section 3.1). */
export const Icmpv6Unreachable = {
  NO_ROUTE: 0,
  ADMIN_PROHIBITED: 1,
  BEYOND_SCOPE: 2,
  ADDRESS: 3,
  PORT: 4,
} as const;

/** Types below 128 are errors (RFC 4443 section 2.1). */
export function isIcmpv6ErrorType(type: number): boolean {
  return type < 128;
}

/** Parses a message; `pseudoSum` is the unfolded IPv6 pseudo-header sum, or null to skip verification. */
export function parseIcmpv6(message: IcmpMessage, pseudoSum: number | null): IcmpRepr | DropReason {
  const b = message.buffer;
  if (pseudoSum !== null && foldSum(sumWords(b, 0, b.length, pseudoSum)) !== 0xffff) return "badChecksum";
  switch (message.type) {
    case Icmpv6Type.ECHO_REQUEST:
    case Icmpv6Type.ECHO_REPLY:
      return {
        kind: message.type === Icmpv6Type.ECHO_REQUEST ? "echoRequest" : "echoReply",
        ident: message.ident,
        seqNo: message.seqNo,
        data: message.data,
      };
    case Icmpv6Type.DEST_UNREACHABLE:
      return { kind: "destinationUnreachable", code: message.code, data: message.data };
    case Icmpv6Type.PACKET_TOO_BIG:
      return { kind: "packetTooBig", mtu: message.rest, data: message.data };
    case Icmpv6Type.TIME_EXCEEDED:
      return { kind: "timeExceeded", code: message.code, data: message.data };
    default:
      return "unsupportedIcmpType";
  }
}

/** Writes the message into `message.buffer` (exactly `icmpBufferLen(repr)` long); checksum unless null. */
export function emitIcmpv6(repr: IcmpRepr, message: IcmpMessage, pseudoSum: number | null): void {
  const b = message.buffer;
  if (b.length !== ICMP_HEADER_LEN + repr.data.length) {
    throw new RangeError(`A ${ICMP_HEADER_LEN + repr.data.length}-byte ICMP message cannot fill ${b.length} bytes`);
  }
  b[1] = 0;
  switch (repr.kind) {
    case "echoRequest":
    case "echoReply":
      b[0] = repr.kind === "echoRequest" ? Icmpv6Type.ECHO_REQUEST : Icmpv6Type.ECHO_REPLY;
      write16(b, 4, repr.ident);
      write16(b, 6, repr.seqNo);
      break;
    case "destinationUnreachable":
      b[0] = Icmpv6Type.DEST_UNREACHABLE;
      b[1] = repr.code;
      write32(b, 4, 0);
      break;
    case "packetTooBig":
      b[0] = Icmpv6Type.PACKET_TOO_BIG;
      write32(b, 4, repr.mtu);
      break;
    case "timeExceeded":
      b[0] = Icmpv6Type.TIME_EXCEEDED;
      b[1] = repr.code;
      write32(b, 4, 0);
      break;
    default:
      throw new TypeError(`Unknown ICMP kind ${(repr as { kind: string }).kind}`);
  }
  write16(b, 2, 0);
  b.set(repr.data, ICMP_HEADER_LEN);
  if (pseudoSum !== null) write16(b, 2, finishChecksum(sumWords(b, 0, b.length, pseudoSum)));
}
