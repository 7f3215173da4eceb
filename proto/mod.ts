/**
 * The client side of tp's traffic-manager API, for the connect daemon.
 *
 * ```ts
 * import { connect, DialCode } from "../proto/mod.ts";
 *
 * // A URL (h2c or TLS), or `() => duplex` for a port-forward stream through the API server.
 * const session = await connect("http://198.18.0.2:8081", token, { clientName: "laptop", onLost: (e) => restart(e) });
 * console.log(session.clusterInfo.serviceSubnets);           // from arrive; keepalives run until depart()
 * (async () => { for await (const info of session.watchClusterInfo()) routes.update(info); })();
 *
 * // One tunnel per TCP connection (or UDP flow) the userspace stack terminates.
 * const t = await session.openTunnel({ protocol: "tcp", source: { ip: "10.0.0.1", port: 51000 },
 *                                      destination: { ip: "198.19.0.10", port: 8080 } });
 * if (t.dial.code !== DialCode.ok) sendRstOrIcmp(t.dial);   // refused, unreachable, timeout, denied
 * // inbound: stop reading the app's socket while write() says false
 * if (!t.write(segmentPayload)) { tcp.stopReading(); await t.drained(); tcp.startReading(); }
 * t.closeWrite();                                            // the app sent FIN
 * // outbound: read() waits; the HTTP/2 window closes while nobody reads
 * for (let c = await t.read(); c; c = await t.read()) tcp.send(c);   // null = FIN; TunnelResetError = RST
 * t.reset();                                                 // the app sent RST
 *
 * const answer = await session.dns(rawQuery);                // raw DNS message in, raw message out
 * await session.depart();
 * ```
 */
export { Channel, type ChannelOptions, type DuplexFactory, STREAM_WINDOW } from "./channel.ts";
export { GrpcError, Status, statusName } from "./grpc_web.ts";
export { type ClusterInfo, DialCode, dialCodeName, type DialResult, type Endpoint } from "./messages.ts";
export { connect, connectAgent, type ConnectOptions, ManagerClient, ManagerSession } from "./session.ts";
export { type PipeEnd, pipeSocket } from "./socket_pipe.ts";
export {
  MAX_FRAME_PAYLOAD,
  Tunnel,
  type TunnelEnd,
  type TunnelRequest,
  TunnelResetError,
  type TunnelStats,
  WRITE_HARD_LIMIT,
  WRITE_HIGH_WATER,
} from "./tunnel.ts";
