/**
 * The manager's intercept methods: agents register and watch, workstations create and watch intercepts, and each
 * intercepted connection is an agent's AgentTunnel joined with the intercepting workstation's InterceptTunnel
 * (manager/relay.ts), or, when the workstation asked for it, carried as a resumable stream that survives the
 * workstation's broken connection (manager/intercept_resume.ts). The workstation opens nothing but streams on its one
 * connection: a connection is announced on its WatchInterceptConnections stream, and it answers with an
 * InterceptTunnel naming the connection.
 *
 * DNS through agents: a query for a name in a namespace with an intercepted workload goes to an agent of that
 * workload first (it answers in the pod's own context); when the agent has no answer, the manager's own lookup
 * answers.
 *
 * Every table here is bounded: agents and workstations are sessions (the manager's session limit), a session holds
 * at most MAX_INTERCEPTS_PER_SESSION intercepts, connections waiting for their workstation at most MAX_PENDING (each
 * for JOIN_TIMEOUT_MS), DNS queries waiting for an agent at most MAX_DNS_IN_FLIGHT (each for AGENT_DNS_TIMEOUT_MS).
 */
import { GrpcError, Status, statusName } from "../proto/grpc_web.ts";
import {
  type AgentArriveRequest,
  type AgentDnsAnswerRequest,
  type AgentList,
  codecs,
  type CreateInterceptRequest,
  DialCode,
  encodeTunnelFrame,
  type InterceptInfo,
  type ListAgentsRequest,
  type RemoveInterceptRequest,
  type RemoveInterceptResponse,
  type TunnelOpen,
} from "../proto/messages.ts";
import { Rcode, scanMessage } from "../net/dns/message.ts";
import { DEFAULTS, type ManagerConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Session, Sessions, SessionStream } from "./sessions.ts";
import type { FrameSink, MessageSource } from "./_streams.ts";
import { InterceptTable } from "./intercepts.ts";
import { relay, type StreamEnd } from "./relay.ts";
import { decodeTunnelMessage } from "./tunnel.ts";
import { carryResumable, type InterceptResumeHost, resumeIntercepted } from "./intercept_resume.ts";
import { carryMount } from "./mount_resume.ts";

/** How long an announced connection waits for its workstation to join. */
export const JOIN_TIMEOUT_MS = 10_000;
/** Connections announced and not yet joined, in all. */
export const MAX_PENDING = 1024;
/** How long the manager waits for an agent's DNS answer before its own lookup answers. */
export const AGENT_DNS_TIMEOUT_MS = 2_000;
export const MAX_DNS_IN_FLIGHT = 1024;
/** How long a new stream may take to send its open frame. */
const OPEN_TIMEOUT_MS = 10_000;
/**
 * How long connections announced to a workstation whose watch went away with its connection wait for its next watch
 * (its link broke and comes back: the manager often hears of the old connection's end, its FIN or RST, a moment
 * before the new one's watch arrives) before they go to the app in the pod, unless `interceptGraceMs` says otherwise
 * (`tp manager --intercept-grace`). A workstation that died costs them this.
 */
export const WATCH_GONE_GRACE_MS = DEFAULTS.interceptGraceMs;

interface Pending {
  /** The session that must join it. */
  sessionId: string;
  /** What announced it on that session's watch: sent again on a newer watch (the session reconnected). */
  announcement: Uint8Array;
  timer: ReturnType<typeof setTimeout>;
  /** Gives it back unless a new watch of its session comes first (the grace, WATCH_GONE_GRACE_MS by default). */
  late?: ReturnType<typeof setTimeout>;
  /** `resumable`: the workstation asked for a resumable stream (TunnelOpen.resumable). */
  join(ws: StreamEnd, session: Session, resumable: boolean): void;
  /** The workstation cannot take it after all: the agent's app serves it (no byte was read yet). */
  giveBack(reason: string): void;
}

export interface InterceptHost extends InterceptResumeHost {
  config: ManagerConfig;
  logger: Logger;
  metrics: Metrics;
  sessions: Sessions;
  /** The session, after recording its sign of life; GrpcError NOT_FOUND when unknown. */
  touch(id: string): Session;
}

