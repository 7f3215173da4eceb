/**
 * The daemon's link to the traffic-manager: a session over one connection (a URL, or a port-forward through the
 * Kubernetes API server), and, when that connection breaks, reconnection while the device, routes and DNS stay
 * (`backoff.ts`: within a second for the first minute). The link asks the manager to resume its session: when the
 * manager still holds it (the same manager, within its grace period), the open TCP connections carry on where they
 * were (their tunnels were suspended, not ended: `proto/tunnel.ts`); otherwise they are reset and a new session
 * starts. The manager's identity (`ClusterInfo.managerId`) tells a restarted manager from the same one, and the log
 * and `tp status` say which of the three it was. A connection that hangs without closing (a link that went down) is
 * found by HTTP/2 PING: no answer within LIVENESS_TIMEOUT_MS and the link reconnects. A wall clock that jumps ahead of the
 * monotonic one (the machine slept: `clock_jump.ts`) makes the link check its session at once, and a link that is
 * reconnecting try again at once.
 */
import {
  type ClusterInfo,
  connect,
  type DuplexFactory,
  GrpcError,
  type ManagerSession,
  Status,
  type Tunnel,
} from "../../proto/mod.ts";
import type { ManagerStream } from "../../k8s/portforward.ts";
import { lookup } from "node:dns/promises";
import { type ConnectSettings, describeTarget } from "./settings.ts";
import { VERSION } from "../../base/version.ts";
import { errorMessage } from "../../base/error_message.ts";
import { ReconnectBackoff } from "./backoff.ts";
import { ClockJumpDetector } from "./clock_jump.ts";

/** One reconnection attempt (connect and arrive) that takes longer than this is abandoned for the next. */
const DIAL_TIMEOUT_MS = 5_000;
/** How often the clocks are compared. */
const CLOCK_CHECK_MS = 1_000;
/** After a clock jump, how long the session's keepalive may take before the connection counts as lost. */
const PROBE_TIMEOUT_MS = 2_000;
/** A PING goes out with each clock check; one unanswered for this long means the connection hangs. */
const LIVENESS_TIMEOUT_MS = 2_500;

/** How the last reconnection went: the same manager with a new session, or a new manager. */
export type ReconnectKind = "resumed" | "new-session" | "manager-restarted";

/** The clocks the link compares (tests inject their own). */
export interface LinkClock {
  /** Wall-clock time, ms (Date.now). */
  wall(): number;
  /** Monotonic time, ms (performance.now): stops while the machine sleeps. */
  mono(): number;
}

export interface LinkOptions {
  clock?: LinkClock;
  /** How often the clocks are compared (default 1 s); 0: only when `checkClock()` is called. */
  clockCheckMs?: number;
}

export interface LinkEvents {
  /** Progress of the first connection, for the user. */
  stage(stage: string, message: string): void;
  log(line: string): void;
  /** Reconnection gave up: the daemon should stop. */
  gaveUp(why: Error): void;
  /** The manager reported new cluster info (its first report, then each change), on any session. */
  clusterInfo?(info: ClusterInfo): void;
  /** A new session replaced the lost one; `kind` says whether the manager had restarted. */
  reconnected?(session: ManagerSession, kind: ReconnectKind): void;
}

