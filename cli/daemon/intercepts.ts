/**
 * The daemon's intercepts: the workloads whose cluster connections come to this machine. For each session it keeps
 * one WatchInterceptConnections stream open; each connection it announces is dialed at 127.0.0.1:LOCAL_PORT here,
 * and joined (an InterceptTunnel stream on the same HTTP/2 connection) with the result: the local app's bytes, FINs
 * and resets then flow both ways. A closed local port answers "refused", and the cluster's client gets a reset at
 * once. After a reconnect the intercepts are made again on the new session (retried for a while when the workload's
 * agent is not back yet: a restarted manager), and their mounts come back (kept_mount.ts). Intercepted connections
 * and mount streams are resumable streams: open when the link broke, they pause and carry on when the session resumes
 * within the manager's grace (the local app's socket, sshfs and its mount are kept meanwhile), and are reset on both
 * sides otherwise (a mount is then made again).
 */
import net from "node:net";
import { DialCode, GrpcError, type ManagerSession, pipeSocket, Status, type Tunnel } from "../../proto/mod.ts";
import type { MountUser, SshfsMount } from "../mount/mod.ts";
import type { AgentList, InterceptConnection, InterceptInfo } from "../../proto/messages.ts";
import { errorMessage } from "../../base/error_message.ts";
import { KeptMount, type KeptMountStatus } from "./kept_mount.ts";

/** After a reconnect, waits between attempts to intercept a workload again while the manager has no agent for it. */
const INTERCEPT_AGAIN_DELAYS_MS = [500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000] as const;

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

type Kept = KeptMount<Tunnel, SshfsMount>;

export class DaemonIntercepts {
  readonly stats: InterceptStats = { connections: 0, refused: 0, open: 0 };
  /** What the user asked for, by workload; remade on a new session. */
  readonly #wanted = new Map<string, Wanted[]>();
  /** The manager's view of each, as last created. */
  readonly #infos = new Map<string, InterceptInfo>();
  #session: ManagerSession | undefined;
  /** Mounts of the pods' volumes, by workload. */
  readonly #mounts = new Map<string, Kept>();
  /** The session each mount's stream was opened on, and the stream. */
  readonly #mountSession = new WeakMap<SshfsMount, ManagerSession>();
  readonly #mountStream = new WeakMap<SshfsMount, Tunnel>();

  constructor(
    readonly log: (line: string) => void,
    /** Where mounts are recorded, and whose they are (the user who ran tp). */
    readonly mountOwner: { stateDir: string; user: MountUser },
  ) {}

