import assert from "node:assert/strict";
import { checkClusterSubnets } from "./cluster_subnets.ts";

const opts = { protect: ["198.18.0.2"], alsoProxy: [] };

Deno.test("checkClusterSubnets() accepts a cluster's private subnets, IPv4 and IPv6", () => {
  const r = checkClusterSubnets(["10.42.0.0/16", "198.19.0.0/24", "fd00:10::/64", "2001:db8:5::/112"], opts);
  assert.deepEqual(r, {
    accepted: ["10.42.0.0/16", "198.19.0.0/24", "fd00:10::/64", "2001:db8:5::/112"],
    refused: [],
    warnings: [],
  });
});

Deno.test("checkClusterSubnets() refuses default routes, the manager's own address and public ranges", () => {
  const r = checkClusterSubnets(
    ["0.0.0.0/0", "::/0", "198.18.0.0/24", "8.8.8.0/24", "2606:4700::/32", "10.0.0.0/7"],
    opts,
  );
  assert.deepEqual(r.accepted, []);
  assert.deepEqual(r.refused.map((x) => [x.subnet, x.why.split(":")[0]]), [
    ["0.0.0.0/0", "it is a default route"],
    ["::/0", "it is a default route"],
    ["198.18.0.0/24", "it holds 198.18.0.2, the address tp reaches the cluster at"],
    ["8.8.8.0/24", "it is public"],
    ["2606:4700::/32", "it is public"],
    ["10.0.0.0/7", "it reaches beyond private addresses"],
  ]);
  assert.match(r.refused[3]!.why, /--also-proxy 8\.8\.8\.0\/24$/);
});

Deno.test("checkClusterSubnets() routes a public subnet that --also-proxy covers, but never the manager's address", () => {
  const r = checkClusterSubnets(["8.8.8.0/24", "203.0.112.0/23"], {
    protect: ["8.8.8.8"],
    alsoProxy: ["8.8.0.0/16", "203.0.112.0/23"],
  });
  assert.deepEqual(r.accepted, ["203.0.112.0/23"]);
  assert.equal(r.refused[0]!.subnet, "8.8.8.0/24");
});

Deno.test("checkClusterSubnets() warns of subnets wider than the configured prefix", () => {
  const r = checkClusterSubnets(["10.0.0.0/8", "fd00::/16"], { ...opts, warnPrefix: { v4: 12, v6: 48 } });
  assert.deepEqual(r.accepted, ["10.0.0.0/8", "fd00::/16"]);
  assert.equal(r.warnings.length, 2);
  assert.match(r.warnings[0]!, /^the cluster's subnet 10\.0\.0\.0\/8 is wider than \/12/);
  assert.deepEqual(checkClusterSubnets(["10.0.0.0/8"], opts).warnings, [], "the default allows /8");
});
