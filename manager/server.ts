/**
 * The traffic-manager's dispatcher (`Manager`): each gRPC-web call, whatever carried it (tp's own HTTP/2 server on the
 * manager's port, `listen.ts`, through `serveCall`, or HTTP/1.1 relayed to a loopback Deno.serve, through `handler`),
 * goes to its method here; GET /metrics and GET /healthz too. The sessions, tunnels, DNS and intercepts each live in
 * a module of their own; this holds the wiring and the call rules.
 *
 * Every failure ends only its own request with a gRPC status and a log line:
 * - wrong content type: HTTP 415 with grpc-status INVALID_ARGUMENT (gRPC over HTTP/2 says servers SHOULD answer
 *   415 to a non-gRPC content type);
 * - unknown method: UNIMPLEMENTED; missing or wrong token: UNAUTHENTICATED; unknown session: NOT_FOUND;
 * - malformed message: INVALID_ARGUMENT; oversized message: RESOURCE_EXHAUSTED.
 * Errors before any response message are sent "trailers-only" (grpc-status in the HTTP headers, HTTP 200).
 */
import { CONTENT_TYPE, encodeFrame, encodeTrailers, GrpcError, Status, statusName } from "../proto/grpc_web.ts";
import { API_VERSION, type ClusterInfo, type Codec, codecs, methods, SERVICE_NAME } from "../proto/messages.ts";
import { VERSION } from "../base/version.ts";
import { AllowList, formatHostPort, type ManagerConfig } from "./config.ts";
import { DnsForwarder } from "./dns.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { Sessions } from "./sessions.ts";
import { ClientGoneError, type FrameSink, type MessageSource } from "./_streams.ts";
import { type ServerCall, WebCall } from "./call.ts";
import { serveTunnel } from "./tunnel.ts";
import type { TunnelContext, TunnelHost } from "./tunnel_context.ts";
import { InterceptService } from "./intercept_service.ts";
import type { Session, SessionKind } from "./sessions.ts";
import type { AgentAuth } from "./agent_auth.ts";
import type { ManagerPort } from "./listen.ts";
import { clip } from "./clip.ts";
import { type PingHost, PingService } from "./ping.ts";
import type { ResumableTcpStream } from "./tunnel_resume.ts";
import { TunnelAckService } from "./tunnel_acks.ts";
import { DEFAULT_RESUME_GRACE_MS } from "./tunnel_resume.ts";
import { DEFAULT_SESSION_BUFFER_BYTES, SessionBuffer } from "./session_buffer.ts";

/** The methods the agent port serves: what a traffic-agent calls, nothing that reaches anywhere else. */
const AGENT_METHODS = new Set(["AgentArrive", "Keepalive", "Depart", "WatchAgent", "AgentDnsAnswer", "AgentTunnel"]);

const DNS_TIMEOUT_MS = 5_000;

export interface ManagerOptions {
  logger: Logger;
  /** Admits agents on the agent port (by their workload's credential); without it the agent port admits none. */
  agentAuth?: AgentAuth;
  /** The clock, in ms; tests pass a fake one. */
  now?: () => number;
  /** Makes the ICMP pinger (default: the kernel's ICMP sockets); tests pass a double. */
  pinger?: PingHost["pinger"];
}

type Unary = (req: unknown, ctx: { call: ServerCall; port: ManagerPort }) => Promise<unknown> | unknown;

export class Manager implements TunnelHost {
  readonly sessions: Sessions;
  readonly metrics = new Metrics();
  readonly active = new Set<TunnelContext>();
  readonly resumable = new Map<string, ResumableTcpStream>();
  /** When each session last resumed (performance.now), until its client says it rejoined (Rejoined). */
  readonly #resumedAt = new Map<string, number>();
  readonly #acks: TunnelAckService;
  readonly logger: Logger;
  #allow: AllowList;
  readonly #now: () => number;
  readonly #watchers = new Set<FrameSink>();
  #clusterInfo: ClusterInfo;
  #expiryTimer: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  readonly #unary: Record<string, { req: Codec<unknown>; res: Codec<unknown>; fn: Unary }>;
  readonly #dns: DnsForwarder;
  /** ICMP echo for the workstations (ping). */
  readonly pings: PingService;
  readonly #agentAuth: AgentAuth | undefined;
  /** Agents, intercepts and the streams of intercepted connections. */
  readonly intercepts: InterceptService;

