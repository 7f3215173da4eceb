/**
 * The daemon: joins the device (ffi/), the router (net/router) and the tunnel (proto/) into this machine's
 * connection to the cluster, and serves `tp status` and `tp quit` on its control socket until it is told to stop.
 *
 * Order on the way up (each stage reported as progress): traffic-manager, session, route plan and conflict check,
 * device, routes, router, control socket. On the way down the reverse; closing the device removes its routes.
 */
import { createTun, type TunDevice, tunDeviceProblem } from "../../ffi/mod.ts";
import { Netlink } from "../../ffi/netlink.ts";
import { type Cidr, formatAddress, formatCidr } from "../../net/cidr.ts";
import { Router } from "../../net/router/router.ts";
import type { TcpSocket, UdpFlow } from "../../net/router/owner.ts";
import { VERSION } from "../../base/version.ts";
import { selfArgv } from "../process.ts";
import { ExitCode } from "../exit_code.ts";
import { bridgeTcp, bridgeUdp, newBridgeStats } from "./bridge.ts";
import { IcmpEchoHook } from "./icmp_echo.ts";
import { DaemonDns, repairDns } from "./dns.ts";
import { serveControl } from "./control.ts";
import type { Progress } from "./progress.ts";
import { isLogLevel, type LevelLog, type Log } from "./log_file.ts";
import type { Flow } from "../../net/router/owner.ts";
import { conflictMessage, diffRoutes, findConflicts, planRoutes } from "./routes.ts";
import { type ConnectSettings, parseWarnPrefix, settingsDiff } from "./settings.ts";
import { checkClusterSubnets, refusedMessage } from "./cluster_subnets.ts";
import { ManagerLink } from "./link.ts";
import { DaemonIntercepts } from "./intercepts.ts";
import type { ClusterInfo } from "../../proto/mod.ts";
import {
  type DaemonState,
  ensureStateDir,
  pidAlive,
  readState,
  removeState,
  StateAccessError,
  stateAccessError,
  type StatePaths,
  writeState,
} from "./state.ts";

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

/**
 * The device's MTU: the largest the kernel allows. Packets between the apps and tp never cross a wire, so the kernel
 * hands tp whole 64 KiB TCP segments (MSS 65495) and takes them back, a fraction of the per-packet work of 1500
 * (scripts/bench_stack.ts: upload 544 -> 988 MB/s, download 287 -> 1227 MB/s).
 */
const DEVICE_MTU = 65535;
/**
 * Packets the kernel queues on the device for the daemon to read (its txqueuelen; the TUN driver's default is 500,
 * 10 ms of a 500 Mbit/s UDP flow of 1,200-byte datagrams). A daemon waiting longer than that for a CPU lost 0.7-1 % of
 * such a flow there (the device's TX drops). 2048 waits 40 ms; TCP keeps little in it either way (TCP small queues
 * hold each socket to about 1 ms of its rate below it), and the TUN driver orphans what it queues, so the memory is the
 * queued packets' only while the daemon is late.
 */
const DEVICE_QUEUE = 2048;

