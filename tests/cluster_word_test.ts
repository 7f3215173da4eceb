/**
 * The cluster's word is checked: a manager that announces a public subnet, a default route or its own address does
 * not get them routed, and a namespace named like a public top-level domain (`com`) does not take that domain's
 * names to the cluster.
 */
import assert from "node:assert/strict";
import { forceQuit, inNs, MANAGER_URL, startLabManager, tp, tpRoutes } from "./connect_fixture.ts";
import { requireTools } from "./lab.ts";

Deno.test("a manager announcing 8.8.8.0/24, 0.0.0.0/0 and its own subnet gets none of them routed; -n com keeps .com names", async () => {
  requireTools("dig");
  const manager = await startLabManager([
    "--pod-cidr",
    "8.8.8.0/24",
    "--pod-cidr",
    "0.0.0.0/0",
    "--service-cidr",
    "198.18.0.0/24",
  ]);
  try {
    const up = await tp(["connect", "--manager-url", MANAGER_URL, "-n", "com"]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, /not routing what the cluster announced: /);
    assert.match(
      up.stderr,
      /8\.8\.8\.0\/24 \(it is public: route it only if you mean to, with --also-proxy 8\.8\.8\.0\/24\)/,
    );
    assert.match(up.stderr, /0\.0\.0\.0\/0 \(it is a default route\)/);
    assert.match(up.stderr, /198\.18\.0\.0\/24 \(it holds 198\.18\.0\.2, the address tp reaches the cluster at\)/);
    const routes = await tpRoutes();
    assert.ok(routes.some((r) => r.startsWith("198.19.128.0/20 ")), routes.join("\n"));
    for (const bad of ["8.8.8.0/24", "0.0.0.0/0", "default", "198.18.0.0/24"]) {
      assert.ok(!routes.some((r) => r.startsWith(`${bad} `)), `${bad} routed: ${routes.join(", ")}`);
    }
    const before = JSON.parse((await tp(["status", "-o", "json"])).stdout).dns;
    for (const name of ["www.example.com", "api.com"]) {
      await inNs("ws", ["dig", "+tries=1", "+time=2", name, "A"]);
    }
    const after = JSON.parse((await tp(["status", "-o", "json"])).stdout).dns;
    assert.ok(after.queries >= before.queries + 2, "tp answered the queries");
    assert.equal(after.cluster, before.cluster, "no .com name was asked of the cluster");
    const full = await inNs("ws", ["dig", "+short", "+tries=1", "+time=2", "echo.default.svc.cluster.local", "A"]);
    assert.equal(full.stdout.trim(), "198.19.0.10", "cluster names still work");
  } finally {
    await forceQuit();
    await manager.stop();
  }
});

Deno.test("--also-proxy lets a public subnet the cluster announces be routed", async () => {
  const manager = await startLabManager(["--pod-cidr", "8.8.8.0/24"]);
  try {
    const up = await tp(["connect", "--manager-url", MANAGER_URL, "--also-proxy", "8.8.8.0/24"]);
    assert.equal(up.code, 0, up.stderr);
    assert.doesNotMatch(up.stderr, /not routing/);
    assert.ok((await tpRoutes()).some((r) => r.startsWith("8.8.8.0/24 ")));
  } finally {
    await forceQuit();
    await manager.stop();
  }
});
