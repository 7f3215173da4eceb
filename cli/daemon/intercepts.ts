/**
 * The daemon's intercepts: the workloads whose cluster connections come to this machine. For each session it keeps
 * one WatchInterceptConnections stream open; each connection it announces is dialed at 127.0.0.1:LOCAL_PORT here,
 * and joined (an InterceptTunnel stream on the same HTTP/2 connection) with the result: the local app's bytes, FINs
 * and resets then flow both ways. A closed local port answers "refused", and the cluster's client gets a reset at
 * once. After a reconnect (a new session) the intercepts are made again on the new session.
 */
import net from "node:net";
import { DialCode, type ManagerSession, pipeSocket } from "../../proto/mod.ts";
import type { MountUser, SshfsMount } from "../mount/mod.ts";
import type { AgentList, InterceptConnection, InterceptInfo } from "../../proto/messages.ts";
import { errorMessage } from "../../base/error_message.ts";

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

/** A mount asked for with an intercept: where, and whether its failure fails the intercept (an explicit --mount). */
export interface MountRequest {
  dir: string;
  required: boolean;
}

/** What `create` answers: the intercept, and where its pod's volumes are (or why they are not). */
export type CreatedIntercept = InterceptInfo & { mount?: { dir: string } | { error: string } };

export class DaemonIntercepts {
  readonly stats: InterceptStats = { connections: 0, refused: 0, open: 0 };
  /** What the user asked for, by workload; remade on a new session. */
  readonly #wanted = new Map<string, Wanted[]>();
  /** The manager's view of each, as last created. */
  readonly #infos = new Map<string, InterceptInfo>();
  #session: ManagerSession | undefined;
  /** Mounts of the pods' volumes, by workload. */
  readonly #mounts = new Map<string, SshfsMount>();

  constructor(
    readonly log: (line: string) => void,
    /** Where mounts are recorded, and whose they are (the user who ran tp). */
    readonly mountOwner: { stateDir: string; user: MountUser },
  ) {}

  /** Follows a (new) session: watches its connections and makes the wanted intercepts on it again. */
  attach(session: ManagerSession): void {
    this.#session = session;
    // The old session's intercepts ended with it; what the new one makes replaces them.
    this.#infos.clear();
    void this.#watch(session);
    if (this.#wanted.size === 0) return;
    void (async () => {
      for (const list of this.#wanted.values()) {
        for (const w of list) {
          try {
            const info = await session.createIntercept(w.workload, w.appPort, w.localPort);
            this.#infos.set(info.id, info);
          } catch (e) {
            this.log(`cannot intercept ${w.workload} again after reconnecting: ${errorMessage(e)}`);
          }
        }
      }
    })();
  }

  async create(workload: string, appPort: number, localPort: number, mount?: MountRequest): Promise<CreatedIntercept> {
    const s = this.#need();
    const info = await s.createIntercept(workload, appPort, localPort);
    this.#infos.set(info.id, info);
    const list = (this.#wanted.get(workload) ?? []).filter((w) => w.appPort !== info.appPort);
    this.#wanted.set(workload, [...list, { workload, appPort: info.appPort, localPort }]);
    this.log(`intercepting ${workload} port ${info.appPort} to 127.0.0.1:${localPort}`);
    if (!mount || this.#mounts.has(workload)) {
      const m = this.#mounts.get(workload);
      return m ? { ...info, mount: { dir: m.dir } } : info;
    }
    try {
      const m = await this.#mount(s, info, mount.dir);
      return { ...info, mount: { dir: m.dir } };
    } catch (e) {
      const error = errorMessage(e);
      this.log(`cannot mount ${workload}'s volumes at ${mount.dir}: ${error}`);
      if (mount.required) {
        await this.leave(workload).catch(() => {});
        throw new Error(`cannot mount ${workload}'s volumes at ${mount.dir}: ${error}`);
      }
      return { ...info, mount: { error } };
    }
  }

  async #mount(s: ManagerSession, info: InterceptInfo, dir: string): Promise<SshfsMount> {
    const { mountSshfs } = await import("../mount/mod.ts");
    const t = await s.openMount(info.id);
    if (t.dial.code !== DialCode.ok) {
      t.reset();
      throw new Error(t.dial.message || "the agent refused the mount");
    }
    const m = await mountSshfs(t, dir, {
      name: `${info.namespace}.${info.workload}`.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64),
      stateDir: this.mountOwner.stateDir,
      user: this.mountOwner.user,
      log: (line) => this.log(`sshfs ${info.workload}: ${line}`),
    });
    this.#mounts.set(info.workload, m);
    this.log(`mounted ${info.workload}'s volumes at ${m.dir}`);
    return m;
  }

  async #unmount(workload: string): Promise<void> {
    for (const [w, m] of [...this.#mounts]) {
      if (workload && w !== workload) continue;
      this.#mounts.delete(w);
      try {
        await m.unmount();
        this.log(`unmounted ${w}'s volumes from ${m.dir}`);
      } catch (e) {
        this.log(`cannot unmount ${m.dir}: ${errorMessage(e)}`);
      }
    }
  }

  /** This machine's mounts, for tp status. */
  mounts(): { workload: string; dir: string; alive: boolean }[] {
    return [...this.#mounts].map(([workload, m]) => ({ workload, dir: m.dir, alive: !m.exited }));
  }

  /** Ends this machine's intercepts of a workload (every one when ""); resolves with how many ended. */
  async leave(workload: string): Promise<number> {
    await this.#unmount(workload);
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
    await this.#unmount("");
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
      if (this.#session === session) this.log(`intercepted connections: watch ended (${errorMessage(e)})`);
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