/** Runs the daemon until `env.signal` aborts, a `tp quit` arrives, or the session is lost. Returns tp's exit code. */
export async function runDaemon(settings: ConnectSettings, env: DaemonEnv): Promise<number> {
  const t0 = performance.now();
  const { progress, paths } = env;
  const logger = env.log;
  const log: Log = logger?.write ?? (() => {});
  const cleanup: (() => Promise<void> | void)[] = [];
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  // A bug in a callback must not end the daemon silently: log it and carry on.
  const onUnhandled = (e: PromiseRejectionEvent | ErrorEvent) => {
    e.preventDefault();
    const err = "reason" in e ? e.reason : e.error;
    log(`internal error: ${(err as Error)?.stack ?? String(err)}`, "error");
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  globalThis.addEventListener("error", onUnhandled);
  env.signal.addEventListener("abort", onAbort, { once: true });
  let exitCode: number = ExitCode.ok;
  try {
    if (Deno.uid() !== 0) {
      throw new DaemonError("tp needs root or CAP_NET_ADMIN to create its network interface: run it with sudo");
    }
    // Before any network work: a machine without the TUN device fails at once, saying how to get it.
    const noTun = tunDeviceProblem();
    if (noTun) throw new DaemonError(noTun);
    const hooks: { clusterInfo?: (info: ClusterInfo) => void } = {};
    // The user who ran tp (sudo's SUDO_UID): the mounts of intercepted pods' volumes are theirs, never whoever
    // asks, and only they and root may use the control socket.
    const user = invokingUser();
    const intercepts = new DaemonIntercepts(log, { stateDir: paths.dir, user });
    let link: ManagerLink;
    let lost: Error | undefined;
    try {
      link = await ManagerLink.open(settings, {
        stage: (stage, message) => progress.stage(stage, message),
        log,
        gaveUp: (e) => {
          lost = e;
          log(e.message);
          stop.abort();
        },
        clusterInfo: (i) => hooks.clusterInfo?.(i),
        reconnected: (s) => intercepts.attach(s),
      });
    } catch (e) {
      throw new DaemonError((e as Error).message);
    }
    cleanup.push(() => link.close());
    intercepts.attach(link.session);
    // Before the link closes (cleanup runs in reverse): the agents go back to their apps at once.
    cleanup.push(() => intercepts.close());
    const session = () => link.session;
    const info = link.session.clusterInfo;
    progress.stage(
      "session",
      `session ${link.session.id.slice(0, 8)} in namespace ${settings.namespace}; the cluster has pods in ` +
        `${info.podSubnets.join(", ") || "(none)"} and services in ${info.serviceSubnets.join(", ") || "(none)"}`,
    );

    // The cluster's word is checked: no default route, nothing holding the manager's or API server's address, no
    // public range unless --also-proxy names it (cli/daemon/cluster_subnets.ts).
    const ownAddresses = await link.ownAddresses();
    const checked = (i: ClusterInfo) => {
      const pods = checkClusterSubnets(i.podSubnets, subnetCheck),
        services = checkClusterSubnets(i.serviceSubnets, subnetCheck);
      for (const w of [...pods.warnings, ...services.warnings]) log(w, "warn");
      const refused = refusedMessage([...pods.refused, ...services.refused]);
      if (refused) log(refused, "warn");
      return {
        podSubnets: pods.accepted,
        serviceSubnets: services.accepted,
        refused,
        warnings: [...pods.warnings, ...services.warnings],
      };
    };
    const subnetCheck = {
      protect: ownAddresses,
      alsoProxy: settings.alsoProxy,
      warnPrefix: parseWarnPrefix(settings.warnPrefix),
    };
    const first = checked(info);
    if (first.refused) progress.stage("subnets", first.refused);
    for (const w of first.warnings) progress.stage("subnets", `warning: ${w}`);
    let routes = planRoutes({ ...first, alsoProxy: settings.alsoProxy, neverProxy: settings.neverProxy });
    if (routes.length === 0) {
      throw new DaemonError("there is nothing to route: the cluster reported no subnets and --also-proxy adds none");
    }
    const nl = Netlink.open();
    cleanup.push(() => nl.close());
    const existing = nl.routes().map((r) => ({ dst: r.dst, dev: r.dev, table: r.table, type: r.type }));
    const conflicts = findConflicts(routes, existing, { allow: settings.allowConflictingSubnets });
    if (conflicts.length) throw new DaemonError(conflictMessage(conflicts));

    let tun: TunDevice;
    try {
      tun = createTun({ mtu: DEVICE_MTU, txQueueLength: DEVICE_QUEUE });
    } catch (e) {
      throw new DaemonError((e as Error).message);
    }
    cleanup.push(() => tun.close());
    nl.disableIpv6AddrGen(tun.name); // no link-local address: no router solicitations or MLD reports on tp's device
    nl.setLinkUp(tun.name);
    const addresses = deviceAddresses(routes);
    for (const a of addresses) nl.addAddress(tun.name, a, { noPrefixRoute: true });
    progress.stage("device", `created the network interface ${tun.name} (${addresses.join(", ")})`);
    for (const r of routes) nl.addRoute({ dst: formatCidr(r), dev: tun.name });
    progress.stage("routes", `routing ${routes.map(formatCidr).join(", ")} to ${tun.name}`);

    const bridge = newBridgeStats();
    let dns: DaemonDns | undefined;
    // ping: echo requests go to the manager, which sends them in the cluster; replies are injected here.
    const echo = new IcmpEchoHook(
      (dst, data, timeoutMs) => session().ping(dst, data, timeoutMs),
      (packet) => router.inject(packet),
      (line) => log(line, "warn"),
    );
    const router = new Router(tun, {
      openTcp: (s: TcpSocket) => {
        if (logger?.enabled("debug")) log(`tcp ${flowText(s.flow)}`, "debug");
        return dns?.handles(s.flow) ? dns.serveTcp(s) : void bridgeTcp(session(), s, bridge);
      },
      openUdp: (f: UdpFlow) => {
        if (logger?.enabled("debug")) log(`udp ${flowText(f.flow)}`, "debug");
        return dns?.handles(f.flow) ? dns.serveUdp(f) : void bridgeUdp(session, f, bridge);
      },
    }, {
      // The packets come from this machine's kernel, never from a wire: verifying their checksums finds nothing.
      verifyChecksums: false,
      hooks: [echo],
      onError: (e) => log(`router: ${(e as Error)?.stack ?? String(e)}`, "error"),
    });
    const routing = router.run().catch((e) => {
      log(`router stopped: ${(e as Error)?.stack ?? String(e)}`, "error");
      stop.abort();
    });
    cleanup.push(async () => {
      router.stop(); // resets every connection towards its app
      tun.close(); // ends the router's pending read; the kernel removes the device and its routes
      await routing.catch(() => {});
    });

    progress.stage("dns", `pointing this machine's DNS at tp for ${info.clusterDomain || "cluster.local"} names`);
    try {
      dns = await DaemonDns.start({
        stateDir: paths.dir,
        namespace: settings.namespace,
        clusterInfo: info,
        routes,
        device: tun.name,
        cluster: (q, signal) => session().dns(q, signal),
        log,
        selfArgv: selfArgv(),
      });
    } catch (e) {
      throw new DaemonError(`cannot set up DNS: ${(e as Error).message}`);
    }
    const started = dns;
    cleanup.push(async () => log(await started.stop()));
    progress.stage(
      "dns",
      `DNS: cluster names answered at ${dns.address} (${dns.mode}); other names still go to ` +
        `${dns.upstreams.join(", ") || "(no nameserver)"}`,
    );

    const state: DaemonState = {
      pid: Deno.pid,
      startedAt: new Date().toISOString(),
      settings: { ...settings, token: settings.token ? "(set)" : "" },
      device: tun.name,
      routes: routes.map(formatCidr),
    };
    const status = () => ({
      pid: Deno.pid,
      version: VERSION,
      startedAt: state.startedAt,
      manager: link.status(),
      namespace: settings.namespace,
      device: { name: tun.name, mtu: tun.mtu, ...tun.stats },
      subnets: {
        pod: link.session.clusterInfo.podSubnets,
        service: link.session.clusterInfo.serviceSubnets,
        routed: state.routes,
      },
      dns: { clusterDomain: info.clusterDomain, clusterServer: info.dnsServer, ...started.status() },
      connections: bridge,
      ping: echo.stats,
      intercepts: { active: intercepts.status(), mounts: intercepts.mounts(), ...intercepts.stats },
      router: router.stats(),
      settings: state.settings, // the token never leaves the daemon
      log: { path: paths.log, level: logger?.level ?? "info" },
    });
    const repaired = await ensureStateDir(paths);
    if (repaired) log(repaired);
    const control = await serveControl(paths.socket, async (req) => {
      switch (req.op) {
        case "quit":
          queueMicrotask(() => stop.abort());
          return { quitting: true };
        case "intercept":
          return await intercepts.create(
            String(req.workload),
            Number(req.appPort) || 0,
            Number(req.localPort),
            req.mount ? { dir: String(req.mount.dir), required: req.mount.required === true } : undefined,
          );
        case "leave":
          return { removed: await intercepts.leave(String(req.workload ?? "")) };
        case "list":
          return await intercepts.list(String(req.namespace ?? ""));
        case "status": {
          // What the system's resolver says now, not what tp last wrote.
          const s = status();
          const now = { ...s, dns: { ...s.dns, system: await started.systemResolver() } };
          return req.compare
            ? { ...now, differs: settingsDiff(settings, req.compare as unknown as ConnectSettings) }
            : now;
        }
        case "loglevel":
          if (!isLogLevel(String(req.level))) throw new TypeError(`unknown log level "${req.level}"`);
          if (logger) logger.level = req.level;
          return { level: logger?.level ?? req.level, log: paths.log };
      }
    }, { signal: stop.signal, owner: user });
    cleanup.push(() => control.finished);
    await writeState(paths, state);
    cleanup.push(() => removeState(paths));
    // The cluster's subnets can change (a node joins with a new pod CIDR): route what is new, drop what is gone.
    hooks.clusterInfo = (next) => {
      const want = planRoutes({ ...checked(next), alsoProxy: settings.alsoProxy, neverProxy: settings.neverProxy });
      const { add, remove } = diffRoutes(routes, want);
      if (!add.length && !remove.length) return;
      const taken = findConflicts(
        add,
        nl.routes().map((r) => ({ dst: r.dst, dev: r.dev, table: r.table, type: r.type })),
        {
          ownDevice: tun.name,
          allow: settings.allowConflictingSubnets,
        },
      );
      for (const c of add) {
        const name = formatCidr(c);
        if (taken.some((t) => t.ours === name)) {
          log(`not routing the cluster's new subnet ${name}: ${conflictMessage(taken.filter((t) => t.ours === name))}`);
          continue;
        }
        try {
          nl.addRoute({ dst: name, dev: tun.name });
          log(`routing the cluster's new subnet ${name} to ${tun.name}`);
        } catch (e) {
          log(`cannot route ${name}: ${(e as Error).message}`, "warn");
        }
      }
      for (const c of remove) {
        try {
          nl.deleteRoute({ dst: formatCidr(c), dev: tun.name });
          log(`no longer routing ${formatCidr(c)}: the cluster dropped it`);
        } catch (e) {
          log(`cannot remove the route ${formatCidr(c)}: ${(e as Error).message}`, "warn");
        }
      }
      routes = want;
      state.routes = want.map(formatCidr);
      void writeState(paths, state).catch(() => {});
    };

    progress.ready(status(), performance.now() - t0);
    log(`connected: ${tun.name}, routes ${state.routes!.join(" ")}`);
    if (env.whenReady) {
      env.whenReady().catch((e) => log(`command failed: ${(e as Error).message}`));
    }
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    if (lost) {
      log(`disconnected: the session with the traffic-manager was lost (${(lost as Error).message})`);
      exitCode = ExitCode.failure;
    }
  } catch (e) {
    const err = e instanceof DaemonError ? e : new DaemonError((e as Error).message ?? String(e));
    progress.error(err.message, err.exitCode);
    log(`error: ${err.message}`, "error");
    exitCode = err.exitCode;
  } finally {
    env.signal.removeEventListener("abort", onAbort);
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
    globalThis.removeEventListener("error", onUnhandled);
    stop.abort();
    for (const f of cleanup.reverse()) {
      try {
        await f();
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`, "warn");
      }
    }
  }
  return exitCode;
}

/** The user who ran tp: sudo's SUDO_UID and SUDO_GID, else this process's own (root). */
function invokingUser(): { uid: number; gid: number } {
  const uid = Number(Deno.env.get("SUDO_UID")), gid = Number(Deno.env.get("SUDO_GID"));
  if (Number.isInteger(uid) && uid > 0) return { uid, gid: Number.isInteger(gid) && gid >= 0 ? gid : uid };
  return { uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 };
}

/** "198.18.0.1:40000 -> 198.19.0.10:8080" ([addr]:port for IPv6). */
function flowText(f: Flow): string {
  const at = (a: string, p: number) => f.family === 6 ? `[${a}]:${p}` : `${a}:${p}`;
  return `${at(f.src, f.srcPort)} -> ${at(f.dst, f.dstPort)}`;
}

/**
 * The device's own addresses, one per family it routes: the network address of the first routed block of that
 * family (as a host address, with no prefix route). The kernel needs one to add routes and to pick a source address
 * for the apps' packets; a subnet's network address is never a pod or a service, so taking it costs nothing.
 */
export function deviceAddresses(routes: readonly Cidr[]): string[] {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    const hostBits = family === 4 ? 32 : 128;
    const block = routes.find((r) => r.family === family && r.prefix <= hostBits - 2);
    if (block) out.push(`${formatAddress(family, block.base)}/${hostBits}`);
  }
  return out;
}

/**
 * Cleans up after a daemon that ended without `tp quit` (kill -9, a crash): its socket and state file. Its device
 * and routes went with its process (the kernel's doing). Returns what it did, for the user, or null if nothing.
 */
export async function cleanupStale(paths: StatePaths): Promise<string | null> {
  if (Deno.uid() !== 0) return staleForNonRoot(paths);
  const state = await readState(paths);
  const socketThere = await Deno.stat(paths.socket).then(() => true, () => false);
  // Mounts of a daemon that died (kill -9): sshfs lost its stream, and the mount answers "Transport endpoint is not
  // connected" until it is unmounted.
  const mountNotes = await repairMountsOf(paths.dir);
  if (!state && !socketThere) {
    // A daemon that died before writing its state may still have changed DNS.
    const notes = [await repairDns(paths.dir), ...mountNotes].filter((n) => n);
    return notes.length ? `cleaned up after a daemon that ended without tp quit: ${notes.join("; ")}` : null;
  }
  if (state && pidAlive(state.pid) && state.pid !== Deno.pid) {
    throw new Error(
      `a tp daemon (pid ${state.pid}) is running but does not answer on ${paths.socket}; stop it (kill ${state.pid}) and retry`,
    );
  }
  await removeState(paths);
  const what = [`removed its control socket and state`];
  const dnsNote = await repairDns(paths.dir);
  if (dnsNote) what.push(dnsNote);
  what.push(...mountNotes);
  if (state?.device) what.push(`its network interface ${state.device} and its routes went with its process`);
  return `cleaned up after a daemon that ended without tp quit${state ? ` (pid ${state.pid})` : ""}: ${
    what.join("; ")
  }`;
}

/** Unmounts what a dead daemon left mounted; a line for each, for the user. */
async function repairMountsOf(stateDir: string): Promise<string[]> {
  const exists = await Deno.stat(`${stateDir}/mounts`).then(() => true, () => false);
  if (!exists) return [];
  const { repairMounts } = await import("../mount/mod.ts");
  return (await repairMounts(stateDir)).map((r) => `unmounted ${r.was} mount ${r.dir}`);
}

/**
 * Only root can clean up after a daemon (its files belong to root, and DNS repairs write system files): a non-root
 * tp says what is left and how to clean it, and returns null when nothing is.
 */
async function staleForNonRoot(paths: StatePaths): Promise<null> {
  const left: string[] = [];
  try {
    for await (const e of Deno.readDir(paths.dir)) if (e.name !== "daemon.log") left.push(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    if (e instanceof Deno.errors.PermissionDenied) throw stateAccessError(paths.socket);
    throw e;
  }
  if (!left.length) return null;
  throw new StateAccessError(
    `the last tp daemon ended without tp quit and left ${left.sort().join(", ")} in ${paths.dir}, which only root ` +
      `can clean up: run "sudo tp quit"`,
  );
}
