/**
 * One UDP flow on the manager: a socket of its own per flow, one datagram per data frame each way, ended by a FIN
 * or reset from the client, by the session, or by `udpIdleTimeoutMs` without a datagram either way.
 *
 * UDP has no backpressure of its own: an outbound datagram that finds the response queue full is dropped and
 * counted (tp_manager_datagrams_dropped_total), as a full socket buffer would drop it.
 */
import dgram from "node:dgram";
import ipaddr from "ipaddr.js";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import { DialCode, encodeDataFrame, encodeTunnelFrame } from "../proto/messages.ts";
import type { TunnelContext, TunnelOutcome } from "./tunnel.ts";

const FIN = encodeTunnelFrame({ kind: "fin" });
const KEEPALIVE = encodeTunnelFrame({ kind: "keepalive" });

export async function runUdpTunnel(ctx: TunnelContext): Promise<TunnelOutcome> {
  const { open, out, reader, signal, config, metrics } = ctx;
  const dst = open.destination!;
  const dstAddr = ipaddr.process(dst.ip).toString();
  const sock = dgram.createSocket({ type: dst.ip.includes(":") ? "udp6" : "udp4" });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      // A connected socket: the kernel then reports the destination's ICMP port unreachable as ECONNREFUSED.
      sock.bind(0, () =>
        sock.connect(dst.port, dst.ip, () => {
          sock.off("error", reject);
          resolve();
        }));
    });
  } catch (e) {
    ctx.dialed({ code: DialCode.unreachable, message: e instanceof Error ? e.message : String(e) });
    sock.close();
    return { code: Status.OK, message: "" };
  }
  ctx.dialed({ code: DialCode.ok, message: "" });
  ctx.buffered = () => out.queued + reader.buffered;

  let finished = false;
  let resolveEnd!: (o: TunnelOutcome) => void;
  const ended = new Promise<TunnelOutcome>((r) => (resolveEnd = r));
  let idle: ReturnType<typeof setTimeout> | undefined;
  const finish = (o: TunnelOutcome) => {
    if (finished) return;
    finished = true;
    clearTimeout(idle);
    signal.removeEventListener("abort", onAbort);
    reader.cancel();
    sock.close();
    resolveEnd(o);
  };
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      out.writeMessage(FIN);
      finish({ code: Status.OK, message: `idle for ${config.udpIdleTimeoutMs} ms` });
    }, config.udpIdleTimeoutMs);
  };
  const onAbort = () => {
    out.writeMessage(encodeTunnelFrame({ kind: "reset", reason: String(signal.reason) }));
    finish({ code: Status.UNAVAILABLE, message: String(signal.reason) });
  };
  signal.addEventListener("abort", onAbort, { once: true });
  touch();

  sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
    if (finished || rinfo.port !== dst.port || ipaddr.process(rinfo.address).toString() !== dstAddr) return;
    touch();
    if (out.queued >= out.highWaterBytes) {
      metrics.datagramsDropped.add({}, 1);
      return;
    }
    metrics.bytes.add({ protocol: "udp", direction: "outbound" }, msg.length);
    out.writeFrame(encodeDataFrame([msg], msg.length));
  });
  // The destination's ICMP port unreachable surfaces as ECONNREFUSED: the client is told with a reset whose reason
  // says "refused", and answers its app with an ICMP port unreachable. Other errors: UDP carries on.
  sock.on("error", (e: Error & { code?: string }) => {
    if (finished || e.code !== "ECONNREFUSED") return;
    out.writeMessage(encodeTunnelFrame({ kind: "reset", reason: "refused: the destination port is closed" }));
    finish({ code: Status.OK, message: "destination port unreachable" });
  });

  const inbound = async () => {
    for (;;) {
      const msg = await reader.next();
      if (finished) return;
      if (msg === null) return finish({ code: Status.OK, message: "" });
      const frame = ctx.decode(msg);
      switch (frame.kind) {
        case "data":
          touch();
          metrics.bytes.add({ protocol: "udp", direction: "inbound" }, frame.data.length);
          sock.send(frame.data, (e) => e && sock.emit("error", e));
          break;
        case "fin":
          out.writeMessage(FIN);
          return finish({ code: Status.OK, message: "" });
        case "reset":
          return finish({ code: Status.OK, message: `client reset: ${frame.reason}` });
        case "keepalive":
          touch();
          out.writeMessage(KEEPALIVE);
          break;
        default:
          throw new GrpcError(Status.INVALID_ARGUMENT, `Unexpected "${frame.kind}" frame after open`);
      }
    }
  };
  inbound().catch((e) => {
    if (e instanceof GrpcError) finish({ code: e.code, message: e.details });
    else finish({ code: Status.CANCELLED, message: `client gone: ${e instanceof Error ? e.message : e}` });
  });
  return await ended;
}
