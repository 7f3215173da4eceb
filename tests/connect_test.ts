/**
 * `tp connect` end to end on the lab: the real kernel TCP of the workstation namespace, tp's TUN and userspace
 * stack, the gRPC-web tunnel over the lab's one veth, `tp manager` in the cluster namespace, and the lab's services.
 */
import assert from "node:assert/strict";
import { labService } from "./lab.ts";
import {
  daemonPid,
  forceQuit,
  holdConnections,
  inNs,
  iperf3,
  LAB,
  MANAGER_URL,
  socatEcho,
  startLabManager,
  STATE_DIR,
  tp,
  tpLinks,
  tpRoutes,
  whileConnected,
} from "./connect_fixture.ts";

const echo = labService(LAB, "echo");
const HTTP = echo.ports["http"]!.port;
const UDP_ECHO = echo.ports["udp-echo"]!.port;
const br = (ip: string) => ip.includes(":") ? `[${ip}]` : ip;

/** Runs `fn` with a manager in the cluster and tp connected on the workstation; tears both down after. */
Deno.test("tp connect reports each stage, and curl reaches a service IP and a pod IP, IPv4 and IPv6", async () => {
  const manager = await startLabManager();
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    for (
      const stage of [
        /connecting to the traffic-manager/,
        /session \w+/,
        /created the network interface tp\d/,
        /routing 198\.19\.0\.0\/24/,
        /connected in \d+ ms/,
      ]
    ) {
      assert.match(c.stderr, stage);
    }
    for (const ip of [echo.serviceIp, echo.podIp, echo.serviceIp6, echo.podIp6]) {
      const r = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${br(ip)}:${HTTP}/through-tp?ip=${ip}`]);
      assert.equal(r.code, 0, `curl ${ip}: ${r.stderr}`);
      const body = JSON.parse(r.stdout);
      assert.equal(body.service, "echo");
      assert.equal(body.path, `/through-tp?ip=${ip}`);
    }
  } finally {
    await forceQuit();
    await manager.stop();
  }
});

Deno.test("a TCP connection carries 50 MB each way through tp, verified by hash, with half-close", async () => {
  await whileConnected(async () => {
    const r = await socatEcho(50);
    assert.equal(r.code, 0, r.stderr);
    const [a, b] = r.stdout.trim().split("\n");
    assert.ok(a && a.length > 60);
    assert.equal(b, a, "the echoed stream differs from what was sent");
  });
});

Deno.test("500 concurrent connections through tp all complete", async () => {
  await whileConnected(async () => {
    const r = await inNs("ws", [
      "curl",
      "-s",
      "-Z",
      "--parallel-max",
      "500",
      "-H",
      "Connection: close",
      "-m",
      "30",
      "-w",
      "%{http_code}\n",
      "-o",
      "/dev/null",
      `http://${echo.serviceIp}:${HTTP}/n[1-500]`,
    ], { timeoutMs: 60_000 });
    const codes = r.stdout.trim().split("\n");
    assert.equal(codes.length, 500, r.stderr);
    assert.deepEqual(codes.filter((c) => c !== "200"), []);
  });
});

