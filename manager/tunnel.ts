/**
 * The Tunnel method on the manager: reads the open frame, checks it (session, limits, allowed destinations), and
 * hands the stream to the TCP or UDP runner. Whatever happens, the stream ends with trailers and a log line, and
 * nothing outlives it.
 */
import ipaddr from "ipaddr.js";
import { GrpcError, Status, statusName } from "../proto/grpc_web.ts";
import {
  decodeTunnelFrame,
  dialCodeName,
  type DialResult,
  encodeTunnelFrame,
  Protocol,
  type TunnelFrame,
  type TunnelOpen,
} from "../proto/messages.ts";
import type { Session } from "./sessions.ts";
import type { FrameSink, MessageSource, TunnelOutcome } from "./_streams.ts";
import type { TunnelContext, TunnelHost } from "./tunnel_context.ts";
import { runTcpTunnel } from "./tunnel_tcp.ts";
import { runUdpTunnel } from "./tunnel_udp.ts";
import { clip } from "./clip.ts";
import { errorMessage } from "../base/error_message.ts";
import {
  ACK_EVERY,
  DEFAULT_RESUME_BUFFER_BYTES,
  DEFAULT_RESUME_GRACE_MS,
  ResumableTcpStream,
} from "./tunnel_resume.ts";

export function decodeTunnelMessage(msg: Uint8Array): TunnelFrame {
  try {
    return decodeTunnelFrame(msg);
  } catch (e) {
    throw new GrpcError(Status.INVALID_ARGUMENT, errorMessage(e));
  }
}

/**
 * How long a new stream may take to send its open frame: tp's client sends it in the same write as the stream's
 * headers, so a stream still without one after this holds a place for nothing and is ended.
 */
const OPEN_TIMEOUT_MS = 3_000;

let nextStreamId = 1;