export class InterceptService {
  readonly table = new InterceptTable();
  readonly #host: InterceptHost;
  /** Workstation session -> its WatchInterceptConnections stream. */
  readonly #clientWatches = new Map<string, FrameSink>();
  /** Agent session -> its WatchAgent stream. */
  readonly #agentWatches = new Map<string, FrameSink>();
  readonly #pending = new Map<string, Pending>();
  /** DNS queries sent to agents, by id: the agent asked, and who waits for its answer. */
  readonly #dns = new Map<number, { agent: string; answer: (answer: Uint8Array | undefined) => void }>();
  /**
   * Workstation session -> the relayed streams that carry one of its streams (a joined intercepted connection, a
   * mount): what ends when it resumes on a new connection.
   */
  readonly #relays = new Map<string, Set<SessionStream>>();

  constructor(host: InterceptHost) {
    this.#host = host;
  }

  /** A session ended (departed, expired, shut down): its agent, intercepts and watches go with it. */
  sessionEnded(s: Session): void {
    this.#clientWatches.delete(s.id);
    this.#agentWatches.delete(s.id);
    const gone = this.table.removeAgent(s.id);
    if (gone) {
      this.#host.logger.info("agent left", { session: s.tag, namespace: gone.namespace, workload: gone.workload });
    }
    const ended = this.table.remove(s.id);
    for (const r of ended) {
      this.#host.logger.info("intercept ended", { id: r.id, workload: r.workload, reason: "session" });
    }
    this.#tellAgents(new Set(ended.map((r) => `${r.namespace}/${r.workload}`)));
  }

  /**
   * A workstation resumed its session on a new connection. Its streams of the old connection that do not resume (its
   * mounts and the intercepted connections it opened or joined without asking for a resumable stream; the resumable
   * ones, `intercept_resume.ts` and `mount_resume.ts`, are not among them) were reset on its side when that
   * connection broke; here they would hang until the old connection timed out, so they end now: each agent's end
   * hears a reset, and the cluster's client a TCP RST. Connections announced to it and not yet joined stay: its new watch announces them again.
   */
  sessionResumed(s: Session): void {
    const relays = [...(this.#relays.get(s.id) ?? [])];
    for (const h of relays) h.abort("the workstation reconnected; this stream of its old connection is gone");
    if (relays.length) {
      this.#host.logger.info("streams of a resumed session's old connection reset", {
        session: s.tag,
        streams: relays.length,
      });
    }
  }

  // --- unary methods ---------------------------------------------------------------------------------------------

