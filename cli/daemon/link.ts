/**
 * The daemon's link to the traffic-manager: a session over one connection (a URL, or a port-forward through the
 * Kubernetes API server), and, when that connection breaks, reconnection with backoff while the device and routes
 * stay. Connections open when the link broke are reset (their streams died with it); new ones use the new session.
 */
import {
  type ClusterInfo,
  connect,
  type DuplexFactory,
  GrpcError,
  type ManagerSession,
  Status,
} from "../../proto/mod.ts";
import type { ManagerStream } from "../../k8s/portforward.ts";
import { lookup } from "node:dns/promises";
import { type ConnectSettings, describeTarget } from "./settings.ts";
import { VERSION } from "../../base/version.ts";
import { errorMessage } from "../../base/error_message.ts";

/** Reconnection gives up after this many attempts (about 5 minutes with the backoff below). */
const MAX_RECONNECTS = 80;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

export interface LinkEvents {
  /** Progress of the first connection, for the user. */
  stage(stage: string, message: string): void;
  log(line: string): void;
  /** Reconnection gave up: the daemon should stop. */
  gaveUp(why: Error): void;
  /** The manager reported new cluster info (its first report, then each change), on any session. */
  clusterInfo?(info: ClusterInfo): void;
  /** A new session replaced the lost one. */
  reconnected?(session: ManagerSession): void;
}

export class ManagerLink {
  session: ManagerSession;
  forward: ManagerStream | undefined;
  state: "connected" | "reconnecting" | "closed" = "connected";
  reconnects = 0;
  lastError = "";
  readonly #settings: ConnectSettings;
  readonly #events: LinkEvents;

  private constructor(settings: ConnectSettings, events: LinkEvents, first: Dialed) {
    this.#settings = settings;
    this.#events = events;
    this.session = first.session;
    this.forward = first.forward;
  }

  /** Connects and arrives; throws an Error whose message says what failed and what to do. */
  static async open(settings: ConnectSettings, events: LinkEvents): Promise<ManagerLink> {
    // The session's loss handler needs the link, which needs the session: a holder breaks the cycle.
    const holder: { link?: ManagerLink } = {};
    const first = await dial(settings, events.stage, (e) => holder.link && holder.link.#lost(e));
    const link = new ManagerLink(settings, events, first);
    holder.link = link;
    const skew = versionSkew(VERSION, first.session.clusterInfo.managerVersion);
    if (skew) events.stage("version", skew);
    link.#watch(first.session);
    return link;
  }

  /** Follows the session's cluster info until the session ends. */
  async #watch(session: ManagerSession): Promise<void> {
    try {
      for await (const info of session.watchClusterInfo()) {
        if (this.session !== session || this.state !== "connected") return;
        this.#events.clusterInfo?.(info);
      }
    } catch {
      // The session ended; a new one starts its own watch.
    }
  }

  /**
   * The addresses tp's own connection goes to: the manager's (--manager-url, its name looked up as the system does)
   * or the API server's. A cluster subnet that holds one of them is never routed (cli/daemon/cluster_subnets.ts).
   */
  async ownAddresses(): Promise<string[]> {
    const hosts = new Set<string>();
    const hostOf = (url: string) => new URL(url).hostname.replace(/^\[|\]$/g, "");
    if (this.#settings.managerUrl) hosts.add(hostOf(this.#settings.managerUrl));
    if (this.forward) {
      if (this.forward.remoteAddress) hosts.add(this.forward.remoteAddress);
      if (this.forward.info.server) hosts.add(hostOf(this.forward.info.server));
    }
    const out = new Set<string>();
    for (const h of hosts) {
      if (/^[\d.]+$/.test(h) || h.includes(":")) out.add(h.replace(/^::ffff:(?=\d)/, ""));
      else {
        const found = await lookup(h, { all: true }).catch(() => []);
        for (const a of found) out.add(a.address);
      }
    }
    return [...out];
  }

  status(): Record<string, unknown> {
    return {
      state: this.state,
      reconnects: this.reconnects,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      url: this.#settings.managerUrl || undefined,
      portForward: this.forward ? { ...this.forward.info, ...this.forward.counters } : undefined,
      version: this.session.clusterInfo.managerVersion,
      session: this.session.id,
    };
  }

  /** Ends the link: departs the session (when it is alive) and closes the connection. */
  async close(): Promise<void> {
    const wasConnected = this.state === "connected";
    this.state = "closed";
    if (wasConnected) await this.session.depart().catch(() => {});
    await this.session.close().catch(() => {});
    this.forward?.destroy();
  }

  #lost(e: Error): void {
    if (this.state !== "connected") return;
    this.state = "reconnecting";
    this.lastError = e.message;
    this.#events.log(`the connection to the traffic-manager broke (${e.message}); reconnecting`);
    void this.session.close().catch(() => {});
    this.forward?.destroy();
    void this.#reconnect(e);
  }

