/**
 * Wire codecs for tp's userspace TCP/IP termination. No OS calls; nothing here throws on bad packets (drops are
 * returned as a `DropReason` to count); exceptions mean API misuse (a buffer too small, 5 SACK blocks).
 *
 * For the router, per packet from the TUN (inbound):
 *
 *     const info = new PacketInfo();                       // once
 *     const drop = classify(packet, info);                 // validates IP, ext headers, transport, checksums
 *     if (drop !== null) counters[drop]++;                 // "truncated", "badChecksum", "fragment", ...
 *     const key = info.flowKey(packet);                    // 5-tuple as a short string for a Map
 *     // TCP: parseTcp(new TcpSegment(packet.subarray(info.transportOffset, info.ipLength)), null) -> TcpRepr
 *     // UDP: packet.subarray(info.payloadOffset, info.payloadEnd) is the datagram's data
 *
 * Towards the TUN (outbound), into a reused buffer, checksums included:
 *
 *     const n = buildTcpPacket(out, { src, dst }, tcpRepr);   // IPv4 if src is a number, IPv6 if 16 bytes
 *     buildUdpPacket(out, ip, { srcPort, dstPort, payload }); buildIcmpPacket(out, ip, icmpRepr);
 *     buildUnreachable(out, offendingPacket, { reason: "port" });  // 0 if RFC 1122 / 4443 forbid an answer
 *     buildPacketTooBig(out, offendingPacket, { mtu });
 *
 * Addresses: IPv4 is a uint32 number, IPv6 a 16-byte Uint8Array; `ipToString`, `ipFromString`, `flowKey`.
 * Per layer, a view over bytes (`Ipv4Packet`, `Ipv6Packet`, `TcpSegment`, `UdpDatagram`, `IcmpMessage`) with a
 * `newChecked` constructor for untrusted bytes, and repr functions `parseX` / `emitX` / `xBufferLen`.
 * Checksums: `checksum`, `sumWords` + `finishChecksum`, pseudo-header sums, RFC 1624 `updateChecksum`.
 */
export * from "./address.ts";
export * from "./build.ts";
export * from "./checksum.ts";
export * from "./classify.ts";
export * from "./drop.ts";
export * from "./icmp.ts";
export * from "./icmp_error.ts";
export * from "./icmpv4.ts";
export * from "./icmpv6.ts";
export * from "./ip_protocol.ts";
export * from "./ipv4.ts";
export {
  checkIpv6,
  emitIpv6,
  findIpv6Transport,
  IPV6_HEADER_LEN,
  IPV6_MAX_EXTENSION_HEADERS,
  ipv6BufferLen,
  Ipv6Packet,
  type Ipv6Repr,
  type Ipv6Transport,
  parseIpv6,
} from "./ipv6.ts";
export {
  emitTcp,
  parseTcp,
  TCP_HEADER_LEN,
  TCP_MAX_HEADER_LEN,
  tcpBufferLen,
  tcpHeaderLen,
  TcpOption,
  TcpSegment,
} from "./tcp.ts";
export * from "./tcp_repr.ts";
export {
  emitUdp,
  parseUdp,
  UDP_HEADER_LEN,
  udpBufferLen,
  type UdpChecksumOptions,
  UdpDatagram,
  type UdpRepr,
} from "./udp.ts";