/** Runs one Tunnel call to its end. Never throws. */
export async function serveTunnel(host: TunnelHost, reader: MessageSource, out: FrameSink): Promise<void> {
  const { config, logger, metrics } = host;
  const streamId = nextStreamId++;
  const abort = new AbortController();
  out.onCancel = () => abort.abort("client cancelled the stream");
  let ctx: TunnelContext | undefined;
  let session: Session | undefined;
  const handle = { abort: (reason: string) => abort.abort(reason) };
  const fields: Record<string, string | number> = { stream: streamId };
  let outcome: TunnelOutcome;
  try {
    const first = await withTimeout(reader.next(), config.openTimeoutMs ?? OPEN_TIMEOUT_MS, abort.signal);
    if (first === null) throw new GrpcError(Status.INVALID_ARGUMENT, "Stream ended before its open frame");
    const frame = decodeTunnelMessage(first);
    if (frame.kind !== "open") {
      throw new GrpcError(Status.INVALID_ARGUMENT, `First frame is "${frame.kind}", not "open"`);
    }
    const open = checkOpen(frame.open);
    const proto = open.protocol === Protocol.tcp ? "tcp" : "udp";
    Object.assign(fields, {
      protocol: proto,
      src: open.source ? clip(`${open.source.ip}:${open.source.port}`) : "",
      dst: clip(`${open.destination!.ip}:${open.destination!.port}`),
    });
    session = host.session(open.sessionId);
    if (!session) throw new GrpcError(Status.NOT_FOUND, "No such session (expired or departed?)");
    fields.session = session.tag;
    if (session.streams.size >= config.maxStreamsPerSession) {
      throw new GrpcError(Status.RESOURCE_EXHAUSTED, `Session has ${config.maxStreamsPerSession} streams, the maximum`);
    }
    session.streams.add(handle);
    const dst = open.destination!;
    const owner = session;
    let dialResult: DialResult | undefined;
    ctx = {
      open,
      reader,
      out,
      signal: abort.signal,
      config,
      metrics,
      buffer: owner.buffer,
      decode: decodeTunnelMessage,
      buffered: () => out.queued + reader.buffered,
      keepResumable: (sock) => {
        // Not among the session's streams (the call is, while one carries it): the session's end resets it through
        // the host (`Manager`'s sessions.onEnd).
        const key = () => `${owner.id}/${rs.id}`;
        const rs: ResumableTcpStream = new ResumableTcpStream(sock, {
          graceMs: config.resumeGraceMs ?? DEFAULT_RESUME_GRACE_MS,
          bufferBytes: config.resumeBufferBytes ?? DEFAULT_RESUME_BUFFER_BYTES,
          idleTimeoutMs: config.tcpIdleTimeoutMs,
          metrics,
          // It may always hold what the workstation acknowledges at once (session_buffer.ts says why).
          hold: owner.buffer.hold(ACK_EVERY),
          decode: decodeTunnelMessage,
          sendAck: (received) => host.sendAck(owner.id, rs.id, received),
          onGone: () => {
            host.resumable.delete(key());
            metrics.streamsResumable.add({}, -1);
          },
        });
        host.resumable.set(key(), rs);
        metrics.streamsResumable.add({}, 1);
        return rs;
      },
      dialed: (result) => {
        dialResult = result;
        metrics.dials.add({ protocol: proto, result: dialCodeName(result.code) }, 1);
        out.writeMessage(encodeTunnelFrame({ kind: "dial", dial: result }));
        if (result.code !== 1) {
          logger.info("dial failed", { ...fields, result: dialCodeName(result.code), reason: result.message });
        }
      },
    };
    host.active.add(ctx);
    metrics.streamsTotal.add({ protocol: proto }, 1);
    metrics.streams.add({ protocol: proto }, 1);
    try {
      if (open.resume) {
        // A stream rejoined after a reconnection: no dial; the kept stream carries on on this call.
        const rs = host.resumable.get(`${session.id}/${open.resume.streamId}`);
        if (!rs) {
          metrics.resumes.add({ result: "gone" }, 1);
          const reason = "the stream is gone: it ended, or its grace period did, while the workstation was away";
          out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
          outcome = { code: Status.OK, message: reason };
        } else {
          metrics.resumes.add({ result: "resumed" }, 1);
          logger.debug("stream resumed", { ...fields, received: open.resume.received });
          dialResult = { code: 1, message: "" };
          ctx.buffered = () => rs.buffered + out.queued + reader.buffered;
          outcome = await rs.attach(reader, out, open.resume.received, true);
        }
      } else if (!host.allows(dst.ip)) {
        ctx.dialed({ code: 5, message: `${dst.ip} is outside the allowed destinations` });
        outcome = { code: Status.OK, message: "" };
      } else {
        outcome = await (proto === "tcp" ? runTcpTunnel(ctx) : runUdpTunnel(ctx));
      }
    } finally {
      metrics.streams.add({ protocol: proto }, -1);
      host.active.delete(ctx);
    }
    if (dialResult?.code === 1) {
      logger.debug("stream ended", { ...fields, status: statusName(outcome.code), reason: outcome.message });
    }
  } catch (e) {
    outcome = e instanceof GrpcError
      ? { code: e.code, message: e.details }
      : { code: Status.INTERNAL, message: errorMessage(e) };
    logger.warn("stream refused", { ...fields, status: statusName(outcome.code), reason: outcome.message });
    reader.cancel();
  }
  session?.streams.delete(handle);
  metrics.requests.add({ method: "Tunnel", status: statusName(outcome.code) }, 1);
  out.end(outcome.code, outcome.message);
}

function checkOpen(open: TunnelOpen): TunnelOpen {
  if (open.protocol !== Protocol.tcp && open.protocol !== Protocol.udp) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `Unknown protocol ${open.protocol}`);
  }
  const d = open.destination;
  if (!d || !ipaddr.isValid(d.ip) || !Number.isInteger(d.port) || d.port < 1 || d.port > 65535) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `Bad destination ${clip(JSON.stringify(d) ?? "none")}`);
  }
  // The allow-list checks, and the runners dial, this one spelling of the address: node:net reads some others
  // differently ("::198.19.0.10" is an IPv6 address to it, IPv4 to ipaddr.js; "0x7f.1" goes to getaddrinfo).
  return { ...open, destination: { ...d, ip: ipaddr.process(d.ip).toString() } };
}

function withTimeout<T>(p: Promise<T>, ms: number, signal: AbortSignal): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GrpcError(Status.DEADLINE_EXCEEDED, `No open frame within ${ms} ms`)), ms);
    onAbort = () => reject(new GrpcError(Status.CANCELLED, String(signal.reason)));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([p, t]).finally(() => {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort!);
  });
}