  constructor(readonly config: ManagerConfig, options: ManagerOptions) {
    this.logger = options.logger;
    this.#now = options.now ?? (() => Date.now());
    this.#agentAuth = options.agentAuth;
    // A session whose connection broke lives at least the resume grace period after its last keepalive came.
    const grace = config.resumeGraceMs ?? DEFAULT_RESUME_GRACE_MS;
    const bufferBytes = config.sessionBufferBytes ?? DEFAULT_SESSION_BUFFER_BYTES;
    this.sessions = new Sessions(
      Math.max(config.sessionTtlMs, grace + Math.floor(config.sessionTtlMs / 3)),
      config.maxSessions,
      (tag) =>
        new SessionBuffer(bufferBytes, {
          onPause: () => this.metrics.sessionBufferPauses.add({}, 1),
          onFirstFull: () => {
            this.metrics.sessionsBufferFull.add({}, 1);
            this.logger.warn("session buffer full: its streams pause reading until the workstation takes more", {
              session: tag,
              bytes: bufferBytes,
            });
          },
        }),
    );
    this.intercepts = new InterceptService({
      config,
      logger: this.logger,
      metrics: this.metrics,
      sessions: this.sessions,
      touch: (id) => this.#session(id),
      resumable: this.resumable,
      sendAck: (sessionId, streamId, received) => this.sendAck(sessionId, streamId, received),
    });
    this.sessions.onEnd = (s, reason) => {
      this.intercepts.sessionEnded(s);
      this.#acks.sessionEnded(s.id);
      this.#resumedAt.delete(s.id);
      const prefix = `${s.id}/`;
      for (const [key, rs] of [...this.resumable]) if (key.startsWith(prefix)) rs.reset(`session ${reason}`);
    };
    this.#allow = AllowList.forConfig(config);
    this.#dns = new DnsForwarder(config.dnsServer);
    this.#acks = new TunnelAckService({
      logger: this.logger,
      metrics: this.metrics,
      session: (id) => this.#session(id),
      resumable: this.resumable,
    });
    this.pings = new PingService({
      logger: this.logger,
      metrics: this.metrics,
      allows: (ip) => this.allows(ip),
      ...(options.pinger ? { pinger: options.pinger } : {}),
    });
    this.#clusterInfo = {
      podSubnets: config.podCidrs,
      serviceSubnets: config.serviceCidrs,
      clusterDomain: config.clusterDomain,
      dnsServer: formatHostPort(config.dnsServer),
      managerVersion: VERSION,
      managerId: crypto.randomUUID(),
    };
    const u = <Req, Res>(
      req: Codec<Req>,
      res: Codec<Res>,
      fn: (r: Req, ctx: { call: ServerCall; port: ManagerPort }) => Promise<Res> | Res,
    ) => ({
      req: req as Codec<unknown>,
      res: res as Codec<unknown>,
      fn: fn as Unary,
    });
    this.#unary = {
      Version: u(codecs.VersionRequest, codecs.VersionInfo, () => ({
        version: VERSION,
        runtime: `deno ${Deno.version.deno}`,
        api: API_VERSION,
      })),
      Health: u(codecs.HealthRequest, codecs.HealthInfo, () => ({
        serving: !this.#closing,
        sessions: this.sessions.size,
        streams: this.active.size,
      })),
      Arrive: u(codecs.ArriveRequest, codecs.ArriveResponse, (r) => {
        const old = r.resumeSessionId ? this.sessions.get(r.resumeSessionId) : undefined;
        if (old && old.kind === "client" && this.sessions.touch(old.id, this.#now())) {
          this.metrics.sessionsResumed.add({}, 1);
          this.#resumedAt.set(old.id, performance.now());
          this.logger.info("session resumed", { session: old.tag, client: clip(r.clientName) });
          this.intercepts.sessionResumed(old);
          return { ...this.#arrived(old), resumed: true };
        }
        const s = this.#arrive(r.clientName, r.namespace, "client");
        this.logger.info("session arrived", {
          session: s.tag,
          client: clip(r.clientName),
          namespace: clip(r.namespace),
          clientVersion: clip(r.clientVersion),
        });
        return this.#arrived(s);
      }),
      AgentArrive: u(codecs.AgentArriveRequest, codecs.ArriveResponse, async (r, { call, port }) => {
        if (port === "agent") {
          const token = (call.header("authorization") ?? "").replace(/^Bearer /, "");
          if (!this.#agentAuth || !(await this.#agentAuth.check(r.namespace, r.workload, token))) {
            throw new GrpcError(
              Status.UNAUTHENTICATED,
              `No valid credential for the agent of ${clip(r.workload)} in ${clip(r.namespace)}`,
            );
          }
        }
        const s = this.#arrive(`${r.workload}/${r.podName}`, r.namespace, "agent");
        try {
          this.intercepts.agentArrived(s, r);
        } catch (e) {
          this.sessions.end(s.id, "departed");
          throw e;
        }
        return this.#arrived(s);
      }),
      CreateIntercept: u(
        codecs.CreateInterceptRequest,
        codecs.InterceptInfo,
        (r) => this.intercepts.createIntercept(r),
      ),
      RemoveIntercept: u(
        codecs.RemoveInterceptRequest,
        codecs.RemoveInterceptResponse,
        (r) => this.intercepts.removeIntercept(r),
      ),
      ListAgents: u(codecs.ListAgentsRequest, codecs.AgentList, (r) => this.intercepts.listAgents(r)),
      AgentDnsAnswer: u(
        codecs.AgentDnsAnswerRequest,
        codecs.AgentDnsAnswerResponse,
        (r) => this.intercepts.agentDnsAnswer(r),
      ),
      Keepalive: u(codecs.SessionRef, codecs.KeepaliveResponse, (r, { port }) => {
        this.#session(r.sessionId, port);
        return {};
      }),
      Depart: u(codecs.SessionRef, codecs.DepartResponse, (r, { port }) => {
        this.#session(r.sessionId, port);
        this.#endSession(r.sessionId, "departed");
        return {};
      }),
      Rejoined: u(codecs.SessionRef, codecs.RejoinedResponse, (r) => {
        const s = this.#session(r.sessionId);
        return { reset: this.#resetNotRejoined(s) };
      }),
      GetClusterInfo: u(codecs.SessionRef, codecs.ClusterInfo, (r) => {
        this.#session(r.sessionId);
        return this.#clusterInfo;
      }),
      Ping: u(codecs.PingRequest, codecs.PingResponse, (r) => {
        this.#session(r.sessionId);
        return this.pings.ping(r.sessionId, r);
      }),
      Dns: u(codecs.DnsRequest, codecs.DnsResponse, async (r) => {
        this.#session(r.sessionId);
        try {
          const viaAgent = await this.intercepts.dnsViaAgent(r.query);
          if (viaAgent) {
            this.metrics.dnsQueries.add({ outcome: "agent" }, 1);
            return { answer: viaAgent };
          }
          const answer = await this.#dns.forward(r.query, DNS_TIMEOUT_MS);
          this.metrics.dnsQueries.add({ outcome: "answered" }, 1);
          return { answer };
        } catch (e) {
          this.metrics.dnsQueries.add({ outcome: "failed" }, 1);
          throw e;
        }
      }),
    };
  }

  #arrive(name: string, namespace: string, kind: SessionKind): Session {
    const s = this.sessions.arrive(name, namespace, this.#now(), kind);
    if (!s) throw new GrpcError(Status.RESOURCE_EXHAUSTED, `${this.config.maxSessions} sessions open, the maximum`);
    this.metrics.sessionsTotal.add({}, 1);
    this.metrics.sessions.add({}, 1);
    return s;
  }

  #arrived(s: Session) {
    return {
      sessionId: s.id,
      clusterInfo: this.#clusterInfo,
      sessionTtlMs: this.config.sessionTtlMs,
      keepaliveIntervalMs: Math.floor(this.config.sessionTtlMs / 3),
      resumed: false,
      resumeGraceMs: this.config.resumeGraceMs ?? DEFAULT_RESUME_GRACE_MS,
    };
  }

  /** Starts the session expiry timer. */
  start(): void {
    const every = Math.max(50, Math.min(1000, Math.floor(this.config.sessionTtlMs / 4)));
    this.#expiryTimer = setInterval(() => this.expire(), every);
  }

  /** Ends sessions whose keepalives stopped. Called by the timer; tests call it with a fake clock. */
  expire(): void {
    for (const s of this.sessions.expire(this.#now())) {
      this.metrics.sessions.add({}, -1);
      this.metrics.sessionsExpired.add({}, 1);
      this.logger.info("session expired", { session: s.tag, client: s.clientName, idleMs: this.#now() - s.lastSeen });
    }
  }

  /** Ends every session (and so every stream) and stops the timer; the server itself is shut down by the caller. */
  shutdown(): void {
    this.#closing = true;
    clearInterval(this.#expiryTimer);
    this.#dns.close();
    void this.pings.close();
    this.intercepts.close();
    for (const s of this.sessions.endAll("shutdown")) {
      this.metrics.sessions.add({}, -1);
      this.logger.info("session ended", { session: s.tag, reason: "shutdown" });
    }
    for (const w of this.#watchers) w.end(Status.UNAVAILABLE, "manager shutting down");
  }

  /** Replaces the cluster info and tells every watcher. */
  setClusterInfo(info: Partial<ClusterInfo>): void {
    this.#clusterInfo = { ...this.#clusterInfo, ...info };
    // Without --allow, the destinations follow the subnets.
    this.#allow = AllowList.forConfig({
      ...this.config,
      podCidrs: this.#clusterInfo.podSubnets,
      serviceCidrs: this.#clusterInfo.serviceSubnets,
    });
    const msg = codecs.ClusterInfo.encode(this.#clusterInfo);
    for (const w of this.#watchers) w.writeMessage(msg);
  }

  get clusterInfo(): ClusterInfo {
    return this.#clusterInfo;
  }

  session(id: string) {
    return this.sessions.get(id);
  }

  sendAck(sessionId: string, streamId: string, received: number): void {
    this.#acks.send(sessionId, streamId, received);
  }

  allows(ip: string): boolean {
    return this.#allow.allows(ip);
  }

  /** The handler for Deno.serve (HTTP/1.1; HTTP/2 comes through `serveCall` from tp's own server). */
  readonly handler = async (req: Request): Promise<Response> => {
    const call = new WebCall(req);
    await this.serveCall(call);
    return await call.response;
  };

  /** Answers one call: /metrics, /healthz, or a gRPC-web method. Never throws. */
  async serveCall(call: ServerCall, port: ManagerPort = "main"): Promise<void> {
    if (call.method === "GET" && call.path === "/metrics") {
      let buffered = 0;
      for (const t of this.active) buffered += t.buffered();
      this.metrics.bufferedBytes.values.clear();
      this.metrics.bufferedBytes.add({}, buffered);
      let held = 0, most = 0;
      for (const s of this.sessions.values()) {
        held += s.buffer.total;
        most = Math.max(most, s.buffer.total);
      }
      this.metrics.sessionBufferedBytes.values.clear();
      this.metrics.sessionBufferedBytes.add({}, held);
      this.metrics.sessionBufferedBytes.add({ stat: "max" }, most);
      return call.text(200, "text/plain; version=0.0.4", this.metrics.render());
    }
    if (call.method === "GET" && call.path === "/healthz") {
      return call.text(this.#closing ? 503 : 200, "text/plain", this.#closing ? "shutting down\n" : "ok\n");
    }
    const ct = call.header("content-type") ?? "";
    if (!/^application\/grpc-web(\+proto)?\s*(;|$)/i.test(ct)) {
      return await this.#reject(
        call,
        "content-type",
        Status.INVALID_ARGUMENT,
        `Unsupported content-type "${clip(ct)}"; this server speaks ${CONTENT_TYPE}`,
        415,
      );
    }
    if (call.method !== "POST") {
      return await this.#reject(
        call,
        "method",
        Status.UNIMPLEMENTED,
        `HTTP method ${clip(call.method)} is not POST`,
        405,
      );
    }
    const name = call.path.startsWith(`/${SERVICE_NAME}/`) ? call.path.slice(SERVICE_NAME.length + 2) : "";
    const method = methods[name];
    if (!method) {
      return await this.#reject(call, "unknown-method", Status.UNIMPLEMENTED, `Unknown method "${clip(call.path)}"`);
    }
    if (port === "agent" && !AGENT_METHODS.has(method.name)) {
      return await this.#reject(
        call,
        "agent-port",
        Status.PERMISSION_DENIED,
        `The agent port serves only traffic-agents; ${method.name} is on the manager's main port`,
        200,
        method.name,
      );
    }
    // The main port checks the manager's token; the agent port checks each agent's workload credential (AgentArrive)
    // and, after it, the agent's session.
    if (
      port === "main" && this.config.token !== undefined &&
      !tokenMatches(call.header("authorization"), this.config.token)
    ) {
      return await this.#reject(call, "token", Status.UNAUTHENTICATED, "Missing or wrong token", 200, method.name);
    }
    const reader = call.messages(this.config.maxMessageSize);
    if (method.name === "Tunnel") {
      void serveTunnel(this, reader, call.frames(this.config.streamBufferBytes, { lazyHeaders: true }));
      return;
    }
    if (method.name === "WatchClusterInfo") return await this.#watch(call, reader);
    if (method.name === "TunnelAcks") {
      void this.#acks.serve(reader, call.frames(256 * 1024));
      return;
    }
    if (method.name === "AgentTunnel") {
      void this.intercepts.serveAgentTunnel(reader, call.frames(this.config.streamBufferBytes));
      return;
    }
    if (method.name === "MountTunnel") {
      void this.intercepts.serveMountTunnel(reader, call.frames(this.config.streamBufferBytes));
      return;
    }
    if (method.name === "InterceptTunnel") {
      void this.intercepts.serveInterceptTunnel(reader, call.frames(this.config.streamBufferBytes));
      return;
    }
    if (method.name === "WatchInterceptConnections" || method.name === "WatchAgent") {
      return await this.#hold(call, reader, method.name);
    }
    return await this.#callUnary(call, method.name, reader, port);
  }

  async #callUnary(call: ServerCall, name: string, reader: MessageSource, port: ManagerPort): Promise<void> {
    const m = this.#unary[name];
    try {
      if (!m) throw new GrpcError(Status.UNIMPLEMENTED, `Method "${name}" has no handler`);
      const request = m.req.decode(await readOne(reader));
      const response = m.res.encode(await m.fn(request, { call, port }));
      this.metrics.requests.add({ method: name, status: "OK" }, 1);
      const frame = encodeFrame(response);
      const trailers = encodeTrailers(Status.OK);
      const body = new Uint8Array(frame.length + trailers.length);
      body.set(frame);
      body.set(trailers, frame.length);
      call.body(body);
    } catch (e) {
      reader.cancel();
      const err = asGrpcError(e);
      this.metrics.requests.add({ method: name, status: statusName(err.code) }, 1);
      this.logger.warn("request failed", { method: name, status: statusName(err.code), reason: err.details });
      call.trailersOnly(err.code, err.details);
    }
  }

  async #watch(call: ServerCall, reader: MessageSource): Promise<void> {
    let sessionId: string;
    try {
      sessionId = codecs.SessionRef.decode(await readOne(reader)).sessionId;
      this.#session(sessionId);
    } catch (e) {
      const err = asGrpcError(e);
      this.metrics.requests.add({ method: "WatchClusterInfo", status: statusName(err.code) }, 1);
      this.logger.warn("request failed", {
        method: "WatchClusterInfo",
        status: statusName(err.code),
        reason: err.details,
      });
      return call.trailersOnly(err.code, err.details);
    }
    const out = call.frames(64 * 1024);
    const handle = {
      abort: (reason: string) => {
        this.#watchers.delete(out);
        out.end(Status.OK, reason);
      },
    };
    out.onCancel = () => {
      this.#watchers.delete(out);
      this.sessions.get(sessionId)?.streams.delete(handle);
    };
    this.#watchers.add(out);
    this.sessions.get(sessionId)!.streams.add(handle);
    out.writeMessage(codecs.ClusterInfo.encode(this.#clusterInfo));
  }

  /** A watch whose stream the intercept service holds: one SessionRef in, events out until the session ends. */
  async #hold(call: ServerCall, reader: MessageSource, name: "WatchInterceptConnections" | "WatchAgent") {
    try {
      const sessionId = codecs.SessionRef.decode(await readOne(reader)).sessionId;
      // Checked before any response, so that a refusal is a trailers-only answer.
      const frames = () => call.frames(64 * 1024);
      if (name === "WatchAgent") this.intercepts.watchAgent(sessionId, frames);
      else this.intercepts.watchConnections(sessionId, frames);
    } catch (e) {
      const err = asGrpcError(e);
      this.metrics.requests.add({ method: name, status: statusName(err.code) }, 1);
      this.logger.warn("request failed", { method: name, status: statusName(err.code), reason: err.details });
      call.trailersOnly(err.code, err.details);
    }
  }

  /** The session, after recording its sign of life; NOT_FOUND when it is unknown (or, on the agent port, no agent's). */
  #session(id: string, port: ManagerPort = "main") {
    const s = this.sessions.get(id);
    if (!s || (port === "agent" && s.kind !== "agent") || !this.sessions.touch(id, this.#now())) {
      throw new GrpcError(Status.NOT_FOUND, "No such session (expired or departed?)");
    }
    return s;
  }

  /**
   * The client of `s` rejoined every resumable stream it holds after its last resume: the session's streams that did
   * not (still detached, or carried by the broken connection) are ones it does not know, and are reset now instead of
   * at the end of their grace period. Returns how many.
   */
  #resetNotRejoined(s: Session): number {
    const since = this.#resumedAt.get(s.id);
    if (since === undefined) return 0;
    this.#resumedAt.delete(s.id);
    const prefix = `${s.id}/`;
    let n = 0;
    for (const [key, rs] of [...this.resumable]) {
      if (!key.startsWith(prefix) || rs.joinedSince(since)) continue;
      rs.reset("the workstation did not rejoin the stream after resuming its session");
      n++;
    }
    if (n) this.logger.info("streams not rejoined after a resume reset", { session: s.tag, streams: n });
    return n;
  }

  #endSession(id: string, reason: "departed"): void {
    const s = this.sessions.end(id, reason);
    if (s) {
      this.metrics.sessions.add({}, -1);
      this.logger.info("session ended", { session: s.tag, reason });
    }
  }

  async #reject(
    call: ServerCall,
    reason: string,
    code: Status,
    message: string,
    httpStatus = 200,
    method = "",
  ): Promise<void> {
    this.metrics.rejected.add({ reason }, 1);
    this.logger.warn("request rejected", {
      reason,
      status: statusName(code),
      detail: message,
      method,
      path: clip(call.path),
    });
    await call.drain(this.config.maxMessageSize);
    call.trailersOnly(code, message, httpStatus);
  }
}

