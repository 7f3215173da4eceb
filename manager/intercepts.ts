/**
 * The manager's table of traffic-agents and intercepts. Sans-IO: no sockets, no timers; the manager's handlers call
 * it and act on what it returns.
 *
 * - An agent is one pod of a workload (namespace, workload), registered by its session: it ends with that session.
 * - An intercept sends the connections that reach one app port of a workload to one workstation session, whichever
 *   of the workload's pods they reach. One intercept per (namespace, workload, app port): a second workstation gets
 *   ALREADY_EXISTS naming the first.
 */
import { GrpcError, Status } from "../proto/grpc_web.ts";
import type { AgentForward, AgentInfo, InterceptInfo } from "../proto/messages.ts";

/** One session can hold this many intercepts (each one a workload port): a bound no client can move. */
export const MAX_INTERCEPTS_PER_SESSION = 32;

export interface AgentRecord {
  sessionId: string;
  namespace: string;
  workload: string;
  podName: string;
  podIp: string;
  forwards: AgentForward[];
  mounts: string[];
  env: Record<string, string>;
  version: string;
}

export interface InterceptRecord {
  id: string;
  sessionId: string;
  clientName: string;
  namespace: string;
  workload: string;
  appPort: number;
  localPort: number;
}

export interface CreateIntercept {
  sessionId: string;
  clientName: string;
  namespace: string;
  workload: string;
  /** 0: the workload's only port. */
  appPort: number;
  localPort: number;
}

const key = (namespace: string, workload: string) => `${namespace}/${workload}`;

export class InterceptTable {
  readonly #agents = new Map<string, AgentRecord>();
  readonly #intercepts = new Map<string, InterceptRecord>();

  get agentCount(): number {
    return this.#agents.size;
  }

  get interceptCount(): number {
    return this.#intercepts.size;
  }

  addAgent(a: AgentRecord): void {
    this.#agents.set(a.sessionId, a);
  }

  agent(sessionId: string): AgentRecord | undefined {
    return this.#agents.get(sessionId);
  }

  /** Forgets an agent; returns it (and whether its workload has no agent left). */
  removeAgent(sessionId: string): AgentRecord | undefined {
    const a = this.#agents.get(sessionId);
    this.#agents.delete(sessionId);
    return a;
  }