  /** Registers an agent on a session of its own (made by the caller); returns nothing the caller does not have. */
  agentArrived(session: Session, r: AgentArriveRequest): void {
    if (!r.namespace || !r.workload) {
      throw new GrpcError(Status.INVALID_ARGUMENT, "An agent must name its namespace and workload");
    }
    for (const f of r.forwards) {
      if (!validPort(f.agentPort) || !validPort(f.appPort)) {
        throw new GrpcError(Status.INVALID_ARGUMENT, `Bad forward ${f.agentPort}:${f.appPort}`);
      }
    }
    this.table.addAgent({
      sessionId: session.id,
      namespace: r.namespace,
      workload: r.workload,
      podName: r.podName,
      podIp: r.podIp,
      forwards: r.forwards,
      mounts: r.mounts,
      env: r.env,
      version: r.agentVersion,
    });
    this.#host.logger.info("agent arrived", {
      session: session.tag,
      namespace: r.namespace,
      workload: r.workload,
      pod: r.podName,
      podIp: r.podIp,
      ports: r.forwards.map((f) => `${f.agentPort}:${f.appPort}`).join(","),
    });
  }

  createIntercept(r: CreateInterceptRequest): InterceptInfo {
    const s = this.#client(r.sessionId);
    const rec = this.table.create({
      sessionId: s.id,
      clientName: s.clientName,
      namespace: s.namespace,
      workload: r.workload,
      appPort: r.appPort,
      localPort: r.localPort,
    });
    this.#host.logger.info("intercept started", {
      id: rec.id,
      session: s.tag,
      client: s.clientName,
      namespace: rec.namespace,
      workload: rec.workload,
      appPort: rec.appPort,
      localPort: rec.localPort,
    });
    this.#tellAgents(new Set([`${rec.namespace}/${rec.workload}`]));
    return this.table.info(rec, true);
  }

  removeIntercept(r: RemoveInterceptRequest): RemoveInterceptResponse {
    const s = this.#client(r.sessionId);
    const ended = this.table.remove(s.id, r.workload, r.appPort);
    for (const e of ended) {
      this.#host.logger.info("intercept ended", { id: e.id, workload: e.workload, appPort: e.appPort, reason: "left" });
    }
    this.#tellAgents(new Set(ended.map((e) => `${e.namespace}/${e.workload}`)));
    return { removed: ended.length };
  }

  listAgents(r: ListAgentsRequest): AgentList {
    const s = this.#host.touch(r.sessionId);
    const ns = r.namespace || s.namespace;
    return {
      agents: this.table.agentsIn(ns).map((a) => this.table.agentInfo(a)),
      intercepts: this.table.inNamespace(ns).map((i) => this.table.info(i, false)),
    };
  }

  agentDnsAnswer(r: AgentDnsAnswerRequest): Record<string, never> {
    const s = this.#agent(r.sessionId);
    const waiter = this.#dns.get(r.id);
    // Only the agent that was asked may answer (another agent's answer to a guessed id is dropped).
    if (waiter && waiter.agent === s.id) {
      this.#dns.delete(r.id);
      waiter.answer(r.answer.length ? r.answer : undefined);
    }
    return {};
  }

  // --- watches ---------------------------------------------------------------------------------------------------

  /** Holds a workstation's announcement stream until its session ends or it goes away. */
  watchConnections(sessionId: string, frames: () => FrameSink): void {
    const s = this.#client(sessionId);
    const out = frames();
    this.#clientWatches.get(s.id)?.end(Status.OK, "replaced by a newer watch");
    this.#hold(s, out, this.#clientWatches);
    this.#announceAgain(s.id, out);
  }

  /** Holds an agent's event stream; the first event is its intercepted ports. */
  watchAgent(sessionId: string, frames: () => FrameSink): void {
    const s = this.#agent(sessionId);
    const out = frames();
    this.#agentWatches.get(s.id)?.end(Status.OK, "replaced by a newer watch");
    this.#hold(s, out, this.#agentWatches);
    const a = this.table.agent(s.id)!;
    out.writeMessage(
      codecs.AgentEvent.encode({ intercepts: { appPorts: this.table.interceptedPorts(a.namespace, a.workload) } }),
    );
    this.#announceAgain(s.id, out);
  }

  /**
   * Announces again, on a session's new watch, what waits for it to join: announced on its old watch, which may have
   * died with its old connection before the announcement reached it (a workstation whose link broke and came back).
   * One that did reach it and was joined is no longer pending; a second join of the same one is refused (NOT_FOUND).
   */
  #announceAgain(sessionId: string, out: FrameSink): void {
    for (const p of this.#pending.values()) {
      if (p.sessionId !== sessionId) continue;
      clearTimeout(p.late);
      delete p.late;
      out.writeMessage(p.announcement);
    }
  }

  #hold(s: Session, out: FrameSink, map: Map<string, FrameSink>): void {
    map.set(s.id, out);
    const gone = (reason: string) => {
      if (map.get(s.id) !== out) return;
      map.delete(s.id);
      // A workstation whose watch is gone cannot join what was announced to it: its app serves it. While its session
      // lives (its link may be back in a moment, with a new watch) a little later; an agent's at once.
      const wait = s.kind === "client" && this.#host.sessions.get(s.id) !== undefined;
      const graceMs = this.#host.config.interceptGraceMs ?? WATCH_GONE_GRACE_MS;
      let waiting = 0;
      for (const p of [...this.#pending.values()]) {
        if (p.sessionId !== s.id) continue;
        if (!wait) p.giveBack(reason);
        else if (!p.late) {
          p.late = setTimeout(() => p.giveBack(reason), graceMs);
          waiting++;
        }
      }
      if (waiting > 0) {
        this.#host.logger.info("intercepted connections wait for the workstation's next watch", {
          session: s.tag,
          connections: waiting,
          graceMs,
        });
      }
    };
    const handle: SessionStream = {
      abort: (reason) => {
        gone(reason);
        out.end(Status.OK, reason);
      },
    };
    s.streams.add(handle);
    out.onCancel = () => {
      gone("the workstation went away");
      s.streams.delete(handle);
    };
  }

  // --- DNS -------------------------------------------------------------------------------------------------------

  /**
   * Asks an agent of an intercepted workload in the query name's namespace; undefined when no agent is asked, it
   * does not answer in time, or its answer is not NOERROR with records (the manager's own lookup answers then).
   */
  async dnsViaAgent(query: Uint8Array): Promise<Uint8Array | undefined> {
    const namespaces = this.table.interceptedNamespaces();
    if (namespaces.size === 0 || this.#dns.size >= MAX_DNS_IN_FLIGHT) return undefined;
    const info = scanMessage(query);
    const name = info?.question?.name;
    if (!name) return undefined;
    const ns = namespaceOf(name, this.#host.config.clusterDomain, namespaces);
    if (!ns) return undefined;
    const intercepted = this.table.inNamespace(ns)[0];
    if (!intercepted) return undefined;
    const agent = this.table.agentsOf(ns, intercepted.workload).find((a) => this.#agentWatches.has(a.sessionId));
    const watch = agent && this.#agentWatches.get(agent.sessionId);
    if (!watch) return undefined;
    let id: number;
    do id = crypto.getRandomValues(new Uint32Array(1))[0]!; while (this.#dns.has(id));
    const answer = await new Promise<Uint8Array | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.#dns.delete(id);
        resolve(undefined);
      }, AGENT_DNS_TIMEOUT_MS);
      this.#dns.set(id, {
        agent: agent.sessionId,
        answer: (a) => {
          clearTimeout(timer);
          resolve(a);
        },
      });
      watch.writeMessage(codecs.AgentEvent.encode({ dnsQuery: { id, query } }));
    });
    if (!answer) return undefined;
    const a = scanMessage(answer);
    if (!a || a.rcode !== Rcode.NOERROR || !a.records.some((r) => r.section === "answer")) return undefined;
    // The client's id, whatever the agent's resolver used.
    const out = new Uint8Array(answer);
    out[0] = query[0]!;
    out[1] = query[1]!;
    return out;
  }

  /** Ends pending DNS questions (shutdown). */
  close(): void {
    for (const w of this.#dns.values()) w.answer(undefined);
    this.#dns.clear();
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      clearTimeout(p.late);
    }
    this.#pending.clear();
  }

  // --- tunnels ---------------------------------------------------------------------------------------------------

  /**
   * An agent's AgentTunnel. Without a connection id: a connection to an intercepted port, announced to the
   * intercepting workstation, which joins it. With one: the agent joins a mount stream a workstation opened.
   */
  async serveAgentTunnel(reader: MessageSource, out: FrameSink): Promise<void> {
    const { metrics } = this.#host;
    const abort = new AbortController();
    out.onCancel = () => abort.abort("agent cancelled the stream");
    let open: TunnelOpen;
    let session: Session;
    try {
      open = await this.#readOpen(reader, abort.signal);
      session = this.#agent(open.sessionId);
      if (open.connectionId) return this.#join(open, session, { reader, out, name: "agent" });
    } catch (e) {
      return this.#refuse("AgentTunnel", e, reader, out);
    }
    const agent = this.table.agent(session.id)!;
    const port = open.destination?.port ?? 0;
    const rec = this.table.find(agent.namespace, agent.workload, port);
    const watch = rec && this.#clientWatches.get(rec.sessionId);
    const refuse = (code: number, message: string) => {
      metrics.interceptConnections.add({ result: statusWord(code) }, 1);
      dialAndEnd({ reader, out, name: "agent" }, code, message);
    };
    if (!rec) return refuse(DialCode.denied, `port ${port} of ${agent.workload} is not intercepted`);
    // A workstation that went away without leaving (kill -9) holds its intercept until its session expires; the app
    // serves its connections meanwhile (DENIED sends the agent to the app).
    if (!watch) return refuse(DialCode.denied, `the workstation ${rec.clientName} is not taking connections`);
    const r = await this.#rendezvous(
      { reader, out, name: "agent" },
      session,
      rec.sessionId,
      abort,
      (connectionId) =>
        codecs.InterceptConnection.encode({
          connectionId,
          interceptId: rec.id,
          localPort: rec.localPort,
          source: open.source,
        }),
      this.#clientWatches,
    );
    if (r.refused) return refuse(r.refused.code, r.refused.message);
    metrics.interceptConnections.add({ result: "joined" }, 1);
  }

  /**
   * A workstation's MountTunnel: an SFTP stream to an agent of the workload it intercepts (open{session_id,
   * intercept_id}). The agent is asked (a WatchAgent event) to join it with an sftp-server of its own. Asked for a
   * resumable stream (open.resumable), it is carried as one (`mount_resume.ts`); open.resume rejoins one.
   */
  async serveMountTunnel(reader: MessageSource, out: FrameSink): Promise<void> {
    const abort = new AbortController();
    out.onCancel = () => abort.abort("workstation cancelled the stream");
    const end: StreamEnd = { reader, out, name: "workstation" };
    let open: TunnelOpen;
    let session: Session;
    try {
      open = await this.#readOpen(reader, abort.signal);
      session = this.#client(open.sessionId);
    } catch (e) {
      return this.#refuse("MountTunnel", e, reader, out);
    }
    if (open.resume) return await resumeIntercepted(this.#host, session.id, open.resume, end);
    const rec = this.table.get(open.interceptId ?? "");
    if (!rec || rec.sessionId !== session.id) {
      return dialAndEnd(end, DialCode.denied, `No intercept "${open.interceptId}" of this session`);
    }
    const agent = this.table.agentsOf(rec.namespace, rec.workload).find((a) => this.#agentWatches.has(a.sessionId));
    if (!agent) return dialAndEnd(end, DialCode.unreachable, `no agent of ${rec.workload} is connected`);
    const r = await this.#rendezvous(
      end,
      session,
      agent.sessionId,
      abort,
      (connectionId) => codecs.AgentEvent.encode({ sftp: { connectionId, interceptId: rec.id } }),
      this.#agentWatches,
      open.resumable === true,
    );
    if (r.refused) dialAndEnd(end, r.refused.code, r.refused.message);
  }

  /** A workstation's InterceptTunnel: joins the announced connection it names. */
  async serveInterceptTunnel(reader: MessageSource, out: FrameSink): Promise<void> {
    const abort = new AbortController();
    out.onCancel = () => abort.abort("workstation cancelled the stream");
    try {
      const open = await this.#readOpen(reader, abort.signal);
      const session = this.#client(open.sessionId);
      const ws: StreamEnd = { reader, out, name: "workstation" };
      if (open.resume) return await resumeIntercepted(this.#host, session.id, open.resume, ws);
      this.#join(open, session, ws);
    } catch (e) {
      return this.#refuse("InterceptTunnel", e, reader, out);
    }
  }

  /** Hands a joining stream to the stream that waits for it; NOT_FOUND when none waits for this session. */
  #join(open: TunnelOpen, session: Session, end: StreamEnd): void {
    const p = this.#pending.get(open.connectionId ?? "");
    if (!p || p.sessionId !== session.id) {
      throw new GrpcError(Status.NOT_FOUND, `No connection "${open.connectionId}" waits for this session`);
    }
    p.join(end, session, open.resumable === true);
  }

  /**
   * Announces a stream (the message `announcement` makes of its connection id) on the watch (in `watches`) of the
   * session that should join it, waits for the join, and relays until both ends are done. Returns what to refuse the
   * first stream with when no join came: DENIED when the joining session's watch went away (nothing was read yet: an
   * agent's app can serve it), TIMEOUT after JOIN_TIMEOUT_MS. `firstResumable`: the first stream is a workstation's
   * mount that asked for a resumable stream (`mount_resume.ts`).
   */
  async #rendezvous(
    first: StreamEnd,
    session: Session,
    joinerSessionId: string,
    abort: AbortController,
    announcement: (connectionId: string) => Uint8Array,
    watches: Map<string, FrameSink>,
    firstResumable = false,
  ): Promise<{ refused?: { code: number; message: string } }> {
    const { metrics, config } = this.#host;
    if (this.#pending.size >= MAX_PENDING) {
      return { refused: { code: DialCode.unreachable, message: "too many connections waiting" } };
    }
    if (session.streams.size >= config.maxStreamsPerSession) {
      return { refused: { code: DialCode.unreachable, message: "the session holds its maximum of streams" } };
    }
    const connectionId = crypto.randomUUID();
    const message = announcement(connectionId);
    const handle: SessionStream = { abort: (reason) => abort.abort(reason) };
    session.streams.add(handle);
    // A workstation's stream from the start (its mount), or once it joined (an intercepted connection).
    const relayOf = (s: Session) => {
      if (s.kind !== "client") return;
      const set = this.#relays.get(s.id) ?? new Set();
      this.#relays.set(s.id, set.add(handle));
    };
    if (!firstResumable) relayOf(session);
    metrics.streams.add({ protocol: "intercept" }, 1);
    let joiner: Session | undefined;
    let resumable = false;
    try {
      let givenBack = "";
      const other = await new Promise<StreamEnd | undefined>((resolve) => {
        const settle = (w: StreamEnd | undefined) => {
          clearTimeout(timer);
          clearTimeout(this.#pending.get(connectionId)?.late);
          abort.signal.removeEventListener("abort", onAbort);
          this.#pending.delete(connectionId);
          resolve(w);
        };
        const timer = setTimeout(() => settle(undefined), JOIN_TIMEOUT_MS);
        const onAbort = () => settle(undefined);
        abort.signal.addEventListener("abort", onAbort, { once: true });
        this.#pending.set(connectionId, {
          sessionId: joinerSessionId,
          announcement: message,
          timer,
          join: (w, s, wantsResume) => {
            joiner = s;
            s.streams.add(handle);
            // A resumable stream outlives the workstation's connection: not among what its resume resets.
            resumable = wantsResume && first.name === "agent";
            if (!resumable) relayOf(s);
            settle(w);
          },
          giveBack: (reason) => {
            givenBack = reason;
            settle(undefined);
          },
        });
        watches.get(joinerSessionId)?.writeMessage(message);
      });
      if (!other && givenBack) return { refused: { code: DialCode.denied, message: givenBack } };
      if (!other) {
        const message = abort.signal.aborted
          ? String(abort.signal.reason)
          : `the other end did not answer in ${JOIN_TIMEOUT_MS} ms`;
        return { refused: { code: DialCode.timeout, message } };
      }
      if (firstResumable) {
        if (await carryMount(this.#host, session, first, other, abort.signal) === "carried") {
          this.#host.logger.debug("resumable mount stream ended", { connection: connectionId });
          return {};
        }
        relayOf(session);
      }
      if (resumable) {
        // The workstation's dial result comes right after its open frame: a local app that took the connection
        // makes the stream resumable; a refusal goes to the agent as the relay would have passed it.
        const f = await firstFrame(other, abort.signal);
        if (f.dial && joiner) {
          await carryResumable(this.#host, joiner, first, other, f.dial, abort.signal);
          this.#host.logger.debug("resumable intercepted connection ended", { connection: connectionId });
          return {};
        }
        if (joiner) relayOf(joiner);
        if (f.gone !== undefined) {
          const reset = encodeTunnelFrame({ kind: "reset", reason: f.gone });
          for (const e of [first, other]) {
            e.out.writeMessage(reset);
            e.out.end(Status.OK, f.gone);
            e.reader.cancel();
          }
          return {};
        }
        if (f.other) first.out.writeMessage(f.other);
      }
      const outcome = await relay(first, other, decodeTunnelMessage, abort.signal);
      this.#host.logger.debug("relayed stream ended", {
        connection: connectionId,
        status: statusName(outcome.code),
        reason: outcome.message,
      });
      return {};
    } finally {
      for (const s of [session, joiner]) {
        if (!s) continue;
        s.streams.delete(handle);
        const set = this.#relays.get(s.id);
        if (set?.delete(handle) && set.size === 0) this.#relays.delete(s.id);
      }
      metrics.streams.add({ protocol: "intercept" }, -1);
    }
  }

  async #readOpen(reader: MessageSource, signal: AbortSignal): Promise<TunnelOpen> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      reader.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new GrpcError(Status.DEADLINE_EXCEEDED, "No open frame in time")),
          OPEN_TIMEOUT_MS,
        );
        signal.addEventListener("abort", () => reject(new GrpcError(Status.CANCELLED, String(signal.reason))), {
          once: true,
        });
      }),
    ]).finally(() => clearTimeout(timer));
    if (first === null) throw new GrpcError(Status.INVALID_ARGUMENT, "Stream ended before its open frame");
    const f = decodeTunnelMessage(first);
    if (f.kind !== "open") throw new GrpcError(Status.INVALID_ARGUMENT, `First frame is "${f.kind}", not "open"`);
    return f.open;
  }

  #refuse(method: string, e: unknown, reader: MessageSource, out: FrameSink): void {
    const err = e instanceof GrpcError ? e : new GrpcError(Status.INTERNAL, String(e));
    this.#host.metrics.requests.add({ method, status: statusName(err.code) }, 1);
    this.#host.logger.warn("stream refused", { method, status: statusName(err.code), reason: err.details });
    reader.cancel();
    out.end(err.code, err.details);
  }

  /** Tells each agent of these workloads ("ns/workload") its intercepted ports. */
  #tellAgents(workloads: Set<string>): void {
    for (const w of workloads) {
      const [ns, wl] = w.split("/") as [string, string];
      const msg = codecs.AgentEvent.encode({ intercepts: { appPorts: this.table.interceptedPorts(ns, wl) } });
      for (const a of this.table.agentsOf(ns, wl)) this.#agentWatches.get(a.sessionId)?.writeMessage(msg);
    }
  }

  #client(id: string): Session {
    const s = this.#host.touch(id);
    if (s.kind !== "client") throw new GrpcError(Status.PERMISSION_DENIED, "This method is for workstations");
    return s;
  }

  #agent(id: string): Session {
    const s = this.#host.touch(id);
    if (s.kind !== "agent") throw new GrpcError(Status.PERMISSION_DENIED, "This method is for traffic-agents");
    return s;
  }
}

