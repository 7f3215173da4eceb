/**
 * One TCP tunnel stream on the manager: dial the destination, then carry payload, half-close (FIN) and reset both
 * ways until both directions are finished.
 *
 * Backpressure: inbound, the next request message is read only after the socket accepted the previous payload
 * (`write` returned true or 'drain' fired), so a slow destination leaves frames in the HTTP/2 stream window and the
 * client's writes stop. Outbound, the socket is paused while the response queue is full.
 */
import net from "node:net";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import { DialCode, type DialResult, encodeTunnelFrame } from "../proto/messages.ts";
import { IdleSweeper } from "./idle.ts";
import type { TunnelOutcome } from "./_streams.ts";
import type { TunnelContext } from "./tunnel_context.ts";
import { STREAM_FLOOR_BYTES } from "./session_buffer.ts";
import { drainOrClose } from "../proto/socket_pipe.ts";

/** Idle timeouts of every TCP tunnel of this process: one timer for all. */
const idleSweeper = new IdleSweeper();

/** Maps a dial error to a dial result. Codes are errno names (Linux: include/uapi/asm-generic/errno.h). */
export function classifyDialError(e: unknown): DialResult {
  const code = (e as { code?: string }).code ?? "";
  const message = e instanceof Error ? e.message : String(e);
  switch (code) {
    case "ECONNREFUSED":
      return { code: DialCode.refused, message };
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
    case "EADDRNOTAVAIL":
      return { code: DialCode.unreachable, message };
    case "ETIMEDOUT":
      return { code: DialCode.timeout, message };
  }
  // node:net names every failure by its errno; one it does not (or another errno) counts as unreachable.
  return { code: DialCode.unreachable, message };
}

/** Dials host:port, failing with a timeout result after timeoutMs. Resolves with the socket only when ok. */
export function dialTcp(
  host: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ result: DialResult; socket?: net.Socket }> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ host, port, allowHalfOpen: true, noDelay: true });
    const done = (result: DialResult, ok: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      if (ok) resolve({ result, socket });
      else {
        socket.on("error", () => {});
        socket.destroy();
        resolve({ result });
      }
    };
    const onConnect = () => done({ code: DialCode.ok, message: "" }, true);
    const onError = (e: Error) => done(classifyDialError(e), false);
    const onAbort = () => done({ code: DialCode.unreachable, message: String(signal.reason) }, false);
    const timer = setTimeout(
      () => done({ code: DialCode.timeout, message: `no answer within ${timeoutMs} ms` }, false),
      timeoutMs,
    );
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

const FIN = encodeTunnelFrame({ kind: "fin" });
const KEEPALIVE = encodeTunnelFrame({ kind: "keepalive" });

