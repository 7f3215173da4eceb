/**
 * The traffic-manager's view of the cluster's network, learned from the Kubernetes API with its service account:
 *
 * - pod subnets: the nodes' `spec.podCIDRs`; when no node has any (some CNIs allocate addresses themselves), the
 *   covering CIDRs of the pods' IPs (host-network pods excluded);
 * - service subnets: the API server refuses a Service whose clusterIP is outside the service range, and its error
 *   names the range ("... The range of valid IPs is 10.96.0.0/12"), so the manager asks for one with an address no
 *   cluster uses and reads the answer (the probe Service is deleted if it ever gets created);
 * - cluster DNS: the first nameserver of the manager pod's resolv.conf, and the cluster domain from its search list.
 *
 * `watchClusterNetwork` keeps the answer current from watches on nodes, pods and services and reports each change.
 * Flags (`--pod-cidr`, `--service-cidr`, `--dns-server`) override what is discovered; that merge is the caller's.
 *
 * The Kubernetes client code it uses (kubeconfig, in-cluster config, REST) is k8s/'s, shared with the CLI.
 */
import { cidrHas, formatAddress, parseAddressValue, parseCidr } from "../net/cidr.ts";
import { type V1Node, type V1Pod, type V1Service, Watch } from "@kubernetes/client-node";
import { K8sError } from "../k8s/errors.ts";
import { type KubeTarget, loadKube } from "../k8s/kubeconfig.ts";
import { PROBE_SERVICE } from "../k8s/manifests.ts";
import { apiCall, clients } from "../k8s/rest.ts";
import { errorMessage } from "../base/error_message.ts";

export interface ClusterNetwork {
  podCidrs: string[];
  serviceCidrs: string[];
  /** Where the pod subnets came from. */
  podCidrSource: "nodes" | "pod-ips" | "none";
  /** The first nameserver of resolv.conf, and the cluster domain from its search list ("svc.<domain>"). */
  dns: { server: string | undefined; clusterDomain: string | undefined };
  /** What could not be discovered, and why (RBAC, an unexpected answer); the caller falls back to flags. */
  problems: string[];
}

export interface DiscoveryOptions {
  /** The cluster; default the in-cluster config (the pod's service account). */
  target?: KubeTarget;
  /** Namespace for the probe Service; default TP_MANAGER_NAMESPACE, else the service account's namespace. */
  namespace?: string;
  /** Path of resolv.conf (default /etc/resolv.conf). */
  resolvConf?: string;
  log?: (message: string) => void;
}

const SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/** Probe addresses: outside every service range a real cluster uses (a public resolver, a documentation prefix). */
export const PROBE_IPS = { ipv4: "1.1.1.1", ipv6: "2001:db8::1" } as const;

function target(o: DiscoveryOptions): KubeTarget {
  return o.target ?? loadKube({});
}

function probeNamespace(o: DiscoveryOptions, t: KubeTarget): string {
  if (o.namespace) return o.namespace;
  const env = Deno.env.get("TP_MANAGER_NAMESPACE");
  if (env) return env;
  try {
    return Deno.readTextFileSync(SA_NAMESPACE_FILE).trim();
  } catch {
    return t.managerNamespace;
  }
}

/** Discovers the pod and service subnets and the DNS server once. */
export async function discoverClusterNetwork(o: DiscoveryOptions = {}): Promise<ClusterNetwork> {
  const t = target(o);
  const problems: string[] = [];
  const api = clients(t).core;
  let podCidrs: string[] = [];
  let podCidrSource: ClusterNetwork["podCidrSource"] = "none";
  try {
    const nodes = await apiCall(t, { verb: "list", resource: "nodes" }, () => api.listNode());
    podCidrs = podCidrsFromNodes(nodes.items);
    if (podCidrs.length) podCidrSource = "nodes";
  } catch (e) {
    problems.push(errorMessage(e));
  }
  if (podCidrs.length === 0) {
    try {
      const pods = await apiCall(t, { verb: "list", resource: "pods" }, () => api.listPodForAllNamespaces());
      podCidrs = coveringCidrs(podIps(pods.items));
      if (podCidrs.length) podCidrSource = "pod-ips";
    } catch (e) {
      problems.push(errorMessage(e));
    }
  }
  const serviceCidrs = await probeServiceCidrs(t, probeNamespace(o, t), problems);
  let resolv = "";
  try {
    resolv = await Deno.readTextFile(o.resolvConf ?? "/etc/resolv.conf");
  } catch (e) {
    problems.push(`cannot read ${o.resolvConf ?? "/etc/resolv.conf"}: ${errorMessage(e)}`);
  }
  const net = { podCidrs, serviceCidrs, podCidrSource, dns: parseResolvConf(resolv), problems };
  for (const p of problems) o.log?.(`discovery: ${p}`);
  return net;
}

