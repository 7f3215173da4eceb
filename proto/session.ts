/**
 * A session with the traffic-manager: arrive, keep alive, watch the cluster info, open tunnels, ask DNS, depart.
 */
import { VERSION } from "../base/version.ts";
import { Call, Channel, type ChannelOptions, type DuplexFactory } from "./channel.ts";
import { encodeFrame, GrpcError, Status } from "./grpc_web.ts";
import {
  type AgentArriveRequest,
  type AgentEvent,
  type AgentList,
  type ArriveResponse,
  type ClusterInfo,
  type Codec,
  codecs,
  type DialResult,
  type HealthInfo,
  type InterceptConnection,
  type InterceptInfo,
  methods,
  type VersionInfo,
} from "./messages.ts";
import { Tunnel, type TunnelMethod, type TunnelRequest } from "./tunnel.ts";
import { errorMessage } from "../base/error_message.ts";

export interface ConnectOptions extends Omit<ChannelOptions, "token"> {
  clientName?: string;
  namespace?: string;
  /** Called once if the session is lost: the manager expired it, or keepalives failed for a whole ttl. */
  onLost?: (reason: Error) => void;
  /** After a broken connection: the session to resume (`ManagerSession.resumed` says whether the manager did). */
  resumeSessionId?: string;
  signal?: AbortSignal;
}

/** Calls that need no session; what `connect` uses underneath. */
export class ManagerClient {
  constructor(readonly channel: Channel) {}

  async call<Req, Res>(
    method: string,
    req: Codec<Req>,
    res: Codec<Res>,
    value: Req,
    signal?: AbortSignal,
  ): Promise<Res> {
    const path = methods[method]?.path;
    if (!path) throw new TypeError(`Unknown method "${method}"`);
    const bytes = await this.channel.unary(path, req.encode(value), signal);
    try {
      return res.decode(bytes);
    } catch (e) {
      throw new GrpcError(Status.INTERNAL, `Cannot decode ${method} response: ${e instanceof Error ? e.message : e}`);
    }
  }

  version(): Promise<VersionInfo> {
    return this.call("Version", codecs.VersionRequest, codecs.VersionInfo, {});
  }

  health(): Promise<HealthInfo> {
    return this.call("Health", codecs.HealthRequest, codecs.HealthInfo, {});
  }
}

export class ManagerSession {
  readonly client: ManagerClient;
  readonly id: string;
  readonly ttlMs: number;
  readonly keepaliveIntervalMs: number;
  /** This session is one the manager resumed (connect's `resumeSessionId`), not a new one. */
  readonly resumed: boolean;
  /** How long the manager keeps resumable streams of a broken connection (0: it does not resume). */
  readonly resumeGraceMs: number;
  /** The cluster info from arrive, updated by `watchClusterInfo`. */
  clusterInfo: ClusterInfo;
  readonly #tunnels = new Set<Tunnel>();
  /** Resumable tunnels by stream id, and the TunnelAcks call their acks travel on (opened with the first ack). */
  readonly #resumable = new Map<string, Tunnel>();
  #acks: Call | undefined;
  #acksPending = new Map<string, number>();
  readonly #watches = new Set<Call>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastOk: number;
  #lost = false;
  #closed = false;
  readonly #onLost: ((reason: Error) => void) | undefined;

