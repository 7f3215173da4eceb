/**
 * Carries tunnel frames between two streams the manager holds: an agent's AgentTunnel and the workstation's
 * InterceptTunnel that joined it. The manager dials nothing here: each frame read from one stream is written to the
 * other as it came (data, dial, fin, reset), so both ends see exactly what the other sent.
 *
 * Backpressure: a stream is read only while the other stream's response queue has room, so a slow reader on one
 * side leaves frames in the other side's HTTP/2 window. The relay ends when both directions finished (a fin each
 * way, or the end of each request body) or a reset passed; a malformed frame resets both.
 */
import { GrpcError, Status } from "../proto/grpc_web.ts";
import { encodeTunnelFrame } from "../proto/messages.ts";
import type { FrameSink, MessageSource, TunnelOutcome } from "./_streams.ts";

export interface StreamEnd {
  reader: MessageSource;
  out: FrameSink;
  /** The stream's name in reasons ("agent", "workstation"). */
  name: string;
}

const DATA_KEY = 0x0a;
const FIN = encodeTunnelFrame({ kind: "fin" });
const KEEPALIVE = encodeTunnelFrame({ kind: "keepalive" });

/** Relays until both directions end or a reset passes; then ends both streams. Never throws. */
export async function relay(
  a: StreamEnd,
  b: StreamEnd,
  decode: (msg: Uint8Array) => { kind: string; reason?: string },
  signal: AbortSignal,
): Promise<TunnelOutcome> {
  let finished = false;
  let resolveEnd!: (o: TunnelOutcome) => void;
  const ended = new Promise<TunnelOutcome>((r) => (resolveEnd = r));
  const finish = (o: TunnelOutcome) => {
    if (finished) return;
    finished = true;
    signal.removeEventListener("abort", onAbort);
    a.reader.cancel();
    b.reader.cancel();
    resolveEnd(o);
  };
  const resetBoth = (reason: string, code: Status = Status.OK) => {
    const msg = encodeTunnelFrame({ kind: "reset", reason });
    a.out.writeMessage(msg);
    b.out.writeMessage(msg);
    finish({ code, message: reason });
  };
  const onAbort = () => resetBoth(String(signal.reason), Status.UNAVAILABLE);
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();

  let done = 0; // directions finished
  const pump = async (from: StreamEnd, to: StreamEnd) => {
    for (;;) {
      const msg = await from.reader.next();
      if (finished) return;
      if (msg === null) { // the request body ended: a fin, if none came before
        to.out.writeMessage(FIN);
        if (++done === 2) finish({ code: Status.OK, message: "" });
        return;
      }
      if (msg[0] !== DATA_KEY) {
        const f = decode(msg);
        if (f.kind === "keepalive") {
          from.out.writeMessage(KEEPALIVE);
          continue;
        }
        if (f.kind === "reset") {
          to.out.writeMessage(msg);
          finish({ code: Status.OK, message: `${from.name} reset: ${f.reason ?? ""}` });
          return;
        }
        if (f.kind === "fin") {
          to.out.writeMessage(msg);
          if (++done === 2) finish({ code: Status.OK, message: "" });
          return;
        }
        if (f.kind !== "dial") throw new GrpcError(Status.INVALID_ARGUMENT, `Unexpected "${f.kind}" frame`);
      }
      if (!to.out.writeMessage(msg)) await to.out.ready();
    }
  };
  const onError = (from: StreamEnd) => (e: unknown) => {
    if (finished) return;
    const reason = e instanceof GrpcError ? e.details : `${from.name} gone: ${e instanceof Error ? e.message : e}`;
    resetBoth(reason, e instanceof GrpcError ? e.code : Status.CANCELLED);
  };
  pump(a, b).catch(onError(a));
  pump(b, a).catch(onError(b));
  const outcome = await ended;
  a.out.end(outcome.code === Status.OK ? Status.OK : outcome.code, outcome.message);
  b.out.end(outcome.code === Status.OK ? Status.OK : outcome.code, outcome.message);
  return outcome;
}