  async #reconnect(first: Error): Promise<void> {
    for (let attempt = 1; attempt <= MAX_RECONNECTS; attempt++) {
      await new Promise((r) => setTimeout(r, BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)]));
      if (this.state === "closed") return;
      try {
        const d = await dial(this.#settings, () => {}, (e) => this.#lost(e));
        if ((this.state as string) === "closed") { // close() may have run while dialing
          await d.session.close();
          d.forward?.destroy();
          return;
        }
        const before = JSON.stringify([this.session.clusterInfo.podSubnets, this.session.clusterInfo.serviceSubnets]);
        this.session = d.session;
        this.forward = d.forward;
        this.state = "connected";
        void this.#watch(d.session);
        this.reconnects++;
        this.lastError = "";
        this.#events.log(`reconnected to the traffic-manager after ${attempt} attempt(s): session ${d.session.id}`);
        this.#events.reconnected?.(d.session);
        const after = JSON.stringify([d.session.clusterInfo.podSubnets, d.session.clusterInfo.serviceSubnets]);
        if (before !== after) {
          this.#events.log(`the cluster's subnets changed (${after}); tp quit and tp connect to route them`);
        }
        return;
      } catch (e) {
        this.lastError = errorMessage(e);
      }
    }
    this.state = "closed";
    this.#events.gaveUp(new Error(`could not reconnect to the traffic-manager: ${this.lastError || first.message}`));
  }
}

interface Dialed {
  session: ManagerSession;
  forward: ManagerStream | undefined;
}

async function dial(
  settings: ConnectSettings,
  stage: (stage: string, message: string) => void,
  onLost: (e: Error) => void,
): Promise<Dialed> {
  let target: string | DuplexFactory = settings.managerUrl;
  let forward: ManagerStream | undefined;
  if (!settings.managerUrl) {
    const { openManagerStream, PortForwardTransport } = await import("../../k8s/portforward.ts");
    const opts = {
      ...(settings.kubeconfig ? { kubeconfig: settings.kubeconfig } : {}),
      context: settings.context,
      namespace: settings.namespace,
      managerNamespace: settings.managerNamespace,
    };
    // The first port-forward is opened here, so that its errors reach the user with their fixes.
    const stream = await openManagerStream({ ...opts, onProgress: (m) => stage("kubernetes", m) });
    // Errors surface through the HTTP/2 session that runs over the stream.
    stream.on("error", () => {});
    forward = stream;
    // ONE port-forward carries everything: the manager's HTTP/2 server sets no small limit on streams.
    target = () => new PortForwardTransport(stream);
  }
  stage("manager", `connecting to the traffic-manager at ${describeTarget(settings)}`);
  try {
    const session = await connect(target, settings.token, {
      clientName: Deno.hostname(),
      namespace: settings.namespace,
      onLost,
    });
    return { session, forward };
  } catch (e) {
    forward?.destroy();
    throw new Error(managerErrorMessage(settings, e as Error));
  }
}

function managerErrorMessage(settings: ConnectSettings, e: Error): string {
  const where = describeTarget(settings);
  const m = e.message;
  if (e instanceof GrpcError && (e.code === Status.UNAUTHENTICATED || e.code === Status.PERMISSION_DENIED)) {
    return `the traffic-manager at ${where} refused the token (${m}): pass the right one with --token or TP_TOKEN`;
  }
  const fix = settings.managerUrl
    ? "check --manager-url, and that tp manager runs there"
    : `check that the traffic-manager runs: kubectl --context ${settings.context} -n ${settings.managerNamespace} ` +
      `get pods; tp install installs it`;
  return `cannot reach the traffic-manager at ${where} (${m}): ${fix}`;
}

/**
 * A warning when tp and the traffic-manager are of different versions (both speak tp.manager.v1, so they work
 * together, but the newer side's fixes are missing), or null when they match.
 */
export function versionSkew(client: string, manager: string): string | null {
  if (!manager || manager === client) return null;
  const older = compareVersions(client, manager) < 0 ? `this tp (${client})` : `the traffic-manager (${manager})`;
  const fix = older.startsWith("this tp")
    ? "install the newer tp"
    : `run tp install --image <repository>:${client} to upgrade the manager`;
  return `warning: tp is ${client} and the traffic-manager is ${manager}; ${older} is older: ${fix}`;
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => Number(x) || 0), pb = b.split(/[.-]/).map((x) => Number(x) || 0);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}
