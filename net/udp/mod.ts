/**
 * UDP flows of tp's userspace termination: a sans-IO flow table (`UdpFlowTable`) keyed by the 5-tuple, with the
 * owner's accept/refuse decision, idle expiry driven by the caller's clock, a flow limit and per-flow counters.
 *
 *     const table = new UdpFlowTable<Stream>();
 *     switch (table.inbound(packet, info, now)) {            // info: classify()'s PacketInfo, protocol 17
 *       case "created": owner.openUdp(table.flow!); break;   // later: table.accept(flow) -> held datagrams
 *       case "deliver": send(table.flow!, packet.subarray(info.payloadOffset, info.payloadEnd)); break;
 *       case "tableFull": case "heldFull": case "held": break; // counted
 *     }
 *     const quote = table.refuse(flow); if (quote) buildUnreachable(out, quote, { reason: "port" });
 *     table.outbound(flow, n, now); buildUdpPacket(out, flow.outboundHeader, { srcPort: flow.remotePort, ... });
 *     for (const gone of table.expire(now)) gone.owner?.close();   // wake at table.nextDeadline()
 */
export * from "./flow_table.ts";
