/**
 * The daemon: joins the device (ffi/), the router (net/router) and the tunnel (proto/) into this machine's
 * connection to the cluster, and serves `tp status` and `tp quit` on its control socket until it is told to stop.
 *
 * `runDaemon` is the wiring and nothing else: stages (stages.ts), each reported as progress, come up in this order
 * and go down in reverse, on quit or when one fails: the link to the traffic-manager (link.ts) and its session, the
 * intercepts (intercepts.ts), the route plan and its conflict check (routes.ts), netlink, the device and its routes
 * (device.ts: closing the device removes its routes), the router (stack.ts), DNS (dns.ts), the control socket
 * (control.ts, answered by control_handler.ts), the state file (state.ts), and the routes following the cluster.
 */
import { tunDeviceProblem } from "../../ffi/mod.ts";
import { Netlink } from "../../ffi/netlink.ts";
import { errorMessage } from "../../base/error_message.ts";
import type { ClusterInfo } from "../../proto/mod.ts";
import { selfArgv } from "../process.ts";
import { ExitCode } from "../exit_code.ts";
import { DaemonDns, type DaemonDnsOptions } from "./dns.ts";
import { type ControlHandler, type ControlOwner, serveControl } from "./control.ts";
import { controlHandler } from "./control_handler.ts";
import type { Progress } from "./progress.ts";
import type { LevelLog, Log } from "./log_file.ts";
import { conflictMessage, findConflicts, projectRoutes, type RoutePolicy, type RouteProjection } from "./routes.ts";
import { type ConnectSettings, parseWarnPrefix } from "./settings.ts";
import { type LinkEvents, ManagerLink } from "./link.ts";
import { DaemonIntercepts } from "./intercepts.ts";
import { DeviceRoutes, existingRoutes, openDevice } from "./device.ts";
import { startStack } from "./stack.ts";
import { daemonStatus } from "./status.ts";
import { Stages, type Teardown, type Up } from "./stages.ts";
import { type DaemonState, ensureStateDir, removeState, type StatePaths, writeState } from "./state.ts";

export interface DaemonEnv {
  paths: StatePaths;
  progress: Progress;
  signal: AbortSignal;
  /** Called once connected; the daemon runs until `signal` aborts. */
  whenReady?: (() => Promise<void>) | undefined;
  /** Where the daemon logs, at a level `tp loglevel` changes while it runs (tp status shows both). */
  log?: LevelLog;
}

/** A failure the user can act on: the message says what and how; `exitCode` is tp's. */
export class DaemonError extends Error {
  constructor(message: string, readonly exitCode: number = ExitCode.failure) {
    super(message);
    this.name = "DaemonError";
  }
}

