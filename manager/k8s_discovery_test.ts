import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { loadKube } from "../k8s/kubeconfig.ts";
import { fixture } from "../tests/k8s_fixture.ts";
import {
  type ClusterNetwork,
  coveringCidrs,
  discoverClusterNetwork,
  parseResolvConf,
  parseServiceCidrError,
  podIps,
  watchClusterNetwork,
} from "./k8s_discovery.ts";

Deno.test("parseServiceCidrError() reads the range from kube-apiserver's Invalid message", () => {
  const msg = 'Service "tp-service-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: ' +
    "failed to allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is " +
    "10.96.0.0/12";
  assert.deepEqual(parseServiceCidrError(msg), ["10.96.0.0/12"]);
  assert.deepEqual(parseServiceCidrError("... The range of valid IPs is fd00:10:96::/112"), ["fd00:10:96::/112"]);
  assert.deepEqual(parseServiceCidrError('Service "x" is invalid: metadata.name: Required value'), []);
});

Deno.test("coveringCidrs() covers pod IPs by their common prefix, at most /24 and /64", () => {
  assert.deepEqual(coveringCidrs(["10.244.0.5", "10.244.1.7", "10.244.2.9"]), ["10.244.0.0/22"]);
  assert.deepEqual(coveringCidrs(["10.244.3.5"]), ["10.244.3.0/24"]);
  assert.deepEqual(coveringCidrs(["10.244.0.5", "172.16.9.1"]), ["10.244.0.0/24", "172.16.9.0/24"]);
  assert.deepEqual(coveringCidrs(["fd00:10:244:1::5", "fd00:10:244:2::7"]), ["fd00:10:244::/62"]);
  assert.deepEqual(coveringCidrs(["fd00:10:244:1::5"]), ["fd00:10:244:1::/64"]);
  assert.deepEqual(coveringCidrs(["not-an-ip"]), []);
});

Deno.test("podIps() skips host-network pods", () => {
  const pods: V1Pod[] = [
    { status: { podIP: "10.244.0.5", podIPs: [{ ip: "10.244.0.5" }, { ip: "fd00::5" }] } },
    { spec: { hostNetwork: true, containers: [] }, status: { podIP: "192.168.1.10" } },
    { status: { podIP: "10.244.1.2" } },
  ];
  assert.deepEqual(podIps(pods), ["10.244.0.5", "fd00::5", "10.244.1.2"]);
});

Deno.test("parseResolvConf() takes the first nameserver and the cluster domain from the search list", () => {
  const text = "# k8s\nsearch tp.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n" +
    "nameserver 10.96.0.11\noptions ndots:5\n";
  assert.deepEqual(parseResolvConf(text), { server: "10.96.0.10", clusterDomain: "cluster.local" });
  assert.deepEqual(parseResolvConf(""), { server: undefined, clusterDomain: undefined });
});

Deno.test("discoverClusterNetwork() reads nodes' podCIDRs, probes the service CIDRs (v4 and v6), reads resolv.conf", async () => {
  const f = await fixture({ serviceCidrs: ["10.96.0.0/12", "fd00:10:96::/112"] });
  try {
    f.double.addNode("a", ["10.244.0.0/24", "fd00:10:244::/64"]);
    f.double.addNode("b", ["10.244.1.0/24", "fd00:10:244:1::/64"]);
    const resolvConf = `${f.dir}/resolv.conf`;
    Deno.writeTextFileSync(resolvConf, "search tp.svc.lab.local svc.lab.local lab.local\nnameserver 10.96.0.10\n");
    const net = await discoverClusterNetwork({
      target: loadKube({ kubeconfig: f.kubeconfig() }),
      namespace: "tp",
      resolvConf,
    });
    assert.deepEqual(net, {
      podCidrs: ["10.244.0.0/24", "10.244.1.0/24", "fd00:10:244:1::/64", "fd00:10:244::/64"],
      serviceCidrs: ["10.96.0.0/12", "fd00:10:96::/112"],
      podCidrSource: "nodes",
      dns: { server: "10.96.0.10", clusterDomain: "lab.local" },
      problems: [],
    });
    assert.equal(f.double.list("services").length, 0, "the probe leaves no Service behind");
  } finally {
    await f.close();
  }
});

Deno.test("discoverClusterNetwork() falls back to pod IPs, and reports what RBAC forbids", async () => {
  const f = await fixture({
    serviceCidrs: ["198.19.0.0/24"],
    authorize: (a) => !(a.resource === "services" && a.verb === "create" && a.namespace === "locked"),
  });
  try {
    f.double.addNode("a");
    f.double.addPod("default", "web", { podIP: "198.19.128.10" });
    f.double.addPod("default", "db", { podIP: "198.19.129.11" });
    const target = loadKube({ kubeconfig: f.kubeconfig() });
    const net = await discoverClusterNetwork({ target, namespace: "tp", resolvConf: "/nonexistent" });
    assert.equal(net.podCidrSource, "pod-ips");
    assert.deepEqual(net.podCidrs, ["127.0.0.0/24", "198.19.128.0/23"]); // the manager pod's loopback IP too
    assert.deepEqual(net.serviceCidrs, ["198.19.0.0/24"]);
    assert.match(net.problems.join(), /cannot read \/nonexistent/);
    const locked = await discoverClusterNetwork({ target, namespace: "locked", resolvConf: "/nonexistent" });
    assert.deepEqual(locked.serviceCidrs, []);
    assert.match(locked.problems.join("\n"), /RBAC forbids tp to create services in namespace "locked"/);
  } finally {
    await f.close();
  }
});

Deno.test("watchClusterNetwork() reports a new node's podCIDRs", async () => {
  const f = await fixture();
  try {
    f.double.addNode("a", ["10.244.0.0/24"]);
    const changes: ClusterNetwork[] = [];
    let notify: () => void = () => {};
    const w = await watchClusterNetwork(
      { target: loadKube({ kubeconfig: f.kubeconfig() }), namespace: "tp", resolvConf: "/dev/null" },
      (n) => {
        changes.push(n);
        notify();
      },
    );
    try {
      assert.deepEqual(w.current.podCidrs, ["10.244.0.0/24"]);
      const changed = new Promise<void>((r) => notify = r);
      // The watches start in the background; add the node until one reports it (bounded).
      for (let i = 0; i < 50 && changes.length === 0; i++) {
        if (i === 5) f.double.addNode("b", ["10.244.1.0/24"]);
        await Promise.race([changed, new Promise((r) => setTimeout(r, 100))]);
      }
      assert.deepEqual(changes.at(-1)?.podCidrs, ["10.244.0.0/24", "10.244.1.0/24"]);
      assert.deepEqual(w.current.podCidrs, ["10.244.0.0/24", "10.244.1.0/24"]);
    } finally {
      w.close();
    }
  } finally {
    await f.close();
  }
});
