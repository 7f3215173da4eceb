/**
 * What `tp status` shows of a running daemon: each part's own figures (the link, the device, DNS, the router and
 * its bridge, ping, intercepts), gathered at the moment it is asked.
 */
import type { TunDevice } from "../../ffi/mod.ts";
import { VERSION } from "../../base/version.ts";
import type { ManagerLink } from "./link.ts";
import type { DaemonDns } from "./dns.ts";
import type { Stack } from "./stack.ts";
import type { DaemonIntercepts } from "./intercepts.ts";

export interface StatusParts {
  startedAt: string;
  namespace: string;
  link: ManagerLink;
  device: TunDevice;
  /** The routes now (they follow the cluster's subnets). */
  routed: () => string[];
  /** The cluster's DNS as the first session reported it. */
  clusterDns: { clusterDomain: string; dnsServer: string };
  dns: DaemonDns;
  stack: Stack;
  intercepts: DaemonIntercepts;
  /** The settings as shown: the token never leaves the daemon. */
  settings: unknown;
  log: () => { path: string; level: string };
}

export type DaemonStatus = ReturnType<typeof daemonStatus>;

export function daemonStatus(p: StatusParts) {
  const { link, device, stack, intercepts } = p;
  return {
    pid: Deno.pid,
    version: VERSION,
    startedAt: p.startedAt,
    manager: link.status(),
    namespace: p.namespace,
    device: { name: device.name, mtu: device.mtu, ...device.stats },
    subnets: {
      pod: link.session.clusterInfo.podSubnets,
      service: link.session.clusterInfo.serviceSubnets,
      routed: p.routed(),
    },
    dns: { clusterDomain: p.clusterDns.clusterDomain, clusterServer: p.clusterDns.dnsServer, ...p.dns.status() },
    connections: stack.bridge,
    ping: stack.echo.stats,
    intercepts: { active: intercepts.status(), mounts: intercepts.mounts(), ...intercepts.stats },
    router: stack.router.stats(),
    settings: p.settings,
    log: p.log(),
  };
}
