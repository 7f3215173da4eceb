/**
 * `tp connect --kubeconfig ... --context lab -n default`: tp reaches the lab's traffic-manager through a port-forward
 * of the API server test double (a process in the lab's cluster namespace, as an API server would be), and every
 * tunnel, DNS query and control call shares that ONE WebSocket connection.
 */
import assert from "node:assert/strict";
import { type ExecResult, labService } from "./lab.ts";
import {
  forceQuit,
  holdConnections,
  inNs,
  LAB,
  resumeEcho,
  socatEcho,
  startLabManager,
  tp,
} from "./connect_fixture.ts";
import { type Double, startDouble } from "./k8s_lab_double.ts";

const echo = labService(LAB, "echo");

/**
 * Runs `fn` with the lab's manager, the API server double and `tp connect --kubeconfig` through its port-forward
 * (with `connectArgs`); ends them after, whatever happened, and returns what the double counted.
 */
async function throughPortForward(
  fn: (double: Double, connect: ExecResult) => Promise<void>,
  connectArgs: string[] = [],
): Promise<{ webSocketUpgrades: number }> {
  const manager = await startLabManager();
  const double = await startDouble();
  let stats = { webSocketUpgrades: -1 };
  try {
    const c = await tp(["connect", "--kubeconfig", double.kubeconfig, ...connectArgs]);
    assert.equal(c.code, 0, c.stderr);
    await fn(double, c);
  } finally {
    await forceQuit();
    stats = await double.stop();
    await manager.stop();
  }
  return stats;
}

Deno.test("tp connect through the API server's port-forward carries HTTP, a 20 MB TCP echo and DNS over one WebSocket", async () => {
  const stats = await throughPortForward(async (_double, c) => {
    assert.match(c.stderr, /finding the traffic-manager in namespace "tp"/);
    assert.match(c.stderr, /port-forward to pod "tp-manager-7c9d"/);
    const r = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${echo.serviceIp}:${echo.ports["http"]!.port}/k8s`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).path, "/k8s");
    const hash = await socatEcho(20);
    assert.equal(hash.code, 0, hash.stderr);
    const [sent, echoed] = hash.stdout.trim().split("\n");
    assert.equal(echoed, sent, "the 20 MB echo came back as it was sent");
    const g = await inNs("ws", ["getent", "ahostsv4", "echo.default"]);
    assert.match(g.stdout, new RegExp(`^${echo.serviceIp.replaceAll(".", "\\.")}\\s`));
    const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.equal(st.manager.portForward.pod, "tp-manager-7c9d");
    assert.ok(st.manager.portForward.bytesIn > 20_000_000);
    assert.equal((await tp(["quit"])).code, 0);
  }, ["--context", "lab", "-n", "default"]);
  assert.equal(stats.webSocketUpgrades, 1, "one WebSocket connection carried everything");
});

Deno.test("tp connect through Kubernetes names the problem: wrong token, unknown context, no kubeconfig", async () => {
  const double = await startDouble();
  try {
    const bad = await tp(["connect", "--kubeconfig", `${double.dir}/kubeconfig-wrong-token`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /401|[Uu]nauthori[sz]ed|credentials/);
    const ctx = await tp(["connect", "--kubeconfig", `${double.dir}/kubeconfig`, "--context", "nope"]);
    assert.equal(ctx.code, 1);
    assert.match(ctx.stderr, /context "nope"/);
    const none = await tp(["connect", "--kubeconfig", `${double.dir}/missing`]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no kubeconfig: --kubeconfig ".*missing" does not exist/);
  } finally {
    await forceQuit();
    await double.stop();
  }
});

Deno.test("when the cluster's pod subnets grow, tp routes the new one without reconnecting", async () => {
  const double = await startDouble();
  // The manager learns the subnets from the API (node podCIDRs and the service-range probe), as in a real cluster.
  const manager = await startLabManager(["--dns-server", LAB.clusterDns.ip], {
    kubeconfig: `${double.dir}/kubeconfig`,
  });
  try {
    const c = await tp(["connect", "--kubeconfig", `${double.dir}/kubeconfig`]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stderr, /pods in 198\.19\.128\.0\/20, 2001:db8:6::\/64 and services in 198\.19\.0\.0\/24/);
    const routes = async () => (await inNs("ws", ["ip", "-4", "route", "show", "dev", "tp0"])).stdout;
    assert.doesNotMatch(await routes(), /198\.19\.144\.0\/24/);
    Deno.kill(double.pid, "SIGUSR1");
    let now = "";
    for (let i = 0; i < 100 && !/198\.19\.144\.0\/24/.test(now); i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = await routes();
    }
    assert.match(now, /198\.19\.144\.0\/24/);
    const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.ok(st.subnets.routed.includes("198.19.144.0/24"));
    assert.equal(st.manager.reconnects, 0);
  } finally {
    await forceQuit();
    await manager.stop();
    await double.stop();
  }
});

Deno.test("one port-forward carries 400 connections held open at once", async () => {
  const stats = await throughPortForward(async () => {
    const r = await holdConnections(400);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout.trim().split("\n")[0]!).opened, 400, r.stdout);
  });
  assert.equal(stats.webSocketUpgrades, 1, `port-forwards: ${stats.webSocketUpgrades}`);
});

Deno.test("a port-forward the API server cuts in the middle of a 100 MB echo: tp resumes over a new one, the hash matches", async () => {
  const stats = await throughPortForward(async (double) => {
    const client = resumeEcho(100, 40);
    await new Promise((r) => setTimeout(r, 1_000));
    Deno.kill(double.pid, "SIGUSR2");
    const r = await client;
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.error, "", "no reset");
    assert.equal(out.equal, true, "the echo's hash matches");
    const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.equal(st.manager.resumes, 1);
    assert.equal(st.manager.streamsResumed, 1);
  }, ["--context", "lab", "-n", "default"]);
  assert.equal(stats.webSocketUpgrades, 2, "a new port-forward after the cut");
});
