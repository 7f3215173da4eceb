/**
 * The userspace stack on tp's device: the router (net/router) terminates the apps' connections, and each one goes
 * where it belongs: a TCP connection or UDP flow to the cluster through its own tunnel (bridge.ts), one to tp's DNS
 * address to the daemon's DNS (dns.ts), an echo request to the manager (icmp_echo.ts).
 */
import type { TunDevice } from "../../ffi/mod.ts";
import { Router } from "../../net/router/router.ts";
import type { Flow, TcpSocket, UdpFlow } from "../../net/router/owner.ts";
import type { ManagerSession } from "../../proto/mod.ts";
import { type BridgeStats, bridgeTcp, bridgeUdp, newBridgeStats } from "./bridge.ts";
import { IcmpEchoHook } from "./icmp_echo.ts";
import type { DaemonDns } from "./dns.ts";
import type { Log } from "./log_file.ts";
import type { Up } from "./stages.ts";

export interface StackParts {
  /** The link's current session (a new one after a reconnection). */
  session: () => ManagerSession;
  /** The daemon's DNS once it is up: until then, flows to its address go to the cluster like any other. */
  dns: () => DaemonDns | undefined;
  log: Log;
  /** Whether each connection is logged (the log's level may change while the daemon runs). */
  debug: () => boolean;
  /** The router stopped on its own (a bug, or the device failed): the daemon should stop. */
  failed: (e: unknown) => void;
}

export interface Stack {
  router: Router;
  bridge: BridgeStats;
  echo: IcmpEchoHook;
}

/**
 * Runs the router on `tun`. Down: the router stops (every connection is reset towards its app) and the device
 * closes, which ends the router's pending read.
 */
export function startStack(tun: TunDevice, parts: StackParts): Up<Stack> {
  const { session, dns, log, debug } = parts;
  const bridge = newBridgeStats();
  // ping: echo requests go to the manager, which sends them in the cluster; replies are injected here.
  const echo = new IcmpEchoHook(
    (dst, data, timeoutMs) => session().ping(dst, data, timeoutMs),
    (packet) => router.inject(packet),
    (line) => log(line, "warn"),
  );
  const router = new Router(tun, {
    openTcp: (s: TcpSocket) => {
      if (debug()) log(`tcp ${flowText(s.flow)}`, "debug");
      const local = dns();
      return local?.handles(s.flow) ? local.serveTcp(s) : void bridgeTcp(session(), s, bridge);
    },
    openUdp: (f: UdpFlow) => {
      if (debug()) log(`udp ${flowText(f.flow)}`, "debug");
      const local = dns();
      return local?.handles(f.flow) ? local.serveUdp(f) : void bridgeUdp(session, f, bridge);
    },
  }, {
    // The packets come from this machine's kernel, never from a wire: verifying their checksums finds nothing.
    verifyChecksums: false,
    hooks: [echo],
    onError: (e) => log(`router: ${(e as Error)?.stack ?? String(e)}`, "error"),
  });
  const routing = router.run().catch((e) => {
    log(`router stopped: ${(e as Error)?.stack ?? String(e)}`, "error");
    parts.failed(e);
  });
  return {
    value: { router, bridge, echo },
    down: async () => {
      router.stop(); // resets every connection towards its app
      tun.close(); // ends the router's pending read; the kernel removes the device and its routes
      await routing.catch(() => {});
    },
  };
}

/** "198.18.0.1:40000 -> 198.19.0.10:8080" ([addr]:port for IPv6). */
function flowText(f: Flow): string {
  const at = (a: string, p: number) => f.family === 6 ? `[${a}]:${p}` : `${a}:${p}`;
  return `${at(f.src, f.srcPort)} -> ${at(f.dst, f.dstPort)}`;
}
