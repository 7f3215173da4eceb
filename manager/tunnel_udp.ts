/**
 * One UDP flow on the manager: a socket of its own per flow, connected to the destination, one datagram per data
 * frame each way, ended by a FIN or reset from the client, by the session, or by `udpIdleTimeoutMs` without a datagram
 * either way.
 *
 * The socket is an FFI one (`ffi/udp_socket.ts`), not `node:dgram`: under Deno, node:dgram never reports the
 * destination's ICMP port unreachable (no ECONNREFUSED, neither as an error event nor in a send callback), and tp
 * must answer such a flow with ICMP port unreachable on the workstation.
 *
 * UDP has no backpressure of its own: an outbound datagram that finds the response queue full, or an inbound one that
 * finds the socket buffer full, is dropped, as a full socket buffer would drop it. Every datagram lost here is counted
 * in tp_manager_datagrams_dropped_total by reason (`DropReason`).
 */
import { OsError } from "../ffi/errors.ts";
import { ECONNREFUSED, UdpPoller, type UdpSocket } from "../ffi/udp_socket.ts";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import { DialCode, encodeDataFrame, encodeTunnelFrame } from "../proto/messages.ts";
import type { TunnelOutcome } from "./_streams.ts";
import type { TunnelContext } from "./tunnel_context.ts";

/** Why a datagram was lost, the `reason` label of tp_manager_datagrams_dropped_total. */
export type DropReason =
  /** Outbound: the stream's response queue held its high-water mark (the client does not read). */
  | "stream-buffer-full"
  /** Outbound: received from the destination as the flow ended. */
  | "flow-ended"
  /** Inbound: the socket's send buffer was full. */
  | "socket-buffer-full"
  /** Inbound: the kernel refused to send it (EMSGSIZE: larger than UDP allows; a route error). */
  | "send-error"
  /** Inbound: the network answered an earlier one with an ICMP error other than port unreachable (host unreachable,
   * administratively prohibited, ...), which the kernel reports on the socket: that datagram was lost. */
  | "network-error";

const FIN = encodeTunnelFrame({ kind: "fin" });
const KEEPALIVE = encodeTunnelFrame({ kind: "keepalive" });
/** The destination's port is closed: the code tells the client; the words (unchanged) tell people, and old clients. */
const REFUSED = encodeTunnelFrame({
  kind: "reset",
  reason: "refused: the destination port is closed",
  code: DialCode.refused,
});

/**
 * The process's UDP poller, opened with the first flow: one poll() for every flow's socket. Module-level (against
 * STYLE's "dependencies are passed in") because TunnelContext has no place for it yet; it holds no pending call while
 * no flow is open, so it keeps neither a process nor a test alive.
 */
let poller: UdpPoller | undefined;

export async function runUdpTunnel(ctx: TunnelContext): Promise<TunnelOutcome> {
  const { open, out, reader, signal, config, metrics } = ctx;
  const dst = open.destination!;
  const dropped = (reason: DropReason, n = 1) => metrics.datagramsDropped.add({ reason }, n);
  let sock: UdpSocket;
  try {
    poller ??= new UdpPoller();
    sock = poller.connect({ hostname: dst.ip, port: dst.port });
  } catch (e) {
    ctx.dialed({ code: DialCode.unreachable, message: e instanceof Error ? e.message : String(e) });
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

  // The destination's ICMP port unreachable surfaces as ECONNREFUSED on the next receive or send: the client is told
  // with a reset whose code is REFUSED, and answers its app with an ICMP port unreachable.
  const refused = () => {
    out.writeMessage(REFUSED);
    finish({ code: Status.OK, message: "destination port unreachable" });
  };
  const isRefused = (e: unknown) => e instanceof OsError && e.errno === ECONNREFUSED;

  const outbound = async () => {
    // Ends when the socket closes (receive() returns []); each error is the kernel's report of one ICMP message.
    for (;;) {
      let datagrams: Uint8Array[];
      try {
        datagrams = await sock.receive();
      } catch (e) {
        if (finished) return;
        if (isRefused(e)) return refused();
        dropped("network-error"); // other ICMP errors (host unreachable, ...): that datagram is lost, UDP carries on
        continue;
      }
      if (finished) return dropped("flow-ended", datagrams.length);
      if (datagrams.length === 0) return;
      touch();
      for (const msg of datagrams) {
        if (out.queued >= out.highWaterBytes) {
          dropped("stream-buffer-full");
          continue;
        }
        metrics.bytes.add({ protocol: "udp", direction: "outbound" }, msg.length);
        out.writeFrame(encodeDataFrame([msg], msg.length));
      }
    }
  };
  outbound().catch((e) =>
    finish({ code: Status.INTERNAL, message: `UDP socket: ${e instanceof Error ? e.message : e}` })
  );

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
          try {
            if (!sock.send(frame.data)) dropped("socket-buffer-full");
          } catch (e) {
            if (isRefused(e)) return refused();
            dropped("send-error"); // EMSGSIZE, host unreachable, ...: this datagram is lost, UDP carries on
          }
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