/**
 * The workstation's first frame after its open: `dial` when it is an ok dial result (the stream can be resumable);
 * `other` when it is anything else (a refusal: it goes to the agent, and the relay carries on from there); `gone` when
 * the workstation's stream failed or ended first, or `signal` aborted the connection meanwhile (the agent's or the
 * workstation's session ended: the relay would have reset both streams).
 */
async function firstFrame(
  ws: StreamEnd,
  signal: AbortSignal,
): Promise<{ dial?: Uint8Array; other?: Uint8Array; gone?: string }> {
  let msg: Uint8Array | null;
  let onAbort: (() => void) | undefined;
  try {
    msg = await Promise.race([
      ws.reader.next(),
      new Promise<never>((_, reject) => {
        onAbort = () => reject(new AbortedError(String(signal.reason)));
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } catch (e) {
    if (e instanceof AbortedError) return { gone: e.message };
    return { gone: `workstation gone: ${e instanceof Error ? e.message : e}` };
  } finally {
    signal.removeEventListener("abort", onAbort!);
  }
  if (msg === null) return { gone: "the workstation ended its stream before its dial result" };
  try {
    const f = decodeTunnelMessage(msg);
    if (f.kind === "dial" && f.dial.code === DialCode.ok) return { dial: msg };
  } catch { /* the relay's to refuse */ }
  return { other: msg };
}

class AbortedError extends Error {}

/** Answers a stream's open with a dial result and ends it. */
function dialAndEnd(end: StreamEnd, code: number, message: string): void {
  end.out.writeMessage(encodeTunnelFrame({ kind: "dial", dial: { code: code as DialCode, message } }));
  end.out.end(Status.OK);
  end.reader.cancel();
}

function validPort(p: number): boolean {
  return Number.isInteger(p) && p >= 1 && p <= 65535;
}

function statusWord(code: number): string {
  return code === DialCode.denied ? "not-intercepted" : code === DialCode.timeout ? "timeout" : "unreachable";
}

/**
 * The namespace a cluster name is in, when it is one of `namespaces`: `x.<ns>.svc.<domain>`, `x.<ns>.pod.<domain>`,
 * `<ns>.svc.<domain>`, `x.<ns>` (as the workstation may send it).
 */
export function namespaceOf(name: string, domain: string, namespaces: Set<string>): string | undefined {
  const labels = name.toLowerCase().replace(/\.$/, "").split(".");
  const d = domain.toLowerCase().split(".");
  const inDomain = labels.length > d.length && d.every((l, i) => labels[labels.length - d.length + i] === l);
  if (inDomain) {
    const rest = labels.slice(0, labels.length - d.length);
    const kind = rest.at(-1);
    if ((kind === "svc" || kind === "pod") && rest.length >= 2 && namespaces.has(rest.at(-2)!)) return rest.at(-2);
    return undefined;
  }
  if (labels.length >= 2 && namespaces.has(labels.at(-1)!)) return labels.at(-1);
  return undefined;
}

export type { InterceptInfo };
