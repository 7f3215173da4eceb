/**
 * Outbound TCP super-packets for a device with segmentation offload (a Linux TUN opened with `offload: true`):
 * consecutive data segments of one connection, built by `net/wire`'s `buildTcpPacket`, are joined into one IP
 * packet of up to 64 KiB that the kernel cuts back into MTU-sized segments (GSO), so the device is written once
 * per super-packet instead of once per segment.
 *
 * This is the router's only packet code of its own: `net/wire` builds whole packets, and growing one in place
 * (its length fields, the newer ACK and window, the checksum once at the end) has no codec there. The offsets are
 * the ones `buildTcpPacket` writes: an IPv4 header without options or an IPv6 header without extension headers.
 */
import { finishChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6, sumWords } from "../wire/checksum.ts";
import { IpProtocol } from "../wire/ip_protocol.ts";

/** The largest packet a Linux TUN takes with offload (`ffi/tun_linux.ts` MAX_IP_PACKET). */
export const MAX_SUPER_PACKET = 65535;

function write16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

function write32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/**
 * Appends `payload` to the packet `b[0, len)` (IP + TCP as built, checksum left for `finishSuperPacket`) and takes
 * the newer segment's acknowledgment number and window. Returns the new length; the caller checked the room.
 */
export function appendToSuperPacket(b: Uint8Array, len: number, payload: Uint8Array, ack: number, window: number) {
  b.set(payload, len);
  const end = len + payload.length;
  const v4 = b[0]! >> 4 === 4;
  const l4 = v4 ? 20 : 40;
  write32(b, l4 + 8, ack);
  write16(b, l4 + 14, window);
  if (v4) write16(b, 2, end);
  else write16(b, 4, end - 40);
  return end;
}

/**
 * Completes a packet built with `checksum: "none"`: the IPv4 header checksum (its total length changed) and, when
 * `tcpChecksum`, the TCP checksum over the whole packet. Without it the field stays for the device to fill: a
 * Linux TUN with offload writes the partial sum of a packet larger than the MTU itself (`ffi/tun_linux.ts`).
 */
export function finishSuperPacket(b: Uint8Array, len: number, tcpChecksum: boolean): void {
  const v4 = b[0]! >> 4 === 4;
  const l4 = v4 ? 20 : 40;
  if (v4) {
    write16(b, 10, 0);
    write16(b, 10, finishChecksum(sumWords(b, 0, 20)));
  }
  write16(b, l4 + 16, 0);
  if (!tcpChecksum) return;
  const l4Len = len - l4;
  const pseudo = v4
    ? pseudoHeaderSumV4(read32(b, 12), read32(b, 16), IpProtocol.TCP, l4Len)
    : pseudoHeaderSumV6(b.subarray(8, 24), b.subarray(24, 40), IpProtocol.TCP, l4Len);
  write16(b, l4 + 16, finishChecksum(sumWords(b, l4, len, pseudo)));
}

function read32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
