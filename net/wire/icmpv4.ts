/** ICMPv4 (RFC 792): type numbers, parse and emit of `IcmpRepr`. The checksum covers the message only. */
import { write16, write32 } from "./_bytes.ts";
import { checksum, verifyChecksum } from "./checksum.ts";
import type { DropReason } from "./drop.ts";
import { ICMP_HEADER_LEN, type IcmpMessage, type IcmpRepr } from "./icmp.ts";

export const Icmpv4Type = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
} as const;

/** Destination-unreachable codes (RFC 792, RFC 1191, RFC 1812 section 5.2.7.1). */
export const Icmpv4Unreachable = {
  NET: 0,
  HOST: 1,
  PROTOCOL: 2,
  PORT: 3,
  FRAGMENTATION_NEEDED: 4,
  ADMIN_PROHIBITED: 13,
} as const;

/** True for the ICMPv4 types that are errors (RFC 1122 section 3.2.2): never answer them with an error. */
export function isIcmpv4ErrorType(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

export function parseIcmpv4(message: IcmpMessage, verify = true): IcmpRepr | DropReason {
  const b = message.buffer;
  if (verify && !verifyChecksum(b, 0, b.length)) return "badChecksum";
  switch (message.type) {
    case Icmpv4Type.ECHO_REQUEST:
    case Icmpv4Type.ECHO_REPLY:
      return {
        kind: message.type === Icmpv4Type.ECHO_REQUEST ? "echoRequest" : "echoReply",
        ident: message.ident,
        seqNo: message.seqNo,
        data: message.data,
      };
    case Icmpv4Type.DEST_UNREACHABLE:
      if (message.code === Icmpv4Unreachable.FRAGMENTATION_NEEDED) {
        return { kind: "packetTooBig", mtu: message.seqNo, data: message.data };
      }
      return { kind: "destinationUnreachable", code: message.code, data: message.data };
    case Icmpv4Type.TIME_EXCEEDED:
      return { kind: "timeExceeded", code: message.code, data: message.data };
    default:
      return "unsupportedIcmpType";
  }
}

/** Writes the message into `message.buffer` (exactly `icmpBufferLen(repr)` long), checksum included if asked. */
export function emitIcmpv4(repr: IcmpRepr, message: IcmpMessage, computeChecksum = true): void {
  const b = message.buffer;
  if (b.length !== ICMP_HEADER_LEN + repr.data.length) {
    throw new RangeError(`A ${ICMP_HEADER_LEN + repr.data.length}-byte ICMP message cannot fill ${b.length} bytes`);
  }
  switch (repr.kind) {
    case "echoRequest":
    case "echoReply":
      b[0] = repr.kind === "echoRequest" ? Icmpv4Type.ECHO_REQUEST : Icmpv4Type.ECHO_REPLY;
      b[1] = 0;
      write16(b, 4, repr.ident);
      write16(b, 6, repr.seqNo);
      break;
    case "destinationUnreachable":
      b[0] = Icmpv4Type.DEST_UNREACHABLE;
      b[1] = repr.code;
      write32(b, 4, 0);
      break;
    case "packetTooBig":
      b[0] = Icmpv4Type.DEST_UNREACHABLE;
      b[1] = Icmpv4Unreachable.FRAGMENTATION_NEEDED;
      write16(b, 4, 0);
      write16(b, 6, repr.mtu);
      break;
    case "timeExceeded":
      b[0] = Icmpv4Type.TIME_EXCEEDED;
      b[1] = repr.code;
      write32(b, 4, 0);
      break;
    default:
      throw new TypeError(`Unknown ICMP kind ${(repr as { kind: string }).kind}`);
  }
  write16(b, 2, 0);
  b.set(repr.data, ICMP_HEADER_LEN);
  if (computeChecksum) write16(b, 2, checksum(b));
}
