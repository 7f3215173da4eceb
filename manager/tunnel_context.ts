/**
 * What the Tunnel method gives each runner (`TunnelContext`) and what it needs of the manager (`TunnelHost`): types
 * of their own, so the runners (`tunnel_tcp.ts`, `tunnel_udp.ts`) and the method (`tunnel.ts`) that calls them do not
 * import each other.
 */
import type net from "node:net";
import type { DialResult, TunnelFrame, TunnelOpen } from "../proto/messages.ts";
import type { ManagerConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Session } from "./sessions.ts";
import type { FrameSink, MessageSource } from "./_streams.ts";
import type { ResumableTcpStream } from "./tunnel_resume.ts";
import type { SessionBuffer } from "./session_buffer.ts";

/** What a runner needs; it reports its dial result once through `dialed`. */
export interface TunnelContext {
  open: TunnelOpen;
  reader: MessageSource;
  out: FrameSink;
  signal: AbortSignal;
  config: ManagerConfig;
  metrics: Metrics;
  dialed(result: DialResult): void;
  /** Decodes a tunnel message; malformed input throws a GrpcError INVALID_ARGUMENT. */
  decode(msg: Uint8Array): TunnelFrame;
  /**
   * The session's budget of held bytes: a runner counts its outbound queue there (`out.count`) and pauses reading
   * its destination while the budget is full.
   */
  buffer: SessionBuffer;
  /** Bytes this stream holds in its buffers; the runner replaces it once it has buffers. */
  buffered: () => number;
  /**
   * For an open that asked for it (TunnelOpen.resumable): makes the dialed socket a resumable stream that outlives
   * this call, kept until it ends or its grace period after a broken connection does (`tunnel_resume.ts`).
   */
  keepResumable(sock: net.Socket): ResumableTcpStream;
}

export interface TunnelHost {
  config: ManagerConfig;
  logger: Logger;
  metrics: Metrics;
  session(id: string): Session | undefined;
  allows(ip: string): boolean;
  /** Every live stream, for /metrics and shutdown. */
  active: Set<TunnelContext>;
  /** Resumable streams, by session id and stream id: attached to a call or waiting for one. */
  resumable: Map<string, ResumableTcpStream>;
  /** Sends a resumable stream's acks to its workstation (on the session's TunnelAcks stream). */
  sendAck(sessionId: string, streamId: string, received: number): void;
}