Deno.test("a closed port fails at once with Connection refused", async () => {
  await whileConnected(async () => {
    const r = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${echo.serviceIp}:${LAB.closedPort}/`]);
    assert.equal(r.code, 7, r.stderr); // curl: "Couldn't connect to server"
    assert.ok(r.ms < 2000, `refusal took ${Math.round(r.ms)} ms`);
    // socat names the errno: ECONNREFUSED, from tp's RST, not a timeout or an unreachable.
    const s = await inNs("ws", ["socat", "-T", "5", "-", `TCP:${echo.serviceIp}:${LAB.closedPort}`], { stdin: "x" });
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /Connection refused/);
    assert.ok(s.ms < 2000, `refusal took ${Math.round(s.ms)} ms`);
  });
});

Deno.test("UDP round trips through tp, and a closed UDP port answers ICMP port unreachable", async () => {
  await whileConnected(async () => {
    for (const ip of [echo.serviceIp, echo.podIp6]) {
      const line = `udp ${crypto.randomUUID()}\n`;
      const r = await inNs("ws", ["socat", "-t", "2", "-T", "3", "-", `UDP:${br(ip)}:${UDP_ECHO}`], { stdin: line });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, line);
    }
    // socat reports the ICMP port unreachable as ECONNREFUSED on its connected UDP socket.
    const closed = await inNs("ws", [
      "sh",
      "-c",
      `for i in 1 2 3; do echo x; sleep 0.3; done | socat -T 3 - UDP:${echo.serviceIp}:${LAB.closedPort}`,
    ]);
    assert.notEqual(closed.code, 0);
    assert.match(closed.stderr, /Connection refused/);
  });
});

Deno.test("tp status -o json parses and its counters move when traffic flows", async () => {
  await whileConnected(async () => {
    const before = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.equal(before.connected, true);
    assert.match(before.device.name, /^tp\d+$/);
    assert.deepEqual(before.subnets.service, LAB.subnets.service);
    const r = await inNs("ws", [
      "curl",
      "-sS",
      "-m",
      "10",
      `http://${echo.serviceIp}:${HTTP}/bytes/100000`,
      "-o",
      "/dev/null",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const after = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.ok(after.connections.tcpOpened > before.connections.tcpOpened);
    assert.ok(after.connections.bytesOutbound >= before.connections.bytesOutbound + 100000);
    assert.ok(after.device.readPackets > before.device.readPackets);
    const text = await tp(["status"]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /connected/);
  });
});

Deno.test("tp connect -- CMD returns CMD's exit code and leaves nothing behind", async () => {
  const manager = await startLabManager();
  try {
    const r = await tp([
      "connect",
      "--manager-url",
      MANAGER_URL,
      "--",
      "sh",
      "-c",
      `curl -sSf -m 10 http://${echo.serviceIp}:${HTTP}/from-ci && exit 3`,
    ]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /"path":"\/from-ci"/);
    assert.deepEqual(await tpLinks(), []);
    assert.deepEqual(await tpRoutes(), []);
    assert.equal(await Deno.stat(`${STATE_DIR}/daemon.sock`).then(() => true, () => false), false);
    const st = await tp(["status"]);
    assert.equal(st.code, 3);
  } finally {
    await forceQuit();
    await manager.stop();
  }
});

Deno.test("connecting again with the same settings exits 0, with other settings non-zero", async () => {
  await whileConnected(async () => {
    const same = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stderr, /already connected/);
    const other = await tp(["connect", "--manager-url", MANAGER_URL, "--never-proxy", "198.19.0.128/25"]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /already connected with other settings.*--never-proxy.*tp quit/s);
  });
});