export class ManagerLink {
  session: ManagerSession;
  forward: ManagerStream | undefined;
  state: "connected" | "reconnecting" | "closed" = "connected";
  reconnects = 0;
  /** Reconnections that found a new manager (its identity changed). */
  managerRestarts = 0;
  /** Clock jumps seen (the machine slept). */
  clockJumps = 0;
  /** Reconnections that resumed the session, its open connections carrying on. */
  resumes = 0;
  /** Open connections carried across resumes, and those the manager no longer held (reset). */
  streamsResumed = 0;
  streamsLost = 0;
  /** While the link is down: the open connections waiting for it (suspended tunnels), and until when they may. */
  #paused: Tunnel[] = [];
  #pausedUntil: string | undefined;
  lastError = "";
  /** The last reconnection: when, and how. */
  lastReconnect: { at: string; kind: ReconnectKind } | undefined;
  readonly #settings: ConnectSettings;
  readonly #events: LinkEvents;
  readonly #clock: LinkClock;
  readonly #jumps: ClockJumpDetector;
  readonly #clockTimer: ReturnType<typeof setInterval> | undefined;
  /** Cuts the reconnection's current wait short. */
  #wake: (() => void) | undefined;
  /** Tunnels of the lost connection, waiting to resume (filled once the old session let go of them). */
  #suspended: Promise<Tunnel[]> = Promise.resolve([]);
  /** Time the machine slept (clock jumps) during the current outage, which the monotonic clock does not count. */
  #sleptMs = 0;
  /** When the outstanding liveness PING went out (monotonic ms), or undefined. */
  #pingSentAt: number | undefined;

