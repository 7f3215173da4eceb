import assert from "node:assert/strict";
import { formatCidr } from "../../net/cidr.ts";
import { conflictMessage, diffRoutes, findConflicts, planRoutes, projectRoutes } from "./routes.ts";

const lab = {
  podSubnets: ["198.19.128.0/20", "2001:db8:6::/64"],
  serviceSubnets: ["198.19.0.0/24", "2001:db8:5::/112"],
};

Deno.test("planRoutes() routes the cluster's subnets plus --also-proxy, minus --never-proxy", () => {
  const plain = planRoutes({ ...lab, alsoProxy: [], neverProxy: [] }).map(formatCidr);
  assert.deepEqual(plain, ["198.19.0.0/24", "198.19.128.0/20", "2001:db8:5::/112", "2001:db8:6::/64"]);
  const carved = planRoutes({ ...lab, alsoProxy: ["198.18.4.0/24"], neverProxy: ["198.19.0.128/25"] }).map(formatCidr);
  assert.deepEqual(carved, [
    "198.18.4.0/24",
    "198.19.0.0/25",
    "198.19.128.0/20",
    "2001:db8:5::/112",
    "2001:db8:6::/64",
  ]);
});

Deno.test("findConflicts() names a main-table route inside a cluster subnet, and ignores defaults and our device", () => {
  const ours = planRoutes({ ...lab, alsoProxy: [], neverProxy: [] });
  const existing = [
    { dst: "0.0.0.0/0", dev: "eth0", table: 254, type: "unicast" },
    { dst: "198.19.0.0/25", dev: "eth1", table: 254, type: "unicast" },
    { dst: "198.19.128.0/20", dev: "tp0", table: 254, type: "unicast" },
    { dst: "198.18.0.0/29", dev: "eth1", table: 254, type: "unicast" },
    { dst: "198.19.0.9/32", dev: "lo", table: 255, type: "local" },
    { dst: "198.19.0.0/24", dev: "x", table: 100, type: "unicast" },
  ];
  const c = findConflicts(ours, existing, { ownDevice: "tp0", allow: [] });
  assert.deepEqual(c, [
    { ours: "198.19.0.0/24", theirs: "198.19.0.0/25", dev: "eth1" },
    { ours: "198.19.0.0/24", theirs: "198.19.0.9/32", dev: "lo" },
  ]);
  assert.match(conflictMessage(c), /198\.19\.0\.0\/24 overlaps the route 198\.19\.0\.0\/25 on eth1/);
  assert.match(conflictMessage(c), /--allow-conflicting-subnets 198\.19\.0\.0\/25/);
});

Deno.test("findConflicts() lets --allow-conflicting-subnets cover an overlap", () => {
  const ours = planRoutes({ ...lab, alsoProxy: [], neverProxy: [] });
  const existing = [{ dst: "198.19.0.0/25", dev: "eth1", table: 254, type: "unicast" }];
  assert.deepEqual(findConflicts(ours, existing, { allow: ["198.19.0.0/24"] }), []);
  assert.equal(findConflicts(ours, existing, { allow: ["198.19.0.0/26"] }).length, 1);
});

Deno.test("conflictMessage() says when the routes belong to another tp connection", () => {
  const c = [{ ours: "198.19.0.0/24", theirs: "198.19.0.0/24", dev: "tp0" }];
  assert.match(
    conflictMessage(c),
    /another tp connection already routes the cluster's subnets through tp0: run tp quit/,
  );
});

Deno.test("diffRoutes() names the blocks to add and to remove", () => {
  const a = planRoutes({ ...lab, alsoProxy: [], neverProxy: [] });
  const b = planRoutes({ ...lab, podSubnets: ["198.19.128.0/20", "198.19.144.0/24"], alsoProxy: [], neverProxy: [] });
  const d = diffRoutes(a, b);
  assert.deepEqual(d.add.map(formatCidr), ["198.19.144.0/24"]);
  assert.deepEqual(d.remove.map(formatCidr), ["2001:db8:6::/64"]);
  assert.deepEqual(diffRoutes(a, a), { add: [], remove: [] });
});

Deno.test("projectRoutes() checks the cluster's subnets, then plans the routes from those it accepts", () => {
  const p = projectRoutes({
    podSubnets: [...lab.podSubnets, "0.0.0.0/0", "8.8.8.0/24"],
    serviceSubnets: [...lab.serviceSubnets, "198.19.1.0/24"],
  }, { protect: ["198.19.1.5"], alsoProxy: ["198.18.4.0/24"], neverProxy: ["198.19.0.128/25"] });
  assert.deepEqual(p.routes.map(formatCidr), [
    "198.18.4.0/24",
    "198.19.0.0/25",
    "198.19.128.0/20",
    "2001:db8:5::/112",
    "2001:db8:6::/64",
  ]);
  assert.match(
    p.refused!,
    /^not routing what the cluster announced: 0\.0\.0\.0\/0 .*8\.8\.8\.0\/24 .*198\.19\.1\.0\/24/,
  );
  assert.deepEqual(p.warnings, []);
  const quiet = projectRoutes(lab, { protect: [], alsoProxy: [], neverProxy: [] });
  assert.equal(quiet.refused, null);
  assert.deepEqual(quiet.routes, planRoutes({ ...lab, alsoProxy: [], neverProxy: [] }));
});