/** Reads exactly one request message: a unary request is one message, then the end of the body. */
async function readOne(reader: MessageSource): Promise<Uint8Array> {
  const msg = await reader.next();
  if (msg === null) throw new GrpcError(Status.INVALID_ARGUMENT, "Request has no message");
  if ((await reader.next()) !== null) throw new GrpcError(Status.INVALID_ARGUMENT, "Request has more than one message");
  return msg;
}

function asGrpcError(e: unknown): GrpcError {
  if (e instanceof GrpcError) return e;
  if (e instanceof ClientGoneError) return new GrpcError(Status.CANCELLED, e.message);
  // protobufjs throws plain Errors (RangeError "index out of range", "invalid wire type") for malformed bytes.
  return new GrpcError(Status.INVALID_ARGUMENT, `Cannot decode request: ${e instanceof Error ? e.message : e}`);
}

/** Compares "Bearer <token>" in time independent of where the first difference is. */
function tokenMatches(header: string | null, token: string): boolean {
  const want = new TextEncoder().encode(`Bearer ${token}`);
  const got = new TextEncoder().encode(header ?? "");
  let diff = want.length ^ got.length;
  for (let i = 0; i < want.length; i++) diff |= want[i]! ^ (got[i] ?? 0);
  return diff === 0;
}
