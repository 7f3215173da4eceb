/**
 * One UDP flow on the manager: a socket of its own per flow, connected to the destination, one datagram per data
 * frame each way (the frames received together sent with one sendmmsg() per batch), ended by a FIN or reset from the client, by the session, or by `udpIdleTimeoutMs` without a datagram
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
import { DialCode, encodeTunnelFrame } from "../proto/messages.ts";
import type { TunnelOutcome } from "./_streams.ts";
import type { TunnelContext } from "./tunnel_context.ts";
import { STREAM_FLOOR_BYTES } from "./session_buffer.ts";

/** Why a datagram was lost, the `reason` label of tp_manager_datagrams_dropped_total. */
export type DropReason =
  /** Outbound: the stream's response queue held its high-water mark (the client does not read). */
  | "stream-buffer-full"
  /** Outbound: the session's streams held its whole budget (--session-buffer-bytes; its client does not read). */
  | "session-buffer-full"
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
  // The outbound queue counts against the session's budget until the connection frames it.
  const hold = ctx.buffer.hold(STREAM_FLOOR_BYTES);
  out.count(hold);

  let finished = false;
  let resolveEnd!: (o: TunnelOutcome) => void;
  const ended = new Promise<TunnelOutcome>((r) => (resolveEnd = r));
  let idle: ReturnType<typeof setTimeout> | undefined;
  /** When a datagram last passed either way (performance.now() ms). */
  let lastActive = performance.now();
  const finish = (o: TunnelOutcome) => {
    if (finished) return;
    finished = true;
    clearTimeout(idle);
    signal.removeEventListener("abort", onAbort);
    reader.cancel();
    sock.close();
    resolveEnd(o);
  };
  // One timer for the idle timeout, which looks at the time of the last datagram when it fires, instead of a timer
  // set again per datagram (a clearTimeout and a setTimeout per datagram were 3 % of the manager's time at 500 Mbit/s).
  const touch = () => (lastActive = performance.now());
  const armIdle = (ms: number) => {
    idle = setTimeout(() => {
      const quiet = performance.now() - lastActive;
      if (quiet < config.udpIdleTimeoutMs) return armIdle(config.udpIdleTimeoutMs - quiet);
      out.writeMessage(FIN);
      finish({ code: Status.OK, message: `idle for ${config.udpIdleTimeoutMs} ms` });
    }, ms);
  };
  const onAbort = () => {
    out.writeMessage(encodeTunnelFrame({ kind: "reset", reason: String(signal.reason) }));
    finish({ code: Status.UNAVAILABLE, message: String(signal.reason) });
  };
  signal.addEventListener("abort", onAbort, { once: true });
  armIdle(config.udpIdleTimeoutMs);

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
      let bytes = 0, full = 0, sessionFull = 0;
      for (const msg of datagrams) {
        if (out.queued >= out.highWaterBytes) {
          full++;
          continue;
        }
        if (hold.full) {
          sessionFull++;
          continue;
        }
        bytes += msg.length;
        out.writeData(msg); // each datagram is a copy of its own (receive()), which the sink may keep
      }
      if (full > 0) dropped("stream-buffer-full", full);
      if (sessionFull > 0) dropped("session-buffer-full", sessionFull);
      if (bytes > 0) metrics.bytes.add({ protocol: "udp", direction: "outbound" }, bytes);
    }
  };
  outbound().catch((e) =>
    finish({ code: Status.INTERNAL, message: `UDP socket: ${e instanceof Error ? e.message : e}` })
  );

  // The data frames already received go out together, in sendmmsg() calls (`sendMany`) rather than a send() each:
  // fewer system calls, and the destination's reader is woken once per batch rather than per datagram.
  const batch: Uint8Array[] = [];
  /** Sends the batch; true when the destination's port turned out closed and the flow ended. */
  const sendBatch = (): boolean => {
    if (batch.length === 0) return false;
    touch();
    let bytes = 0;
    for (const d of batch) bytes += d.length;
    metrics.bytes.add({ protocol: "udp", direction: "inbound" }, bytes);
    for (let i = 0; i < batch.length;) {
      const r = sock.sendMany(batch, i);
      if (r.dropped > 0) dropped("socket-buffer-full", r.dropped);
      if (r.failed === undefined) break;
      if (isRefused(r.failed.error)) {
        batch.length = 0;
        refused();
        return true;
      }
      dropped("send-error"); // EMSGSIZE, host unreachable, ...: this datagram is lost, UDP carries on
      i = r.failed.index + 1;
    }
    batch.length = 0;
    return false;
  };
  const inbound = async () => {
    for (;;) {
      let msg: Uint8Array | null | undefined = await reader.next();
      for (; msg !== undefined; msg = reader.take()) {
        if (finished) return;
        if (msg === null) {
          if (sendBatch()) return;
          return finish({ code: Status.OK, message: "" });
        }
        const frame = ctx.decode(msg);
        if (frame.kind === "data") {
          batch.push(frame.data); // a view of the received bytes, sent before the next wait
          continue;
        }
        if (sendBatch()) return;
        switch (frame.kind) {
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
      if (finished) return;
      if (sendBatch()) return;
    }
  };
  inbound().catch((e) => {
    if (e instanceof GrpcError) finish({ code: e.code, message: e.details });
    else finish({ code: Status.CANCELLED, message: `client gone: ${e instanceof Error ? e.message : e}` });
  });
  return await ended;
}