  /** Use `connect`. */
  constructor(
    client: ManagerClient,
    arrived: {
      sessionId: string;
      clusterInfo: ClusterInfo;
      ttlMs: number;
      keepaliveIntervalMs: number;
      resumed?: boolean;
      resumeGraceMs?: number;
    },
    onLost?: (reason: Error) => void,
  ) {
    this.client = client;
    this.id = arrived.sessionId;
    this.resumed = arrived.resumed ?? false;
    this.resumeGraceMs = arrived.resumeGraceMs ?? 0;
    this.clusterInfo = arrived.clusterInfo;
    this.ttlMs = arrived.ttlMs;
    this.keepaliveIntervalMs = Math.max(100, arrived.keepaliveIntervalMs);
    this.#onLost = onLost;
    this.#lastOk = Date.now();
    this.#schedule();
    // A connection that closes (the manager went away, a port-forward broke) loses the session at once; keepalives
    // catch the connections that hang without closing.
    client.channel.closed.then(() => {
      if (this.#closed || this.#lost) return;
      this.#lost = true;
      clearTimeout(this.#timer);
      const why = client.channel.error?.message;
      this.#onLost?.(new Error(`the connection to the manager closed${why ? `: ${why}` : ""}`));
    });
  }

  get channel(): Channel {
    return this.client.channel;
  }

  /** Whether this session's connection is gone (closed, lost or detached): nothing more opens on it. */
  get closed(): boolean {
    return this.#closed || this.#lost;
  }

  /** Opens a tunnel and waits for the dial result (`tunnel.dial`). A refused stream rejects with a GrpcError. */
  async openTunnel(request: TunnelRequest, how: TunnelMethod = {}): Promise<Tunnel> {
    const t = new Tunnel(this.channel, this.id, request, how);
    this.#tunnels.add(t);
    t.ended.then(() => this.#tunnels.delete(t));
    try {
      await t.opened();
    } catch (e) {
      await t.ended;
      throw e;
    }
    if (t.resumable) this.#keepResumable(t);
    return t;
  }

  /** A resumable tunnel's acks go out on this session's TunnelAcks stream, and the manager's come back to it. */
  #keepResumable(t: Tunnel): void {
    const id = t.streamId;
    this.#resumable.set(id, t);
    t.sendAck = (received) => this.#ack(id, received);
    // The ack stream opens with the first resumable tunnel, so that the manager's acks have a way back from the start.
    if (!this.#acks) this.#ack(id, t.received);
    t.ended.then(() => {
      if (this.#resumable.get(id) === t) this.#resumable.delete(id);
    });
  }

  #ack(streamId: string, received: number): void {
    if (this.#closed || this.#lost) return;
    const first = this.#acksPending.size === 0;
    this.#acksPending.set(streamId, received);
    if (first) queueMicrotask(() => this.#flushAcks());
  }

  #flushAcks(): void {
    const acks = [...this.#acksPending].map(([streamId, received]) => ({ streamId, received }));
    this.#acksPending.clear();
    if (acks.length === 0 || this.#closed || this.#lost) return;
    try {
      if (!this.#acks || this.#acks.stream.sendEnded) {
        const call = new Call(this.channel.open(methods["TunnelAcks"]!.path), this.channel.maxMessageSize);
        call.onMessage = (m) => {
          let msg;
          try {
            msg = codecs.TunnelAcks.decode(m);
          } catch {
            return call.cancel();
          }
          for (const a of msg.acks) this.#resumable.get(a.streamId)?.acknowledged(a.received);
        };
        call.onEnd = () => {
          if (this.#acks === call) this.#acks = undefined;
        };
        call.stream.write(encodeFrame(codecs.TunnelAcks.encode({ sessionId: this.id, acks: [] })));
        this.#acks = call;
      }
      this.#acks.stream.write(encodeFrame(codecs.TunnelAcks.encode({ sessionId: "", acks })));
    } catch {
      // The connection is gone: the resume exchange counts again.
    }
  }

  /** Sends a raw DNS query to the cluster's DNS server and returns its raw answer. */
  async dns(query: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const r = await this.client.call(
      "Dns",
      codecs.DnsRequest,
      codecs.DnsResponse,
      { sessionId: this.id, query },
      signal,
    );
    return r.answer;
  }

  /**
   * One ICMP echo to a cluster address, sent by the manager: the reply's data, or null when none came within
   * `timeoutMs`. `unavailable` is set (and nothing was sent) when the manager cannot send ICMP echo at all.
   */
  async ping(
    destination: string,
    data: Uint8Array,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<{ reply: Uint8Array | null; unavailable: string }> {
    const r = await this.client.call(
      "Ping",
      codecs.PingRequest,
      codecs.PingResponse,
      { sessionId: this.id, destination, data, timeoutMs },
      signal,
    );
    return { reply: r.replied ? r.data : null, unavailable: r.unavailable };
  }

  /** The cluster info now, then on each change, until the session ends or the loop breaks. */
  async *watchClusterInfo(): AsyncGenerator<ClusterInfo> {
    for await (const info of this.#watch("WatchClusterInfo", codecs.ClusterInfo)) {
      this.clusterInfo = info;
      yield info;
    }
  }

  // --- intercepts: the workstation's side ---

  /** Intercepts a workload's port (0: its only port) to `localPort` on this machine. GrpcError on refusal. */
  createIntercept(workload: string, appPort: number, localPort: number): Promise<InterceptInfo> {
    return this.client.call("CreateIntercept", codecs.CreateInterceptRequest, codecs.InterceptInfo, {
      sessionId: this.id,
      workload,
      appPort,
      localPort,
    });
  }

  /**
   * Ends this session's intercepts of a workload (every one when ""), or only its intercept of `appPort` (0: every
   * port); resolves with how many ended.
   */
  async removeIntercept(workload: string, appPort = 0): Promise<number> {
    const r = await this.client.call("RemoveIntercept", codecs.RemoveInterceptRequest, codecs.RemoveInterceptResponse, {
      sessionId: this.id,
      workload,
      appPort,
    });
    return r.removed;
  }

  listAgents(namespace = ""): Promise<AgentList> {
    return this.client.call("ListAgents", codecs.ListAgentsRequest, codecs.AgentList, {
      sessionId: this.id,
      namespace,
    });
  }

  /** Each connection the cluster sends this workstation, until the session ends; answer with `joinIntercept`. */
  watchInterceptConnections(): AsyncGenerator<InterceptConnection> {
    return this.#watch("WatchInterceptConnections", codecs.InterceptConnection);
  }

  /**
   * Joins an announced connection with this side's dial result (of its local port). `resumable`: ask for a stream
   * that survives a broken connection (a manager that agrees says so after the join: `tunnel.resumable`; an older
   * one relays it as before, and it ends with the connection).
   */
  joinIntercept(c: InterceptConnection, dial: DialResult, how: { resumable?: boolean } = {}): Tunnel {
    const t = new Tunnel(this.channel, this.id, {
      protocol: "tcp",
      source: c.source ?? { ip: "", port: 0 },
      destination: { ip: "127.0.0.1", port: c.localPort },
    }, { method: "InterceptTunnel", connectionId: c.connectionId, dial, resumable: how.resumable === true });
    this.#tunnels.add(t);
    t.ended.then(() => this.#tunnels.delete(t));
    if (how.resumable) t.onResumable = () => this.#keepResumable(t);
    return t;
  }

  /**
   * An SFTP byte stream to an sftp-server the intercepted pod's agent runs (for `sshfs -o slave`). Rejects with a
   * GrpcError when the manager refuses the stream; `tunnel.dial` says whether the agent's server started.
   * `resumable`: ask for a stream that survives a broken connection (`tunnel.resumable` once the manager agreed; an
   * older one relays it as before, and it ends with the connection).
   */
  openMount(interceptId: string, how: { resumable?: boolean } = {}): Promise<Tunnel> {
    return this.openTunnel({
      protocol: "tcp",
      source: { ip: "", port: 0 },
      destination: { ip: "", port: 0 },
    }, { method: "MountTunnel", interceptId, resumable: how.resumable === true });
  }

  // --- the traffic-agent's side ---

  /** Joins a workstation's mount stream (after an `sftp` event) with this side's result of starting its server. */
  joinMount(connectionId: string, dial: DialResult): Tunnel {
    const t = new Tunnel(this.channel, this.id, {
      protocol: "tcp",
      source: { ip: "", port: 0 },
      destination: { ip: "", port: 0 },
    }, { method: "AgentTunnel", connectionId, dial });
    this.#tunnels.add(t);
    t.ended.then(() => this.#tunnels.delete(t));
    return t;
  }

  /** The agent's events (its intercepted ports, DNS queries to answer) until the session ends. */
  watchAgent(): AsyncGenerator<AgentEvent> {
    return this.#watch("WatchAgent", codecs.AgentEvent);
  }

  async agentDnsAnswer(id: number, answer: Uint8Array): Promise<void> {
    await this.client.call("AgentDnsAnswer", codecs.AgentDnsAnswerRequest, codecs.AgentDnsAnswerResponse, {
      sessionId: this.id,
      id,
      answer,
    });
  }

  async *#watch<T>(method: string, codec: Codec<T>): AsyncGenerator<T> {
    const call = new Call(this.channel.open(methods[method]!.path), this.channel.maxMessageSize);
    this.#watches.add(call);
    try {
      call.stream.write(encodeFrame(codecs.SessionRef.encode({ sessionId: this.id })));
      call.stream.end();
      for (let m = await call.nextMessage(); m; m = await call.nextMessage()) yield codec.decode(m);
      const s = await call.status;
      if (s.code !== Status.OK && !this.#closed) throw new GrpcError(s.code, s.message);
    } finally {
      this.#watches.delete(call);
      call.cancel();
    }
  }

  /** Tunnels now open on this session. */
  get tunnels(): ReadonlySet<Tunnel> {
    return this.#tunnels;
  }

  /**
   * Checks the session now (a keepalive): rejects when the manager does not know it any more, or gave no answer within
   * `timeoutMs` (the connection hangs).
   */
  async probe(timeoutMs: number): Promise<void> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      await this.client.call(
        "Keepalive",
        codecs.SessionRef,
        codecs.KeepaliveResponse,
        { sessionId: this.id },
        abort.signal,
      );
    } catch (e) {
      if (abort.signal.aborted) throw new Error(`the manager gave no answer within ${timeoutMs} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    this.#lastOk = Date.now();
  }

  /** Ends the session at the manager (its streams end with it) and closes the connection. */
  /**
   * After `adopt` on a resumed session: tells the manager every stream this side still holds has rejoined, so that it
   * resets the others now (their far ends would wait out the grace period). Returns how many it reset; 0 from a
   * manager that predates it.
   */
  async rejoined(): Promise<number> {
    try {
      const r = await this.client.call("Rejoined", codecs.SessionRef, codecs.RejoinedResponse, { sessionId: this.id });
      return r.reset ?? 0;
    } catch (e) {
      if (e instanceof GrpcError && e.code === Status.UNIMPLEMENTED) return 0;
      throw e;
    }
  }

  async depart(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.#lost) {
        await this.client.call("Depart", codecs.SessionRef, codecs.DepartResponse, { sessionId: this.id });
      }
    } catch {
      // Departing is best effort: the manager expires the session anyway.
    }
    await this.close();
  }

  /**
   * Lets go of a broken connection without ending what can resume: keepalives and watches stop, tunnels that cannot
   * resume are reset, and the connection is destroyed, which suspends the resumable ones. Returns those, for
   * `adopt` on the session that resumes this one (or for `reset` when none does).
   */
  async detach(): Promise<Tunnel[]> {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const c of this.#watches) c.cancel();
    this.#acks?.cancel();
    const keep = [...this.#tunnels].filter((t) => t.resumable && !t.finished);
    for (const t of this.#tunnels) if (!keep.includes(t)) t.reset("session closed");
    this.#tunnels.clear();
    await this.channel.destroy();
    return keep.filter((t) => t.suspended);
  }

  /**
   * Takes over suspended tunnels of the session this one resumed: each rejoins its stream on this connection (one
   * reset meanwhile tells the manager, and counts as not resumed).
   */
  adopt(tunnels: Iterable<Tunnel>): Promise<boolean[]> {
    const resumed: Promise<boolean>[] = [];
    for (const t of tunnels) {
      // Reset while suspended: the manager hears of it now, and it does not resume.
      if (t.resetLate(this.channel, this.id)) {
        resumed.push(Promise.resolve(false));
        continue;
      }
      this.#tunnels.add(t);
      t.ended.then(() => this.#tunnels.delete(t));
      this.#keepResumable(t);
      resumed.push(t.resume(this.channel, this.id));
    }
    return Promise.all(resumed);
  }

  /** Closes the connection without departing (the manager expires the session after its ttl). */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const c of this.#watches) c.cancel();
    this.#acks?.cancel();
    for (const t of this.#tunnels) t.reset("session closed");
    await this.channel.destroy();
  }

  #schedule(): void {
    if (this.#closed || this.#lost) return;
    this.#timer = setTimeout(() => this.#keepalive(), this.keepaliveIntervalMs);
  }

  async #keepalive(): Promise<void> {
    try {
      await this.client.call("Keepalive", codecs.SessionRef, codecs.KeepaliveResponse, { sessionId: this.id });
      this.#lastOk = Date.now();
    } catch (e) {
      if (this.#closed) return;
      const gone = e instanceof GrpcError && e.code === Status.NOT_FOUND;
      if (gone || Date.now() - this.#lastOk > this.ttlMs) {
        this.#lost = true;
        this.#onLost?.(e instanceof Error ? e : new Error(String(e)));
        return;
      }
    }
    this.#schedule();
  }
}

/**
 * Connects to a manager and arrives: `target` is a URL (http:// h2c, https:// TLS) or a factory of any duplex byte
 * stream (a port-forward). Rejects with a GrpcError (UNAUTHENTICATED for a wrong token, UNAVAILABLE when unreachable).
 */
export function connect(
  target: string | URL | DuplexFactory,
  token: string | undefined,
  options: ConnectOptions = {},
): Promise<ManagerSession> {
  return arrive(target, token, options, (client) =>
    client.call("Arrive", codecs.ArriveRequest, codecs.ArriveResponse, {
      clientName: options.clientName ?? Deno.hostname(),
      namespace: options.namespace ?? "default",
      clientVersion: VERSION,
      resumeSessionId: options.resumeSessionId ?? "",
    }, options.signal));
}

/** Connects as a traffic-agent: the same session machinery, registered as one pod of a workload. */
export function connectAgent(
  target: string | URL | DuplexFactory,
  token: string | undefined,
  agent: AgentArriveRequest,
  options: ConnectOptions = {},
): Promise<ManagerSession> {
  return arrive(
    target,
    token,
    options,
    (client) => client.call("AgentArrive", codecs.AgentArriveRequest, codecs.ArriveResponse, agent, options.signal),
  );
}

async function arrive(
  target: string | URL | DuplexFactory,
  token: string | undefined,
  options: ConnectOptions,
  call: (client: ManagerClient) => Promise<ArriveResponse>,
): Promise<ManagerSession> {
  const channel = new Channel(target, { ...options, ...(token !== undefined ? { token } : {}) });
  const client = new ManagerClient(channel);
  try {
    const r = await call(client);
    if (!r.clusterInfo) throw new GrpcError(Status.INTERNAL, "Arrive answered without cluster info");
    return new ManagerSession(client, {
      sessionId: r.sessionId,
      clusterInfo: r.clusterInfo,
      ttlMs: r.sessionTtlMs,
      keepaliveIntervalMs: r.keepaliveIntervalMs,
      resumed: r.resumed ?? false,
      resumeGraceMs: r.resumeGraceMs ?? 0,
    }, options.onLost);
  } catch (e) {
    await channel.destroy();
    if (e instanceof GrpcError) throw e;
    throw new GrpcError(Status.UNAVAILABLE, errorMessage(e));
  }
}