/** The union of the nodes' `spec.podCIDRs` (or the older single `spec.podCIDR`), sorted, without duplicates. */
export function podCidrsFromNodes(nodes: V1Node[]): string[] {
  const set = new Set<string>();
  for (const n of nodes) {
    for (const c of n.spec?.podCIDRs ?? (n.spec?.podCIDR ? [n.spec.podCIDR] : [])) set.add(c);
  }
  return [...set].sort();
}

/** The IPs of pods with their own network namespace (host-network pods have the node's IP). */
export function podIps(pods: V1Pod[]): string[] {
  const ips: string[] = [];
  for (const p of pods) {
    if (p.spec?.hostNetwork) continue;
    for (const a of p.status?.podIPs ?? (p.status?.podIP ? [{ ip: p.status.podIP }] : [])) if (a.ip) ips.push(a.ip);
  }
  return ips;
}

/**
 * Covering CIDRs of a set of IPs: the IPs are grouped by their /16 (IPv4) or /48 (IPv6), and each group is covered
 * by its longest common prefix, at most /24 (IPv4) or /64 (IPv6), so a node's pod range is usually covered whole
 * and a pod that starts later in it is already routed.
 */
export function coveringCidrs(ips: string[]): string[] {
  const groups = new Map<string, bigint[]>();
  for (const ip of ips) {
    const v = toBig(ip);
    if (!v) continue;
    const key = `${v.bits}:${v.value >> BigInt(v.bits === 32 ? 16 : 80)}`;
    const g = groups.get(key) ?? [];
    g.push(v.value);
    groups.set(key, g);
  }
  const out: string[] = [];
  for (const [key, values] of groups) {
    const bits = Number(key.split(":")[0]);
    const max = bits === 32 ? 24 : 64;
    let prefix = bits === 32 ? 16 : 48;
    while (prefix < max) {
      const shift = BigInt(bits - prefix - 1);
      const first = values[0]! >> shift;
      if (!values.every((v) => v >> shift === first)) break;
      prefix++;
    }
    const net = (values[0]! >> BigInt(bits - prefix)) << BigInt(bits - prefix);
    out.push(`${fromBig(net, bits)}/${prefix}`);
  }
  return out.sort();
}

function toBig(ip: string): { value: bigint; bits: 32 | 128 } | undefined {
  const a = parseAddressValue(ip);
  return a ? { value: a.value, bits: a.family === 4 ? 32 : 128 } : undefined;
}

function fromBig(v: bigint, bits: number): string {
  return formatAddress(bits === 32 ? 4 : 6, v);
}

/**
 * The CIDRs named by the API server's answer to a Service with an out-of-range clusterIP, e.g.
 * `Service "p" is invalid: spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: failed to allocate IP 1.1.1.1: the
 * provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12`. Empty when the message
 * is not that one.
 */
export function parseServiceCidrError(message: string): string[] {
  const m = message.match(/range of valid IPs is (.*)$/m);
  if (!m) return [];
  return [...m[1]!.matchAll(/[0-9a-fA-F.:]+\/\d{1,3}/g)].map((x) => x[0]);
}

/** Asks the API server for the service range of each IP family (see the module comment). */
export async function probeServiceCidrs(t: KubeTarget, namespace: string, problems: string[] = []): Promise<string[]> {
  const api = clients(t).core;
  const out: string[] = [];
  for (const [family, ip] of [["IPv4", PROBE_IPS.ipv4], ["IPv6", PROBE_IPS.ipv6]] as const) {
    const body: V1Service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: PROBE_SERVICE, labels: { "app.kubernetes.io/part-of": "tp" } },
      spec: {
        clusterIP: ip,
        ipFamilies: [family],
        ipFamilyPolicy: "SingleStack",
        ports: [{ port: 443, protocol: "TCP" }],
      },
    };
    try {
      await apiCall(
        t,
        { verb: "create", resource: "services", namespace },
        () => api.createNamespacedService({ namespace, body }),
      );
      // The probe address is in range (it should never be): remove the Service, and learn nothing.
      problems.push(`the probe Service with clusterIP ${ip} was accepted; deleted it, the ${family} range is unknown`);
      await apiCall(
        t,
        { verb: "delete", resource: "services", namespace },
        () => api.deleteNamespacedService({ name: PROBE_SERVICE, namespace }),
      ).catch((e) => problems.push(errorMessage(e)));
    } catch (e) {
      if (!(e instanceof K8sError)) throw e;
      const ranges = e.status === 422 ? parseServiceCidrError(e.message) : [];
      if (ranges.length) out.push(...ranges);
      else if (e.status === 422 && /not configured on this cluster/.test(e.message)) continue; // single-stack
      else problems.push(`service CIDR probe (${family}): ${e.message}`);
    }
  }
  return [...new Set(out)];
}