/** Runs the daemon until `env.signal` aborts, a `tp quit` arrives, or the session is lost. Returns tp's exit code. */
export async function runDaemon(settings: ConnectSettings, env: DaemonEnv): Promise<number> {
  const t0 = performance.now();
  const { progress, paths } = env;
  const logger = env.log;
  const log: Log = logger?.write ?? (() => {});
  const stop = new AbortController();
  const stages = new Stages();
  let lost: Error | undefined;
  let exitCode: number = ExitCode.ok;
  try {
    stages.defer("error listeners", logUncaught(log));
    stages.defer("abort listener", forwardAbort(env.signal, stop));
    checkCanRun();

    // The user who ran tp (sudo's SUDO_UID): the mounts of intercepted pods' volumes are theirs, never whoever
    // asks, and only they and root may use the control socket.
    const user = invokingUser();
    const intercepts = new DaemonIntercepts(log, { stateDir: paths.dir, user });
    let followCluster: ((info: ClusterInfo) => void) | undefined;
    const link = await stages.up("link", () =>
      openLink(settings, {
        stage: (stage, message) => progress.stage(stage, message),
        log,
        clusterInfo: (i) => followCluster?.(i),
        reconnected: (s) => intercepts.attach(s),
        gaveUp: (e) => {
          lost = e;
          log(e.message);
          stop.abort();
        },
      }));
    // Before the link closes (teardown runs in reverse): the agents go back to their apps at once.
    await stages.up("intercepts", () => {
      intercepts.attach(link.session);
      return { value: intercepts, down: () => intercepts.close() };
    });
    const info = link.session.clusterInfo;
    progress.stage(
      "session",
      `session ${link.session.id.slice(0, 8)} in namespace ${settings.namespace}; the cluster has pods in ` +
        `${info.podSubnets.join(", ") || "(none)"} and services in ${info.serviceSubnets.join(", ") || "(none)"}`,
    );

    // The cluster's word is checked: no default route, nothing holding the manager's or API server's address, no
    // public range unless --also-proxy names it (cli/daemon/cluster_subnets.ts).
    const policy: RoutePolicy = {
      protect: await link.ownAddresses(),
      alsoProxy: settings.alsoProxy,
      neverProxy: settings.neverProxy,
      warnPrefix: parseWarnPrefix(settings.warnPrefix),
    };
    const plan = routePlanner(policy, log);
    const first = plan(info);
    if (first.refused) progress.stage("subnets", first.refused);
    for (const w of first.warnings) progress.stage("subnets", `warning: ${w}`);
    if (first.routes.length === 0) {
      throw new DaemonError("there is nothing to route: the cluster reported no subnets and --also-proxy adds none");
    }
    const allowConflicting = settings.allowConflictingSubnets;
    const nl = await stages.up("netlink", () => {
      const nl = Netlink.open();
      return { value: nl, down: () => nl.close() };
    });
    const conflicts = findConflicts(first.routes, existingRoutes(nl), { allow: allowConflicting });
    if (conflicts.length) throw new DaemonError(conflictMessage(conflicts));

    const { tun, addresses } = await stages.up("device", () => openDevice(nl, first.routes));
    progress.stage("device", `created the network interface ${tun.name} (${addresses.join(", ")})`);
    // No teardown of their own: they go with the device.
    const routes = new DeviceRoutes(nl, tun.name, first.routes, { allowConflicting, log });
    progress.stage("routes", `routing ${routes.list.join(", ")} to ${tun.name}`);

    let dnsUp: DaemonDns | undefined;
    const stack = await stages.up("router", () =>
      startStack(tun, {
        session: () => link.session,
        dns: () => dnsUp,
        log,
        debug: () => logger?.enabled("debug") ?? false,
        failed: () => stop.abort(),
      }));

    const dns = dnsUp = await stages.up("dns", () =>
      startDns({
        stateDir: paths.dir,
        namespace: settings.namespace,
        clusterInfo: info,
        routes: first.routes,
        device: tun.name,
        cluster: (q, signal) => link.session.dns(q, signal),
        log,
      }, progress));

    const state: DaemonState = {
      pid: Deno.pid,
      startedAt: new Date().toISOString(),
      settings: { ...settings, token: settings.token ? "(set)" : "" }, // the token never leaves the daemon
      device: tun.name,
      routes: routes.list,
    };
    const status = () =>
      daemonStatus({
        startedAt: state.startedAt,
        namespace: settings.namespace,
        link,
        device: tun,
        routed: () => routes.list,
        clusterDns: info,
        dns,
        stack,
        intercepts,
        settings: state.settings,
        log: () => ({ path: paths.log, level: logger?.level ?? "info" }),
      });
    const answer = controlHandler({
      quit: () => stop.abort(),
      status,
      dns,
      intercepts,
      settings,
      log: { logger, path: paths.log },
    });
    await stages.up("control socket", () => openControl(paths, answer, { signal: stop.signal, owner: user, log }));
    await stages.up("state file", async () => {
      await writeState(paths, state);
      return { value: state, down: () => removeState(paths) };
    });
    // The cluster's subnets can change (a node joins with a new pod CIDR): route what is new, drop what is gone.
    followCluster = (next) => {
      if (!routes.update(plan(next).routes)) return;
      state.routes = routes.list;
      void writeState(paths, state).catch(() => {});
    };
    stages.defer("routes following the cluster", () => void (followCluster = undefined));
    // A change that came while the daemon started (nothing followed it yet) is routed now; only then, since planning
    // again would log the first plan's warnings twice.
    if (link.session.clusterInfo !== info) followCluster(link.session.clusterInfo);

    progress.ready(status(), performance.now() - t0);
    log(`connected: ${tun.name}, routes ${routes.list.join(" ")}`);
    if (env.whenReady) {
      env.whenReady().catch((e) => log(`command failed: ${errorMessage(e)}`));
    }
    await aborted(stop.signal);
    if (lost) {
      log(`disconnected: the session with the traffic-manager was lost (${lost.message})`);
      exitCode = ExitCode.failure;
    }
  } catch (e) {
    const err = e instanceof DaemonError ? e : new DaemonError(errorMessage(e));
    progress.error(err.message, err.exitCode);
    log(`error: ${err.message}`, "error");
    exitCode = err.exitCode;
  } finally {
    stop.abort();
    await stages.down((stage, e) => log(`cleanup (${stage}): ${errorMessage(e)}`, "warn"));
  }
  return exitCode;
}

