import assert from "node:assert/strict";
import ipaddr from "ipaddr.js";
import { NameRouter, reverseNameToAddress, reverseZones } from "./name_routing.ts";

const router = new NameRouter({
  clusterDomain: "cluster.local",
  namespace: "default",
  namespaces: ["default", "kube-system", "nginx", "com"],
  includeSuffixes: ["corp.internal"],
  excludeSuffixes: ["localhost", "skip.cluster.local"],
  subnets: ["198.19.0.0/24", "198.19.128.0/20", "2001:db8:5::/112", "2001:db8:6::/64"],
});

// [name asked, expected route ("upstream" or the name asked of the cluster), reason]
const table: [string, string, string][] = [
  ["echo.default.svc.cluster.local", "echo.default.svc.cluster.local", "cluster-domain"],
  ["ECHO.Default.svc.cluster.local.", "echo.default.svc.cluster.local", "cluster-domain"],
  ["cluster.local", "cluster.local", "cluster-domain"],
  ["_http._tcp.echo.default.svc.cluster.local", "_http._tcp.echo.default.svc.cluster.local", "cluster-domain"],
  ["echo.default", "echo.default.svc.cluster.local", "namespace"],
  ["echo.default.svc", "echo.default.svc.cluster.local", "svc-suffix"],
  ["_http._tcp.echo.default", "_http._tcp.echo.default.svc.cluster.local", "namespace"],
  ["web-0.nginx.nginx", "web-0.nginx.nginx.svc.cluster.local", "namespace"],
  ["api.com.svc.cluster.local", "api.com.svc.cluster.local", "cluster-domain"],
  ["api.com.svc", "api.com.svc.cluster.local", "svc-suffix"],
  ["api.com", "upstream", "other"],
  ["www.google.com", "upstream", "other"],
  ["kube-dns.kube-system", "kube-dns.kube-system.svc.cluster.local", "namespace"],
  ["echo", "echo.default.svc.cluster.local", "single-label"],
  ["printer", "printer.default.svc.cluster.local", "single-label"],
  ["db.corp.internal", "db.corp.internal", "include"],
  ["10.0.19.198.in-addr.arpa", "10.0.19.198.in-addr.arpa", "reverse-cluster"],
  ["254.143.19.198.in-addr.arpa", "254.143.19.198.in-addr.arpa", "reverse-cluster"],
  [
    "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    "reverse-cluster",
  ],
  ["example.com", "upstream", "other"],
  ["laptop.home.test", "upstream", "other"],
  ["echo.staging", "upstream", "other"],
  ["localhost", "upstream", "exclude"],
  ["foo.localhost", "upstream", "exclude"],
  ["x.skip.cluster.local", "upstream", "exclude"],
  ["1.1.168.192.in-addr.arpa", "upstream", "reverse-other"],
  ["0.144.19.198.in-addr.arpa", "upstream", "reverse-other"],
  ["19.198.in-addr.arpa", "upstream", "reverse-other"],
  ["", "upstream", "other"],
];

for (const [name, expected, reason] of table) {
  Deno.test(`NameRouter routes "${name}" to ${expected === "upstream" ? "upstream" : "the cluster"} (${reason})`, () => {
    const r = router.route(name);
    assert.equal(r.reason, reason);
    if (expected === "upstream") {
      assert.equal(r.to, "upstream");
    } else {
      assert.equal(r.to, "cluster");
      assert.equal(r.to === "cluster" && r.name, expected);
      assert.equal(r.to === "cluster" && r.rewritten, expected !== name.toLowerCase().replace(/\.$/, ""));
    }
  });
}

Deno.test("NameRouter without a namespace list knows only the connected namespace", () => {
  const r = new NameRouter({ clusterDomain: "cluster.local", namespace: "team" });
  assert.equal(r.route("api.team").to, "cluster");
  assert.equal(r.route("echo.default").to, "upstream");
  assert.equal(
    r.route("api").to === "cluster" && (r.route("api") as { name: string }).name,
    "api.team.svc.cluster.local",
  );
  assert.equal(r.route("localhost").to, "upstream");
});