/** The first nameserver and the cluster domain (from a "svc.<domain>" search entry) of a resolv.conf. */
export function parseResolvConf(text: string): ClusterNetwork["dns"] {
  let server: string | undefined;
  let clusterDomain: string | undefined;
  for (const raw of text.split("\n")) {
    const f = raw.replace(/[#;].*/, "").trim().split(/\s+/);
    if (f[0] === "nameserver" && f[1] && !server) server = f[1];
    if (f[0] === "search") {
      const svc = f.slice(1).find((d) => d.startsWith("svc."));
      if (svc) clusterDomain = svc.slice(4).replace(/\.$/, "");
    }
  }
  return { server, clusterDomain };
}

export interface NetworkWatch {
  /** The current view. */
  readonly current: ClusterNetwork;
  close(): void;
}

/**
 * Discovers once, then watches nodes, pods and services: `onChange` gets the new view whenever the pod subnets
 * change, or a Service gets a clusterIP outside the known service subnets (which triggers a new probe). A watch the
 * API server ends is restarted after `retryMs`. Resolves once the first discovery is done.
 */
export async function watchClusterNetwork(
  o: DiscoveryOptions & { retryMs?: number },
  onChange: (n: ClusterNetwork) => void,
): Promise<NetworkWatch> {
  const t = target(o);
  let current = await discoverClusterNetwork({ ...o, target: t });
  const nodes = new Map<string, V1Node>();
  const pods = new Map<string, V1Pod>();
  // Seed the state the watches update, so their initial ADDED events (in any order) change nothing.
  const api = clients(t).core;
  const nodeList = await apiCall(t, { verb: "list", resource: "nodes" }, () => api.listNode()).catch(() => undefined);
  for (const n of nodeList?.items ?? []) nodes.set(n.metadata?.name ?? "", n);
  const needPods = podCidrsFromNodes([...nodes.values()]).length === 0;
  if (needPods) {
    const podList = await apiCall(t, { verb: "list", resource: "pods" }, () => api.listPodForAllNamespaces())
      .catch(() => undefined);
    for (const p of podList?.items ?? []) pods.set(p.metadata?.uid ?? p.metadata?.name ?? "", p);
  }
  const aborts = new Set<AbortController>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let closed = false;
  let probing = false;

  const recompute = () => {
    let podCidrs = podCidrsFromNodes([...nodes.values()]);
    let source: ClusterNetwork["podCidrSource"] = podCidrs.length ? "nodes" : "none";
    if (!podCidrs.length) {
      podCidrs = coveringCidrs(podIps([...pods.values()]));
      if (podCidrs.length) source = "pod-ips";
    }
    if (source !== "none" && podCidrs.join() !== current.podCidrs.join()) {
      current = { ...current, podCidrs, podCidrSource: source };
      onChange(current);
    }
  };
  const reprobe = async () => {
    if (probing || closed) return;
    probing = true;
    try {
      const serviceCidrs = await probeServiceCidrs(t, probeNamespace(o, t));
      if (!closed && serviceCidrs.length && serviceCidrs.join() !== current.serviceCidrs.join()) {
        current = { ...current, serviceCidrs };
        onChange(current);
      }
    } finally {
      probing = false;
    }
  };
  const covered = (ip: string) => current.serviceCidrs.some((c) => cidrContains(c, ip));

  const start = (path: string, handle: (type: string, obj: unknown) => void) => {
    if (closed) return;
    const again = () => {
      if (closed) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        start(path, handle);
      }, o.retryMs ?? 2000);
      timers.add(timer);
    };
    new Watch(t.kc).watch(path, {}, (type, obj) => handle(type, obj), (err) => {
      if (err && !closed) o.log?.(`discovery: watch ${path} ended: ${errorMessage(err)}`);
      again();
    }).then((ac) => {
      if (closed) ac.abort();
      else aborts.add(ac);
    }, (err) => {
      o.log?.(`discovery: cannot watch ${path}: ${errorMessage(err)}`);
      again();
    });
  };
  start("/api/v1/nodes", (type, obj) => {
    const n = obj as V1Node;
    const name = n.metadata?.name ?? "";
    if (type === "DELETED") nodes.delete(name);
    else nodes.set(name, n);
    recompute();
  });
  // Pods matter only while no node has podCIDRs; a watch on every pod of a big cluster is not free.
  if (needPods) {
    start("/api/v1/pods", (type, obj) => {
      const p = obj as V1Pod;
      const uid = p.metadata?.uid ?? p.metadata?.name ?? "";
      if (type === "DELETED") pods.delete(uid);
      else pods.set(uid, p);
      recompute();
    });
  }
  start("/api/v1/services", (type, obj) => {
    const ips = (obj as V1Service).spec?.clusterIPs ?? [];
    if (type !== "DELETED" && ips.some((ip) => ip !== "None" && parseAddressValue(ip) !== null && !covered(ip))) {
      void reprobe();
    }
  });
  return {
    get current() {
      return current;
    },
    close() {
      closed = true;
      for (const a of aborts) a.abort();
      for (const tm of timers) clearTimeout(tm);
    },
  };
}

/** Whether `cidr` contains `ip` (same family). */
export function cidrContains(cidr: string, ip: string): boolean {
  try {
    return cidrHas(parseCidr(cidr, { loose: true }), ip);
  } catch {
    return false;
  }
}