export async function runTcpTunnel(ctx: TunnelContext): Promise<TunnelOutcome> {
  const { open, out, reader, signal, config, metrics } = ctx;
  const dst = open.destination!;
  const { result, socket } = await dialTcp(dst.ip, dst.port, config.dialTimeoutMs, signal);
  if (socket && open.resumable) {
    // The client keeps what it sends until acknowledged: the stream may outlive this call (tunnel_resume.ts).
    if (signal.aborted) {
      socket.resetAndDestroy();
      ctx.dialed({ code: DialCode.unreachable, message: String(signal.reason) });
      return { code: Status.UNAVAILABLE, message: String(signal.reason) };
    }
    const rs = ctx.keepResumable(socket);
    ctx.dialed({ ...result, streamId: rs.id });
    ctx.buffered = () => rs.buffered + out.queued + reader.buffered;
    const onAbort = () => rs.reset(String(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await rs.attach(reader, out, 0, false);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
  ctx.dialed(result);
  if (!socket) return { code: Status.OK, message: "" };
  const sock = socket;
  ctx.buffered = () => sock.writableLength + out.queued + reader.buffered;
  // The outbound queue counts against the session's budget until the connection frames it (the sink releases it
  // then, or when the HTTP/2 stream closes, which may be after this call ended).
  const hold = ctx.buffer.hold(STREAM_FLOOR_BYTES);
  out.count(hold);

  let inboundDone = false; // FIN received from the client and passed to the destination
  let outboundDone = false; // FIN from the destination passed to the client
  let finished = false;
  let resolveEnd!: (o: TunnelOutcome) => void;
  const ended = new Promise<TunnelOutcome>((r) => (resolveEnd = r));
  const finish = (o: TunnelOutcome) => {
    if (finished) return;
    finished = true;
    idle.cancel();
    hold.cancelWait();
    signal.removeEventListener("abort", onAbort);
    sock.off("data", onData);
    reader.cancel();
    resolveEnd(o);
  };
  const resetBoth = (reason: string, code: Status = Status.OK) => {
    rst(sock);
    out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
    finish({ code, message: reason });
  };
  const onAbort = () => resetBoth(String(signal.reason), Status.UNAVAILABLE);
  signal.addEventListener("abort", onAbort, { once: true });

  // Outbound: destination -> client.
  let paused = false;
  const resumeWhenRoom = (): void => {
    if (finished) return;
    if (out.queued >= out.highWaterBytes) return void out.ready().then(resumeWhenRoom);
    if (hold.full) return hold.waitForRoom(resumeWhenRoom);
    paused = false;
    sock.resume();
  };
  const onData = (chunk: Uint8Array) => {
    idle.touch();
    metrics.bytes.add({ protocol: "tcp", direction: "outbound" }, chunk.length);
    // node:net hands each read in a buffer of its own, so the frame may reference it.
    if ((!out.writeData(chunk) || hold.full) && !paused) {
      paused = true;
      sock.pause();
      resumeWhenRoom();
    }
  };
  sock.on("data", onData);
  sock.on("end", () => {
    if (finished) return;
    out.writeMessage(FIN);
    outboundDone = true;
    if (inboundDone) finish({ code: Status.OK, message: "" });
  });
  sock.on("error", (e: Error & { code?: string }) => {
    if (finished) return;
    const reason = e.code === "ECONNRESET" ? "destination reset the connection" : `destination error: ${e.message}`;
    resetBoth(reason);
  });
  sock.on("close", () => {
    if (!finished && !(inboundDone && outboundDone)) resetBoth("destination closed the connection");
  });
  const idle = idleSweeper.track(config.tcpIdleTimeoutMs, () => {
    if (!finished) resetBoth(`idle for ${config.tcpIdleTimeoutMs} ms`);
  });

  // Inbound: client -> destination.
  const inbound = async () => {
    for (;;) {
      const msg = await reader.next();
      if (finished) return;
      if (msg === null) { // the client ended its request body: a FIN if none came before
        if (!inboundDone) {
          inboundDone = true;
          sock.end();
        }
        if (outboundDone) finish({ code: Status.OK, message: "" });
        return;
      }
      const frame = ctx.decode(msg);
      switch (frame.kind) {
        case "data": {
          if (inboundDone) throw new GrpcError(Status.INVALID_ARGUMENT, "Data after FIN");
          idle.touch();
          metrics.bytes.add({ protocol: "tcp", direction: "inbound" }, frame.data.length);
          if (!sock.write(frame.data)) await drainOrClose(sock);
          break;
        }
        case "fin":
          if (!inboundDone) {
            inboundDone = true;
            sock.end();
          }
          if (outboundDone) finish({ code: Status.OK, message: "" });
          break;
        case "reset":
          rst(sock);
          finish({ code: Status.OK, message: `client reset: ${frame.reason}` });
          return;
        case "keepalive":
          out.writeMessage(KEEPALIVE);
          break;
        default:
          throw new GrpcError(Status.INVALID_ARGUMENT, `Unexpected "${frame.kind}" frame after open`);
      }
    }
  };
  inbound().catch((e) => {
    if (finished) return;
    const reason = e instanceof GrpcError ? e.details : `client gone: ${e instanceof Error ? e.message : e}`;
    rst(sock);
    if (e instanceof GrpcError) finish({ code: e.code, message: reason });
    else finish({ code: Status.CANCELLED, message: reason });
  });

  const outcome = await ended;
  if (!sock.destroyed) {
    // Both FINs exchanged: let the kernel finish the close; destroy releases the handle.
    sock.destroy();
  }
  return outcome;
}

/** Closes with a TCP RST (SO_LINGER 0), unless already closed. */
function rst(sock: net.Socket): void {
  if (!sock.destroyed) sock.resetAndDestroy();
}