Deno.test("NameRouter rejects a namespace with a dot and quotes it", () => {
  assert.throws(() => new NameRouter({ clusterDomain: "cluster.local", namespace: "a.b" }), /"a\.b"/);
  assert.throws(() => new NameRouter({ clusterDomain: "c", namespace: "d", subnets: ["10.0.0/8"] }), /"10\.0\.0\/8"/);
});

Deno.test("NameRouter gives the search domains and routing domains for the system configuration", () => {
  assert.deepEqual(router.searchDomains(), ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
  const rd = router.routingDomains();
  for (const d of ["cluster.local", "default", "nginx", "svc", "corp.internal", "0.19.198.in-addr.arpa"]) {
    assert.ok(rd.includes(d), d);
  }
  assert.ok(rd.includes("128.19.198.in-addr.arpa") && rd.includes("143.19.198.in-addr.arpa"));
  assert.ok(rd.includes("0.0.0.0.6.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"));
});

Deno.test("reverseNameToAddress() reads IPv4 and IPv6 names and refuses partial or bad ones", () => {
  assert.equal(reverseNameToAddress("10.0.19.198.in-addr.arpa")?.toString(), "198.19.0.10");
  assert.equal(
    reverseNameToAddress("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")?.toString(),
    "2001:db8:5::10",
  );
  assert.equal(reverseNameToAddress("256.0.19.198.in-addr.arpa"), null);
  assert.equal(reverseNameToAddress("010.0.19.198.in-addr.arpa"), null);
  assert.equal(reverseNameToAddress("0.19.198.in-addr.arpa"), null);
  assert.equal(reverseNameToAddress("g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"), null);
});

Deno.test("reverseZones() splits a prefix between label boundaries into whole zones", () => {
  assert.deepEqual(reverseZones(...ipaddr.parseCIDR("198.19.0.0/24")), ["0.19.198.in-addr.arpa"]);
  assert.deepEqual(reverseZones(...ipaddr.parseCIDR("10.0.0.0/8")), ["10.in-addr.arpa"]);
  assert.equal(reverseZones(...ipaddr.parseCIDR("198.19.128.0/20")).length, 16);
  assert.deepEqual(reverseZones(...ipaddr.parseCIDR("2001:db8:5::/112")), [
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa".split(".").slice(4).join("."),
  ]);
  assert.deepEqual(reverseZones(...ipaddr.parseCIDR("2001:db8::/30")), [
    "8.b.d.0.1.0.0.2.ip6.arpa",
    "9.b.d.0.1.0.0.2.ip6.arpa",
    "a.b.d.0.1.0.0.2.ip6.arpa",
    "b.b.d.0.1.0.0.2.ip6.arpa",
  ]);
});

Deno.test("NameRouter sends no public top-level domain to the cluster for a namespace named like one (-n com, -n dev)", () => {
  for (const ns of ["com", "dev", "io", "net", "org"]) {
    const r = new NameRouter({ clusterDomain: "cluster.local", namespace: ns });
    assert.equal(r.route(`www.google.${ns}`).to, "upstream", ns);
    assert.equal(r.route(`api.${ns}`).to, "upstream", ns);
    const full = r.route(`api.${ns}.svc.cluster.local`);
    assert.equal(full.to === "cluster" && full.name, `api.${ns}.svc.cluster.local`);
    const short = r.route("api");
    assert.equal(short.to === "cluster" && short.name, `api.${ns}.svc.cluster.local`, "single labels still work");
    assert.ok(!r.routingDomains().includes(ns), "no ~com routing domain for systemd-resolved");
  }
  const configured = new NameRouter({
    clusterDomain: "cluster.local",
    namespace: "com",
    includeSuffixes: ["corp.com"],
  });
  assert.equal(configured.route("db.corp.com").to, "cluster", "an include suffix is configuration");
});

Deno.test("NameRouter refuses a cluster domain that is a public top-level domain", () => {
  assert.throws(() => new NameRouter({ clusterDomain: "com", namespace: "default" }), /public domain "com"/);
  assert.ok(new NameRouter({ clusterDomain: "k8s.example.com", namespace: "default" }));
});