  private constructor(settings: ConnectSettings, events: LinkEvents, first: Dialed, options: LinkOptions) {
    this.#settings = settings;
    this.#events = events;
    this.session = first.session;
    this.forward = first.forward;
    this.#clock = options.clock ?? { wall: () => Date.now(), mono: () => performance.now() };
    this.#jumps = new ClockJumpDetector(this.#clock.wall(), this.#clock.mono());
    const every = options.clockCheckMs ?? CLOCK_CHECK_MS;
    if (every > 0) {
      this.#clockTimer = setInterval(() => {
        this.checkClock();
        this.#checkLiveness();
      }, every);
    }
  }

  /** Connects and arrives; throws an Error whose message says what failed and what to do. */
  static async open(settings: ConnectSettings, events: LinkEvents, options: LinkOptions = {}): Promise<ManagerLink> {
    // The session's loss handler needs the link, which needs the session: a holder breaks the cycle.
    const holder: { link?: ManagerLink } = {};
    const first = await dial(settings, events.stage, (e) => holder.link && holder.link.#lost(e));
    const link = new ManagerLink(settings, events, first, options);
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

  /**
   * Compares the clocks (the timer calls it every second): after a jump (the machine slept), a connected link checks
   * its session at once and a reconnecting one tries again at once, instead of waiting for timeouts.
   */
  checkClock(): void {
    const jump = this.#jumps.check(this.#clock.wall(), this.#clock.mono());
    if (jump === 0 || this.state === "closed") return;
    this.clockJumps++;
    const secs = (jump / 1000).toFixed(1);
    if (this.state === "reconnecting") {
      this.#sleptMs += jump;
      this.#events.log(`the wall clock jumped ${secs} s ahead (the machine slept?): reconnecting now`);
      this.#wake?.();
      return;
    }
    this.#events.log(`the wall clock jumped ${secs} s ahead (the machine slept?): checking the session now`);
    const session = this.session;
    session.probe(PROBE_TIMEOUT_MS).catch((e: Error) => {
      if (this.session === session) this.#lost(new Error(`after the clock jump: ${e.message}`));
    });
  }

  /** Sends a PING unless one is out; a PING unanswered for LIVENESS_TIMEOUT_MS means the connection hangs. */
  #checkLiveness(): void {
    if (this.state !== "connected") {
      this.#pingSentAt = undefined;
      return;
    }
    const now = this.#clock.mono();
    if (this.#pingSentAt !== undefined) {
      if (now - this.#pingSentAt > LIVENESS_TIMEOUT_MS) {
        this.#pingSentAt = undefined;
        this.#lost(new Error(`no answer to HTTP/2 PING within ${LIVENESS_TIMEOUT_MS} ms`));
      }
      return;
    }
    const session = this.session;
    this.#pingSentAt = now;
    session.channel.connection.ping().then(() => {
      if (this.session === session) this.#pingSentAt = undefined;
    }, () => {});
  }

  status(): Record<string, unknown> {
    return {
      state: this.state,
      reconnects: this.reconnects,
      resumes: this.resumes,
      streamsResumed: this.streamsResumed,
      streamsLost: this.streamsLost,
      ...(this.state === "reconnecting" && this.#paused.some((t) => t.suspended)
        ? { streamsPaused: this.#paused.filter((t) => t.suspended).length, pausedUntil: this.#pausedUntil }
        : {}),
      resumeGraceMs: this.session.resumeGraceMs,
      managerRestarts: this.managerRestarts,
      clockJumps: this.clockJumps,
      ...(this.lastReconnect ? { lastReconnect: this.lastReconnect } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      url: this.#settings.managerUrl || undefined,
      portForward: this.forward ? { ...this.forward.info, ...this.forward.counters } : undefined,
      version: this.session.clusterInfo.managerVersion,
      managerId: this.session.clusterInfo.managerId,
      session: this.session.id,
    };
  }

  /** Ends the link: departs the session (when it is alive) and closes the connection. */
  async close(): Promise<void> {
    const wasConnected = this.state === "connected";
    this.state = "closed";
    clearInterval(this.#clockTimer);
    this.#wake?.();
    for (const t of await this.#suspended) t.reset("tp is disconnecting");
    if (wasConnected) await this.session.depart().catch(() => {});
    await this.session.close().catch(() => {});
    this.forward?.destroy();
  }

  #lost(e: Error): void {
    if (this.state !== "connected") return;
    this.state = "reconnecting";
    this.lastError = e.message;
    this.#events.log(`the connection to the traffic-manager broke (${e.message}); reconnecting`);
    // Resumable tunnels are suspended, not ended: they rejoin their streams if the session resumes.
    const before = this.#suspended;
    const now = this.session.detach().catch(() => [] as Tunnel[]);
    this.#suspended = Promise.all([before, now]).then(([a, b]) => [...a.filter((t) => t.suspended), ...b]);
    const until = new Date(this.#clock.wall() + this.session.resumeGraceMs).toISOString();
    const counted = this.#suspended;
    void counted.then((ts) => {
      if (this.#suspended !== counted) return; // taken meanwhile (resumed, reset or closed)
      this.#paused = ts;
      this.#pausedUntil = until;
    });
    this.forward?.destroy();
    void this.#reconnect(e);
  }

  async #reconnect(first: Error): Promise<void> {
    const since = this.#clock.mono();
    this.#sleptMs = 0;
    const grace = this.session.resumeGraceMs;
    let expired = false;
    const backoff = new ReconnectBackoff(since);
    for (;;) {
      const delay = backoff.next(this.#clock.mono());
      if (delay === null) break;
      await this.#sleep(delay);
      if (this.state === "closed") return;
      if (!expired && this.#clock.mono() - since + this.#sleptMs > grace) {
        // Longer than the manager keeps streams: nothing can resume, so the apps hear it now, not at reconnection.
        expired = true;
        const suspended = await this.#suspended;
        this.#suspended = Promise.resolve([]);
        this.#paused = [];
        for (const t of suspended) t.reset("the link to the traffic-manager stayed down longer than its grace period");
        this.streamsLost += suspended.length;
        if (suspended.length) {
          this.#events.log(`${suspended.length} open connection(s) reset: the link stayed down past the grace period`);
        }
      }
      try {
        const resumeId = this.session.id;
        const d = await dialWithin(
          DIAL_TIMEOUT_MS,
          () => dial(this.#settings, () => {}, (e) => this.#lost(e), resumeId),
        );
        if ((this.state as string) === "closed") { // close() may have run while dialing
          await d.session.close();
          d.forward?.destroy();
          return;
        }
        const old = this.session.clusterInfo;
        const now = d.session.clusterInfo;
        // A manager older than managerId sends none: then a new session is all that can be said.
        const kind: ReconnectKind = d.session.resumed
          ? "resumed"
          : old.managerId && now.managerId !== old.managerId
          ? "manager-restarted"
          : "new-session";
        const suspended = await this.#suspended;
        this.#suspended = Promise.resolve([]);
        this.#paused = [];
        this.session = d.session;
        this.forward = d.forward;
        this.state = "connected";
        void this.#watch(d.session);
        this.reconnects++;
        if (kind === "manager-restarted") this.managerRestarts++;
        if (kind === "resumed") {
          this.resumes++;
          void this.#adopt(d.session, suspended);
        } else {
          const why = kind === "manager-restarted"
            ? "the traffic-manager restarted"
            : "the traffic-manager no longer held the session";
          for (const t of suspended) t.reset(why);
        }
        this.lastReconnect = { at: new Date(this.#clock.wall()).toISOString(), kind };
        this.lastError = "";
        this.#events.log(
          kind === "resumed"
            ? `reconnected to the traffic-manager after ${backoff.attempts} attempt(s) and resumed session ` +
              `${d.session.id.slice(0, 8)}: ${suspended.length} open connection(s) carry on`
            : kind === "manager-restarted"
            ? `reconnected after ${backoff.attempts} attempt(s) to a new traffic-manager (it restarted): the ` +
              `connections open before were reset; new session ${d.session.id.slice(0, 8)}`
            : `reconnected to the traffic-manager after ${backoff.attempts} attempt(s): new session ` +
              `${d.session.id.slice(0, 8)} (the old one was gone; the connections open before were reset)`,
        );
        this.#events.reconnected?.(d.session, kind);
        const before = JSON.stringify([old.podSubnets, old.serviceSubnets]);
        const after = JSON.stringify([now.podSubnets, now.serviceSubnets]);
        if (before !== after) {
          this.#events.log(`the cluster's subnets changed (${after}); tp quit and tp connect to route them`);
        }
        return;
      } catch (e) {
        this.lastError = errorMessage(e);
      }
    }
    this.state = "closed";
    clearInterval(this.#clockTimer);
    for (const t of await this.#suspended) t.reset("could not reconnect to the traffic-manager");
    this.#events.gaveUp(new Error(`could not reconnect to the traffic-manager: ${this.lastError || first.message}`));
  }

  /** Rejoins each suspended tunnel's stream on the resumed session; counts those the manager no longer held. */
  async #adopt(session: ManagerSession, tunnels: Tunnel[]): Promise<void> {
    const results = await session.adopt(tunnels);
    // Every stream this side holds has rejoined: the manager resets the ones it still keeps for this session that did
    // not (their far ends would wait out the grace period). Best effort: a link that broke again says nothing.
    if (this.session === session && this.state === "connected") {
      const reset = await session.rejoined().catch(() => 0);
      if (reset) this.#events.log(`the traffic-manager reset ${reset} stream(s) this machine no longer held`);
    }
    const ok = results.filter(Boolean).length;
    this.streamsResumed += ok;
    // A tunnel whose new connection broke too stays suspended for the next resume; the others were reset.
    const lost = tunnels.filter((t, i) => !results[i] && !t.suspended).length;
    this.streamsLost += lost;
    if (lost) this.#events.log(`${lost} connection(s) could not resume (the manager had ended them) and were reset`);
  }

  /** Waits `ms`, or less when `#wake` is called (a clock jump, close). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }
}

/** Runs one dial, abandoning it after `ms` (a session that arrives later is closed). */
function dialWithin(ms: number, fn: () => Promise<Dialed>): Promise<Dialed> {
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new Error(`no answer within ${ms} ms`));
    }, ms);
    fn().then((d) => {
      clearTimeout(timer);
      if (!late) return resolve(d);
      void d.session.close().catch(() => {});
      d.forward?.destroy();
    }, (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

interface Dialed {
  session: ManagerSession;
  forward: ManagerStream | undefined;
}

async function dial(
  settings: ConnectSettings,
  stage: (stage: string, message: string) => void,
  onLost: (e: Error) => void,
  resumeSessionId = "",
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
      resumeSessionId,
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
