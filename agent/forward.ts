/**
 * The agent's listeners: one per forwarded port (AGENT_PORT -> APP_PORT). Each connection goes to the app in the
 * same pod (127.0.0.1:APP_PORT), so a workload with the agent behaves as without it, unless the app port is
 * intercepted: then the connection goes through the manager to the intercepting workstation (`toWorkstation`).
 *
 * A connection is accepted paused (no byte read before tp knows where it goes). When the workstation refuses (its
 * local port is closed, or it does not answer), the cluster's client gets a TCP reset at once; when the manager
 * says the port is no longer intercepted (an intercept that just ended), the app serves the connection.
 */
import net from "node:net";
import { errorMessage } from "../base/error_message.ts";

export interface Forward {
  agentPort: number;
  appPort: number;
}

/** Where an intercepted connection went: handled (piped or reset), or back to the app. */
export type Routed = "handled" | "to-app";

export interface ForwardHooks {
  /** Whether `appPort` is intercepted now. */
  intercepted(appPort: number): boolean;
  /** Carries an intercepted connection to the workstation; "to-app" when the app should serve it after all. */
  toWorkstation(sock: net.Socket, appPort: number): Promise<Routed>;
  log(line: string): void;
}

export interface ForwardStats {
  toApp: number;
  toWorkstation: number;
  appRefused: number;
}

export class Forwarder {
  readonly stats: ForwardStats = { toApp: 0, toWorkstation: 0, appRefused: 0 };
  readonly #servers: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();

  constructor(readonly forwards: readonly Forward[], readonly hooks: ForwardHooks, readonly appHost = "127.0.0.1") {}

  /** Listens on every agent port (all addresses); rejects naming the port when one cannot be bound. */
  async listen(host = "0.0.0.0"): Promise<void> {
    for (const f of this.forwards) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.#accept(s, f));
      await new Promise<void>((resolve, reject) => {
        server.once("error", (e) => reject(new Error(`cannot listen on port ${f.agentPort}: ${e.message}`)));
        server.listen({ port: f.agentPort, host }, () => resolve());
      });
      server.on("error", (e) => this.hooks.log(`listener ${f.agentPort}: ${e.message}`));
      this.#servers.push(server);
    }
  }

  /** Stops listening and resets every connection still open. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.resetAndDestroy();
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  #accept(sock: net.Socket, f: Forward): void {
    this.#sockets.add(sock);
    sock.once("close", () => this.#sockets.delete(sock));
    sock.on("error", () => {});
    void this.#route(sock, f).catch((e) => {
      this.hooks.log(`connection on ${f.agentPort}: ${errorMessage(e)}`);
      if (!sock.destroyed) sock.resetAndDestroy();
    });
  }

  async #route(sock: net.Socket, f: Forward): Promise<void> {
    if (this.hooks.intercepted(f.appPort)) {
      this.stats.toWorkstation++;
      if (await this.hooks.toWorkstation(sock, f.appPort) === "handled") return;
      this.stats.toWorkstation--;
    }
    this.stats.toApp++;
    const app = net.connect({ host: this.appHost, port: f.appPort, allowHalfOpen: true, noDelay: true });
    app.on("error", () => {});
    app.once("connect", () => {
      joinSockets(sock, app);
      sock.resume();
    });
    app.once("error", (e: Error & { code?: string }) => {
      if (app.connecting || e.code === "ECONNREFUSED") {
        this.stats.appRefused++;
        if (!sock.destroyed) sock.resetAndDestroy();
      }
    });
  }
}

/**
 * Joins two sockets both ways: bytes with backpressure (Readable.pipe), each side's FIN to the other, and a reset or
 * error on either side as a TCP RST on the other.
 */
export function joinSockets(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  const reset = (other: net.Socket) => () => {
    if (!other.destroyed) other.resetAndDestroy();
  };
  a.on("error", reset(b));
  b.on("error", reset(a));
  // A socket closed without both FINs (destroyed, reset): the other side gets a reset, not a hang.
  a.on("close", (hadError) => hadError && reset(b)());
  b.on("close", (hadError) => hadError && reset(a)());
}