  /** The agents of one workload, oldest first. */
  agentsOf(namespace: string, workload: string): AgentRecord[] {
    const k = key(namespace, workload);
    return [...this.#agents.values()].filter((a) => key(a.namespace, a.workload) === k);
  }

  /** The agents of a namespace (every namespace when empty). */
  agentsIn(namespace: string): AgentRecord[] {
    return [...this.#agents.values()].filter((a) => !namespace || a.namespace === namespace);
  }

  /** Starts an intercept; GrpcError NOT_FOUND, INVALID_ARGUMENT, ALREADY_EXISTS or RESOURCE_EXHAUSTED otherwise. */
  create(c: CreateIntercept): InterceptRecord {
    if (!Number.isInteger(c.localPort) || c.localPort < 1 || c.localPort > 65535) {
      throw new GrpcError(Status.INVALID_ARGUMENT, `Local port ${c.localPort} is not a port (1-65535)`);
    }
    const agents = this.agentsOf(c.namespace, c.workload);
    if (agents.length === 0) {
      throw new GrpcError(
        Status.NOT_FOUND,
        `No traffic-agent serves ${c.workload} in namespace ${c.namespace}: it has no tp agent sidecar, or its pods ` +
          `are not ready`,
      );
    }
    const ports = [...new Set(agents.flatMap((a) => a.forwards.map((f) => f.appPort)))].sort((x, y) => x - y);
    let appPort = c.appPort;
    if (appPort === 0) {
      if (ports.length !== 1) {
        throw new GrpcError(
          Status.INVALID_ARGUMENT,
          `${c.workload} serves ports ${ports.join(", ")}: name one (--port LOCAL:APP_PORT)`,
        );
      }
      appPort = ports[0]!;
    } else if (!ports.includes(appPort)) {
      throw new GrpcError(
        Status.INVALID_ARGUMENT,
        `${c.workload} has no port ${appPort} the agent forwards; its ports: ${ports.join(", ") || "(none)"}`,
      );
    }
    const taken = this.find(c.namespace, c.workload, appPort);
    if (taken) {
      if (taken.sessionId === c.sessionId && taken.localPort === c.localPort) return taken;
      throw new GrpcError(
        Status.ALREADY_EXISTS,
        taken.sessionId === c.sessionId
          ? `${c.workload} port ${appPort} is already intercepted to local port ${taken.localPort}; tp leave ` +
            `${c.workload} --port ${appPort} first`
          : `${c.workload} port ${appPort} in namespace ${c.namespace} is already intercepted by ${taken.clientName}`,
      );
    }
    if (this.forSession(c.sessionId).length >= MAX_INTERCEPTS_PER_SESSION) {
      throw new GrpcError(Status.RESOURCE_EXHAUSTED, `A session may hold ${MAX_INTERCEPTS_PER_SESSION} intercepts`);
    }
    const rec: InterceptRecord = {
      id: crypto.randomUUID(),
      sessionId: c.sessionId,
      clientName: c.clientName,
      namespace: c.namespace,
      workload: c.workload,
      appPort,
      localPort: c.localPort,
    };
    this.#intercepts.set(rec.id, rec);
    return rec;
  }

  /**
   * Ends a session's intercepts of a workload (every workload when empty), or only its intercept of `appPort` (0:
   * every port); returns them.
   */
  remove(sessionId: string, workload = "", appPort = 0): InterceptRecord[] {
    if (appPort && !workload) throw new GrpcError(Status.INVALID_ARGUMENT, "An app port needs its workload");
    const out: InterceptRecord[] = [];
    for (const r of this.#intercepts.values()) {
      if (r.sessionId === sessionId && (!workload || r.workload === workload) && (!appPort || r.appPort === appPort)) {
        this.#intercepts.delete(r.id);
        out.push(r);
      }
    }
    return out;
  }

  get(id: string): InterceptRecord | undefined {
    return this.#intercepts.get(id);
  }

  find(namespace: string, workload: string, appPort: number): InterceptRecord | undefined {
    for (const r of this.#intercepts.values()) {
      if (r.namespace === namespace && r.workload === workload && r.appPort === appPort) return r;
    }
    return undefined;
  }

  forSession(sessionId: string): InterceptRecord[] {
    return [...this.#intercepts.values()].filter((r) => r.sessionId === sessionId);
  }

  inNamespace(namespace: string): InterceptRecord[] {
    return [...this.#intercepts.values()].filter((r) => !namespace || r.namespace === namespace);
  }

  /** The app ports of a workload that are intercepted now. */
  interceptedPorts(namespace: string, workload: string): number[] {
    return [...this.#intercepts.values()]
      .filter((r) => r.namespace === namespace && r.workload === workload)
      .map((r) => r.appPort)
      .sort((a, b) => a - b);
  }

  /** Namespaces with at least one intercept now. */
  interceptedNamespaces(): Set<string> {
    return new Set([...this.#intercepts.values()].map((r) => r.namespace));
  }

  /** The public view of an intercept; with the first agent's pod, environment and mounts when `withEnv`. */
  info(r: InterceptRecord, withEnv: boolean): InterceptInfo {
    const a = this.agentsOf(r.namespace, r.workload)[0];
    return {
      id: r.id,
      namespace: r.namespace,
      workload: r.workload,
      appPort: r.appPort,
      localPort: r.localPort,
      clientName: r.clientName,
      podName: a?.podName ?? "",
      podIp: a?.podIp ?? "",
      env: withEnv ? { ...(a?.env ?? {}) } : {},
      mounts: a?.mounts ?? [],
    };
  }

  agentInfo(a: AgentRecord): AgentInfo {
    return {
      namespace: a.namespace,
      workload: a.workload,
      podName: a.podName,
      podIp: a.podIp,
      forwards: a.forwards,
      mounts: a.mounts,
      version: a.version,
    };
  }
}