Deno.test("after kill -9 of the daemon, the device and routes are gone and tp status and connect recover", async () => {
  await whileConnected(async () => {
    const pid = await daemonPid();
    assert.ok(pid);
    assert.equal((await tpLinks()).length, 1);
    Deno.kill(pid, "SIGKILL");
    for (let i = 0; i < 50 && (await tpLinks()).length; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await tpLinks(), []);
    assert.deepEqual(await tpRoutes(), []);
    const st = await tp(["status"]);
    assert.equal(st.code, 3);
    assert.match(st.stdout, /not connected/);
    const again = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /cleaned up after a daemon that ended without tp quit/);
    const r = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${echo.serviceIp}:${HTTP}/after-crash`]);
    assert.equal(r.code, 0, r.stderr);
  });
});

Deno.test("tp quit removes the device and routes", async () => {
  await whileConnected(async () => {
    assert.equal((await tpLinks()).length, 1);
    assert.ok((await tpRoutes()).length >= 4);
    const q = await tp(["quit"]);
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stderr, /disconnected/);
    assert.deepEqual(await tpLinks(), []);
    assert.deepEqual(await tpRoutes(), []);
    const again = await tp(["quit"]);
    assert.equal(again.code, 0);
    assert.match(again.stderr, /not connected; nothing to do/);
  });
});

Deno.test("a route that overlaps the service subnet stops tp connect with a clear error", async () => {
  const manager = await startLabManager();
  const route = ["198.19.0.0/25", "via", LAB.veth.clusterIp];
  await inNs("ws", ["ip", "route", "add", ...route]);
  try {
    const r = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(r.code, 1);
    assert.ok(
      r.stderr.includes(`cluster subnet 198.19.0.0/24 overlaps the route 198.19.0.0/25 on ${LAB.links.workstation}`),
      r.stderr,
    );
    assert.match(r.stderr, /--allow-conflicting-subnets 198\.19\.0\.0\/25/);
    assert.deepEqual(await tpLinks(), []);
    const ok = await tp(["connect", "--manager-url", MANAGER_URL, "--allow-conflicting-subnets", "198.19.0.0/25"]);
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await inNs("ws", ["ip", "route", "del", ...route]);
    await forceQuit();
    await manager.stop();
  }
});

Deno.test("tp connect fails fast and clearly when the manager is unreachable or the flags are wrong", async () => {
  await Deno.mkdir(STATE_DIR, { recursive: true });
  try {
    const down = await tp(["connect", "--manager-url", `http://${LAB.veth.clusterIp}:1`]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the traffic-manager at http:\/\/198\.18\.0\.2:1/);
    assert.ok(down.ms < 15_000);
    assert.deepEqual(await tpLinks(), []);
    const bad = await tp(["connect", "--manager-url", MANAGER_URL, "--also-proxy", "10.0.0/8"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--also-proxy: Cannot parse CIDR "10\.0\.0\/8"/);
    // No --manager-url: tp goes through Kubernetes, and says what it lacks.
    const none = await tp(["connect"], { env: { TP_MANAGER_URL: "", KUBECONFIG: "/nonexistent/kubeconfig" } });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no kubeconfig: .*Pass --kubeconfig <file> or set KUBECONFIG/);
  } finally {
    await forceQuit();
  }
});

Deno.test("when the manager goes away tp status says reconnecting, and tp reconnects when it is back", async () => {
  let manager = await startLabManager();
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    await manager.stop();
    let st: { manager: { state: string; lastError?: string; reconnects: number } } | undefined;
    for (let i = 0; i < 50; i++) {
      st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
      if (st!.manager.state === "reconnecting") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(st!.manager.state, "reconnecting");
    assert.ok(st!.manager.lastError);
    const down = await inNs("ws", ["curl", "-sS", "-m", "3", `http://${echo.serviceIp}:${HTTP}/`]);
    assert.notEqual(down.code, 0, "no manager: no connection");
    manager = await startLabManager();
    for (let i = 0; i < 100; i++) {
      st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
      if (st!.manager.state === "connected") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(st!.manager.state, "connected");
    assert.equal(st!.manager.reconnects, 1);
    const r = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${echo.serviceIp}:${HTTP}/after-reconnect`]);
    assert.equal(r.code, 0, r.stderr);
    const d = await inNs("ws", ["getent", "ahostsv4", "echo.default"]);
    assert.equal(d.code, 0, "DNS works through the new session");
  } finally {
    await forceQuit();
    await manager.stop();
  }
});

Deno.test("iperf3 runs through tp both ways, and a server that closes while the app still sends costs only that connection", async () => {
  await whileConnected(async () => {
    for (const reverse of [false, true]) {
      const r = await iperf3({ seconds: 2, reverse });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(JSON.parse(r.stdout).end.sum_received.bytes > 1_000_000);
    }
    // iperf3's server closes its data connections while the client may still be writing: the daemon lives on.
    const st = await tp(["status", "-o", "json"]);
    assert.equal(st.code, 0, "still connected");
    assert.equal(JSON.parse(st.stdout).router.drops.internalError, undefined);
    const c = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${echo.serviceIp}:${HTTP}/after-iperf`]);
    assert.equal(c.code, 0, c.stderr);
  });
});

Deno.test("1000 idle TCP connections are held open through tp at once", async () => {
  await whileConnected(async () => {
    const r = await holdConnections(1000);
    assert.equal(r.code, 0, r.stderr);
    const held = JSON.parse(r.stdout.trim().split("\n")[0]!);
    assert.equal(held.opened, 1000, JSON.stringify(held));
    const c = await inNs("ws", ["curl", "-sS", "-m", "10", `http://${echo.serviceIp}:${HTTP}/after-1000`]);
    assert.equal(c.code, 0, c.stderr);
  });
});
