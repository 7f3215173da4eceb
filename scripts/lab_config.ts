/**
 * The lab: a simulated Kubernetes cluster made of two network namespaces joined by one veth link.
 *
 * - `<id>-ws` is the workstation, where tp and the test clients run. Its only link is the veth; it has no route to
 *   the cluster's subnets, so only tp can provide one. Its resolv.conf (/etc/netns/<id>-ws/resolv.conf) points at
 *   a dnsmasq of its own that stands for the laptop's DNS.
 * - `<id>-cluster` is the cluster. Services and pods are addresses on its `lo` (this kernel has no dummy links),
 *   served by one echo process (HTTP, TCP and UDP echo), iperf3, and dnsmasq as the cluster DNS.
 *
 * The id defaults to `tp` and is set with TP_LAB_ID, so a test can run a second lab beside the main one.
 * Every address is in 198.18.0.0/15 or 2001:db8::/32 (RFC 2544 and RFC 3849 ranges: never routed anywhere real).
 */

export interface LabService {
  name: string;
  namespace: string;
  serviceIp: string;
  serviceIp6: string;
  podIp: string;
  podIp6: string;
  ports: Record<string, { port: number; protocol: "tcp" | "udp" }>;
}

export interface LabConfig {
  id: string;
  namespaces: { workstation: string; cluster: string };
  links: { workstation: string; cluster: string };
  stateDir: string;
  veth: { workstationIp: string; clusterIp: string; prefixLength: number; silentNextHop: string };
  subnets: { service: string[]; pod: string[] };
  clusterDomain: string;
  clusterDns: { ip: string; port: number };
  workstationDns: { ip: string; port: number; hostName: string; hostIp: string; searchDomain: string };
  services: LabService[];
  /** An address in the pod subnet routed to a next hop that never answers: dials there time out. */
  silentIp: string;
  /** A port nothing listens on at the echo addresses: dials there are refused. */
  closedPort: number;
  /** Where the traffic-manager is expected to listen in the cluster namespace. */
  manager: { ip: string; port: number };
}

/** The lab's id, from TP_LAB_ID (letters and digits, at most 6, so link names fit in 15 bytes). */
export function labId(): string {
  const id = Deno.env.get("TP_LAB_ID") ?? "tp";
  if (!/^[a-z][a-z0-9]{0,5}$/.test(id)) {
    throw new TypeError(`TP_LAB_ID must be 1-6 lower-case letters or digits, starting with a letter; got "${id}"`);
  }
  return id;
}

export function labConfig(id = labId()): LabConfig {
  return {
    id,
    namespaces: { workstation: `${id}-ws`, cluster: `${id}-cluster` },
    links: { workstation: `${id}-ws0`, cluster: `${id}-cl0` },
    stateDir: `/run/${id}-lab`,
    veth: { workstationIp: "198.18.0.1", clusterIp: "198.18.0.2", prefixLength: 29, silentNextHop: "198.18.0.6" },
    subnets: { service: ["198.19.0.0/24", "2001:db8:5::/112"], pod: ["198.19.128.0/20", "2001:db8:6::/64"] },
    clusterDomain: "cluster.local",
    clusterDns: { ip: "198.19.0.53", port: 53 },
    workstationDns: {
      ip: "198.18.2.53",
      port: 53,
      hostName: "laptop.home.test",
      hostIp: "198.18.2.80",
      searchDomain: "home.test",
    },
    services: [
      {
        name: "echo",
        namespace: "default",
        serviceIp: "198.19.0.10",
        serviceIp6: "2001:db8:5::10",
        podIp: "198.19.128.10",
        podIp6: "2001:db8:6::10",
        ports: {
          http: { port: 8080, protocol: "tcp" },
          "tcp-echo": { port: 7007, protocol: "tcp" },
          "udp-echo": { port: 7007, protocol: "udp" },
        },
      },
      {
        name: "iperf",
        namespace: "default",
        serviceIp: "198.19.0.11",
        serviceIp6: "2001:db8:5::11",
        podIp: "198.19.128.11",
        podIp6: "2001:db8:6::11",
        ports: { iperf: { port: 5201, protocol: "tcp" } },
      },
    ],
    silentIp: "198.19.143.254",
    closedPort: 9,
    manager: { ip: "198.18.0.2", port: 8081 },
  };
}

/** The service named `name`; throws if the lab has none. */
export function labService(config: LabConfig, name: string): LabService {
  const svc = config.services.find((s) => s.name === name);
  if (!svc) throw new RangeError(`The lab has no service "${name}"`);
  return svc;
}