/** Before any network work: without root, or on a machine without the TUN device, tp fails at once, saying how. */
function checkCanRun(): void {
  if (Deno.uid() !== 0) {
    throw new DaemonError("tp needs root or CAP_NET_ADMIN to create its network interface: run it with sudo");
  }
  const noTun = tunDeviceProblem();
  if (noTun) throw new DaemonError(noTun);
}

/** Connects to the traffic-manager and starts a session (its progress through `events`). Down: departs and closes. */
async function openLink(settings: ConnectSettings, events: LinkEvents): Promise<Up<ManagerLink>> {
  const link = await ManagerLink.open(settings, events);
  return { value: link, down: () => link.close() };
}

/** Points this machine's DNS at tp (dns.ts), saying so. Down: puts it back, and logs what it did. */
async function startDns(o: Omit<DaemonDnsOptions, "selfArgv">, progress: Progress): Promise<Up<DaemonDns>> {
  progress.stage(
    "dns",
    `pointing this machine's DNS at tp for ${o.clusterInfo.clusterDomain || "cluster.local"} names`,
  );
  let dns: DaemonDns;
  try {
    dns = await DaemonDns.start({ ...o, selfArgv: selfArgv() });
  } catch (e) {
    throw new DaemonError(`cannot set up DNS: ${errorMessage(e)}`);
  }
  progress.stage(
    "dns",
    `DNS: cluster names answered at ${dns.address} (${dns.mode}); other names still go to ` +
      `${dns.upstreams.join(", ") || "(no nameserver)"}`,
  );
  return { value: dns, down: async () => o.log(await dns.stop()) };
}

/** The routes for the cluster's info (routes.ts), logging what the subnet check refused or warns about. */
function routePlanner(policy: RoutePolicy, log: Log): (info: ClusterInfo) => RouteProjection {
  return (info) => {
    const p = projectRoutes(info, policy);
    for (const w of p.warnings) log(w, "warn");
    if (p.refused) log(p.refused, "warn");
    return p;
  };
}

/**
 * Serves the control socket in the state directory (made safe first: state.ts) until `signal` aborts. Down: waits
 * for the requests in progress, and the socket file is gone.
 */
async function openControl(
  paths: StatePaths,
  handler: ControlHandler,
  o: { signal: AbortSignal; owner: ControlOwner; log: Log },
): Promise<Up<void>> {
  const repaired = await ensureStateDir(paths);
  if (repaired) o.log(repaired);
  const control = await serveControl(paths.socket, handler, { signal: o.signal, owner: o.owner });
  return { value: undefined, down: () => control.finished };
}

/** A bug in a callback must not end the daemon silently: it is logged and the daemon carries on. */
function logUncaught(log: Log): Teardown {
  const onUnhandled = (e: PromiseRejectionEvent | ErrorEvent) => {
    e.preventDefault();
    const err = "reason" in e ? e.reason : e.error;
    log(`internal error: ${(err as Error)?.stack ?? String(err)}`, "error");
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  globalThis.addEventListener("error", onUnhandled);
  return () => {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
    globalThis.removeEventListener("error", onUnhandled);
  };
}

/** `from` aborting aborts `to`, until the teardown; at once when it already has. */
function forwardAbort(from: AbortSignal, to: AbortController): Teardown {
  const onAbort = () => to.abort();
  if (from.aborted) onAbort();
  from.addEventListener("abort", onAbort, { once: true });
  return () => from.removeEventListener("abort", onAbort);
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** The user who ran tp: sudo's SUDO_UID and SUDO_GID, else this process's own (root). */
function invokingUser(): { uid: number; gid: number } {
  const uid = Number(Deno.env.get("SUDO_UID")), gid = Number(Deno.env.get("SUDO_GID"));
  if (Number.isInteger(uid) && uid > 0) return { uid, gid: Number.isInteger(gid) && gid >= 0 ? gid : uid };
  return { uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 };
}