  /**
   * Follows a (new) session: watches its connections, makes the wanted intercepts on it again, and brings back the
   * mounts of the workloads intercepted again.
   */
  attach(session: ManagerSession): void {
    this.#session = session;
    // The old session's intercepts ended with it; what the new one makes replaces them.
    this.#infos.clear();
    void this.#watch(session);
    for (const workload of [...this.#wanted.keys()]) void this.#interceptAgain(session, workload);
  }

  /** Makes a workload's wanted intercepts on a new session, then its mount; retried while its agent is missing. */
  async #interceptAgain(session: ManagerSession, workload: string): Promise<void> {
    let made = 0, why = "";
    for (let attempt = 0;; attempt++) {
      made = 0;
      let notYet = false; // the manager has no agent for it (yet): worth another try
      for (const w of this.#wanted.get(workload) ?? []) {
        try {
          const info = await session.createIntercept(w.workload, w.appPort, w.localPort);
          if (this.#session !== session) return;
          if (!this.#wanted.get(workload)?.some((x) => x.appPort === w.appPort)) {
            // tp leave came while the manager made it: it found nothing to remove, so this one goes now.
            await session.removeIntercept(workload, w.appPort).catch(() => {});
            continue;
          }
          this.#infos.set(info.id, info);
          made++;
        } catch (e) {
          why = errorMessage(e);
          if (this.#session !== session) return;
          if (e instanceof GrpcError && (e.code === Status.NOT_FOUND || e.code === Status.UNAVAILABLE)) notYet = true;
          else this.log(`cannot intercept ${w.workload} port ${w.appPort} again after reconnecting: ${why}`);
        }
      }
      const wanted = this.#wanted.get(workload)?.length ?? 0;
      const delay = INTERCEPT_AGAIN_DELAYS_MS[attempt];
      if (made > 0 || wanted === 0 || !notYet || delay === undefined) break;
      if (session.closed) return; // the link broke again: the next session tries
      this.log(`cannot intercept ${workload} again yet (${why}); trying again in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
      if (this.#session !== session || !this.#wanted.has(workload)) return;
    }
    if (made) this.log(`intercepting ${workload} again on the new session`);
    const kept = this.#mounts.get(workload);
    if (!kept) return;
    if (made) kept.linkBack(this.#mountSession.get(kept.current) !== session && !this.#carriesOn(kept.current));
    else kept.fail(`cannot intercept ${workload} again after reconnecting: ${why}`);
  }

  async create(workload: string, appPort: number, localPort: number, mount?: MountRequest): Promise<CreatedIntercept> {
    const s = this.#need();
    const info = await s.createIntercept(workload, appPort, localPort);
    const existed = this.#infos.has(info.id);
    this.#infos.set(info.id, info);
    const list = (this.#wanted.get(workload) ?? []).filter((w) => w.appPort !== info.appPort);
    this.#wanted.set(workload, [...list, { workload, appPort: info.appPort, localPort }]);
    this.log(`intercepting ${workload} port ${info.appPort} to 127.0.0.1:${localPort}`);
    let kept = this.#mounts.get(workload);
    if (kept?.state === "failed" && mount) { // given up on: a new --mount starts afresh
      this.#mounts.delete(workload);
      await kept.close().catch(() => {});
      kept = undefined;
    }
    if (kept) return { ...info, mount: { dir: kept.dir } };
    if (!mount) return info;
    try {
      const name = `${info.namespace}.${workload}`.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
      const m = await this.#mountOn(s, await this.#openMount(s, workload), mount.dir, workload, name);
      this.#mounts.set(workload, this.#keep(info.namespace, workload, name, m));
      this.log(`mounted ${workload}'s volumes at ${m.dir}`);
      return { ...info, mount: { dir: m.dir } };
    } catch (e) {
      const error = errorMessage(e);
      this.log(`cannot mount ${workload}'s volumes at ${mount.dir}: ${error}`);
      if (mount.required) {
        // Only the intercept this request made ends: the workload's other ports (and this one, when it was
        // intercepted before) carry on.
        if (!existed) await this.#leavePort(workload, info.appPort).catch(() => {});
        throw new Error(`cannot mount ${workload}'s volumes at ${mount.dir}: ${error}`);
      }
      return { ...info, mount: { error } };
    }
  }

  /**
   * Whether a mount's stream carries on across the reconnection: resumable, and not reset (link.ts resets those it
   * cannot resume before the intercepts are made again; one whose resume fails later is reset then, and sshfs's exit
   * brings the mount back: kept_mount.ts).
   */
  #carriesOn(m: SshfsMount): boolean {
    const t = this.#mountStream.get(m);
    return t !== undefined && t.resumable && !t.finished;
  }

  /**
   * A mount stream to an agent of `workload`, through one of its intercepts on `s`, accepted by the agent. Resumable
   * when the manager agrees: a broken link that the session resumes only pauses the mount.
   */
  async #openMount(s: ManagerSession, workload: string): Promise<Tunnel> {
    const info = [...this.#infos.values()].find((i) => i.workload === workload);
    if (!info) throw new Error(`${workload} is not intercepted on the current session`);
    const t = await s.openMount(info.id, { resumable: true });
    if (t.dial.code !== DialCode.ok) {
      t.reset();
      throw new Error(t.dial.message || "the agent refused the mount");
    }
    return t;
  }

  /** Runs sshfs on a mount stream opened on `s`; `name` names the mount's record and source (tp.NAME:). */
  async #mountOn(s: ManagerSession, t: Tunnel, dir: string, workload: string, name: string): Promise<SshfsMount> {
    const { mountSshfs } = await import("../mount/mod.ts");
    const m = await mountSshfs(t, dir, {
      name,
      stateDir: this.mountOwner.stateDir,
      user: this.mountOwner.user,
      log: (line) => this.log(`sshfs ${workload}: ${line}`),
    });
    this.#mountSession.set(m, s);
    this.#mountStream.set(m, t);
    return m;
  }

  /** Ends one intercept (`appPort`) of a workload here and at the manager; the mount goes with the last one. */
  async #leavePort(workload: string, appPort: number): Promise<number> {
    const rest = (this.#wanted.get(workload) ?? []).filter((w) => w.appPort !== appPort);
    if (!rest.length) return await this.leave(workload);
    const n = await this.#need().removeIntercept(workload, appPort);
    if (n > 1) {
      // One port is one intercept: a manager that ended more predates RemoveInterceptRequest.app_port and ended every
      // port of the workload. This side follows, so that tp status and the next reconnect do not keep the others.
      this.log(`the traffic-manager ended every intercept of ${workload}, not only port ${appPort} (it is older)`);
      await this.#unmount(workload);
      for (const [id, info] of this.#infos) if (info.workload === workload) this.#infos.delete(id);
      this.#wanted.delete(workload);
      return n;
    }
    for (const [id, info] of this.#infos) {
      if (info.workload === workload && info.appPort === appPort) this.#infos.delete(id);
    }
    this.#wanted.set(workload, rest);
    if (n) this.log(`left ${workload} port ${appPort}`);
    return n;
  }

  /** Keeps a workload's mount: made again on a new stream whenever its stream ends. */
  #keep(namespace: string, workload: string, name: string, m: SshfsMount): Kept {
    let opened: ManagerSession | undefined; // the session the stream being mounted was opened on
    return new KeptMount(namespace, workload, m, {
      open: () => this.#openMount(opened = this.#need(), workload),
      mount: (t, dir) => this.#mountOn(opened!, t, dir, workload, name),
      linkUp: () => this.#session !== undefined && !this.#session.closed,
      log: this.log,
    });
  }

  async #unmount(workload: string): Promise<void> {
    for (const [w, m] of [...this.#mounts]) {
      if (workload && w !== workload) continue;
      this.#mounts.delete(w);
      try {
        await m.close();
        this.log(`unmounted ${w}'s volumes from ${m.dir}`);
      } catch (e) {
        this.log(`cannot unmount ${m.dir}: ${errorMessage(e)}`);
      }
    }
  }

  /** This machine's mounts and their states, for tp status and tp list. */
  mounts(): KeptMountStatus[] {
    return [...this.#mounts.values()].map((m) => m.status());
  }

  /**
   * Ends this machine's intercepts of a workload (every one when ""), or only its intercept of `appPort` (the
   * workload's mount stays while another of its ports is intercepted); resolves with how many ended.
   */
  async leave(workload: string, appPort = 0): Promise<number> {
    if (appPort) {
      if (!workload) throw new TypeError("an app port needs its workload");
      return await this.#leavePort(workload, appPort);
    }
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
      let t: Tunnel;
      try {
        // Resumable: a broken link that the session resumes leaves the connection paused, not reset (link.ts).
        t = session.joinIntercept(c, { code: DialCode.ok, message: "" }, { resumable: true });
      } catch (e) {
        // The link broke while the local app took the connection: the app's end gets a reset (the manager announces
        // the connection again on the next session's watch, or gives it back to the pod's app).
        this.log(`intercepted connection to 127.0.0.1:${c.localPort}: cannot join it (${errorMessage(e)})`);
        sock.resetAndDestroy();
        return;
      }
      this.stats.open++;
      void pipeSocket(sock, t).finally(() => this.stats.open--);
    });
    sock.once("error", (e: Error & { code?: string }) => {
      if (connected) return; // pipeSocket handles errors after the connect
      this.stats.refused++;
      const code = e.code === "ECONNREFUSED" ? DialCode.refused : DialCode.unreachable;
      try {
        const t = session.joinIntercept(c, { code, message: `127.0.0.1:${c.localPort}: ${e.message}` });
        t.reset(`nothing listens on 127.0.0.1:${c.localPort} on ${Deno.hostname()}`);
      } catch { /* the link broke meanwhile: the manager gives the connection back to the pod's app */ }
    });
  }
}
