/**
 * The daemon's intercepts: the workloads whose cluster connections come to this machine. For each session it keeps
 * one WatchInterceptConnections stream open; each connection it announces is dialed at 127.0.0.1:LOCAL_PORT here,
 * and joined (an InterceptTunnel stream on the same HTTP/2 connection) with the result: the local app's bytes, FINs
 * and resets then flow both ways. A closed local port answers "refused", and the cluster's client gets a reset at
 * once. After a reconnect (a new session) the intercepts are made again on the new session.
 */
import net from "node:net";
import { DialCode, type ManagerSession, pipeSocket } from "../../proto/mod.ts";
import type { AgentList, InterceptConnection, InterceptInfo } from "../../proto/messages.ts";

export interface InterceptStats {
  connections: number;
  refused: number;
  open: number;
}

interface Wanted {
  workload: string;
  appPort: number;
  localPort: number;
}

export class DaemonIntercepts {
  readonly stats: InterceptStats = { connections: 0, refused: 0, open: 0 };
  /** What the user asked for, by workload; remade on a new session. */
  readonly #wanted = new Map<string, Wanted[]>();
  /** The manager's view of each, as last created. */
  readonly #infos = new Map<string, InterceptInfo>();
  #session: ManagerSession | undefined;

  constructor(readonly log: (line: string) => void) {}

  /** Follows a (new) session: watches its connections and makes the wanted intercepts on it again. */
  attach(session: ManagerSession): void {
    this.#session = session;
    void this.#watch(session);
    if (this.#wanted.size === 0) return;
    void (async () => {
      for (const list of this.#wanted.values()) {
        for (const w of list) {
          try {
            const info = await session.createIntercept(w.workload, w.appPort, w.localPort);
            this.#infos.set(info.id, info);
          } catch (e) {
            this.log(`cannot intercept ${w.workload} again after reconnecting: ${(e as Error).message}`);
          }
        }
      }
    })();
  }

  async create(workload: string, appPort: number, localPort: number): Promise<InterceptInfo> {
    const s = this.#need();
    const info = await s.createIntercept(workload, appPort, localPort);
    this.#infos.set(info.id, info);
    const list = (this.#wanted.get(workload) ?? []).filter((w) => w.appPort !== info.appPort);
    this.#wanted.set(workload, [...list, { workload, appPort: info.appPort, localPort }]);
    this.log(`intercepting ${workload} port ${info.appPort} to 127.0.0.1:${localPort}`);
    return info;
  }

  /** Ends this machine's intercepts of a workload (every one when ""); resolves with how many ended. */
  async leave(workload: string): Promise<number> {
    const s = this.#need();
    const n = await s.removeIntercept(workload);
    for (const [id, info] of this.#infos) if (!workload || info.workload === workload) this.#infos.delete(id);
    if (workload) this.#wanted.delete(workload);
    else this.#wanted.clear();
    if (n) this.log(`left ${workload || "every intercept"}`);
    return n;
  }

  list(namespace: string): Promise<AgentList> {
    return this.#need().listAgents(namespace);
  }

  /** This machine's intercepts, for tp status. */
  status(): InterceptInfo[] {
    return [...this.#infos.values()].map((i) => ({ ...i, env: {} }));
  }

  /** Ends every intercept (tp quit): the agents go back to their apps at once, not after the session expires. */
  async close(): Promise<void> {
    if (this.#wanted.size && this.#session) await this.leave("").catch(() => {});
  }

  #need(): ManagerSession {
    if (!this.#session) throw new Error("not connected to the traffic-manager (reconnecting?); try again");
    return this.#session;
  }

  async #watch(session: ManagerSession): Promise<void> {
    try {
      for await (const c of session.watchInterceptConnections()) this.#serve(session, c);
    } catch (e) {
      if (this.#session === session) this.log(`intercepted connections: watch ended (${(e as Error).message})`);
    }
  }

  #serve(session: ManagerSession, c: InterceptConnection): void {
    this.stats.connections++;
    const sock = net.connect({ host: "127.0.0.1", port: c.localPort, allowHalfOpen: true, noDelay: true });
    let connected = false;
    sock.on("error", () => {});
    sock.once("connect", () => {
      connected = true;
      const t = session.joinIntercept(c, { code: DialCode.ok, message: "" });
      this.stats.open++;
      void pipeSocket(sock, t).finally(() => this.stats.open--);
    });
    sock.once("error", (e: Error & { code?: string }) => {
      if (connected) return; // pipeSocket handles errors after the connect
      this.stats.refused++;
      const code = e.code === "ECONNREFUSED" ? DialCode.refused : DialCode.unreachable;
      const t = session.joinIntercept(c, { code, message: `127.0.0.1:${c.localPort}: ${e.message}` });
      t.reset(`nothing listens on 127.0.0.1:${c.localPort} on ${Deno.hostname()}`);
    });
  }
}
