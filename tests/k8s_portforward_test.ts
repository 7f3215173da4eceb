/**
 * tp's port-forward client against the API server test double (tests/k8s_apiserver_double.ts): bytes round-trip
 * through one WebSocket, 20 MB arrive intact, HTTP/2 runs over the stream, and every auth and setup failure gives
 * a message that says the fix. No root or lab needed: the double forwards to a TCP echo on loopback.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import net from "node:net";
import type { Duplex } from "node:stream";
import { K8sError } from "../k8s/errors.ts";
import { managerStreamFactory, openManagerStream } from "../k8s/portforward.ts";
import { fixture, MANAGER_LABELS, sha256, testPki } from "./k8s_fixture.ts";

function closed(s: Duplex): Promise<void> {
  return new Promise((r) => (s.destroyed ? r() : s.once("close", () => r())));
}

/** Writes `data` and reads until as many bytes came back. */
async function roundTrip(s: Duplex, data: Uint8Array): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer) => {
      parts.push(b);
      got += b.length;
      if (got >= data.length) {
        s.off("data", onData);
        resolve();
      }
    };
    s.on("data", onData);
    s.once("error", reject);
  });
  for (let off = 0; off < data.length; off += 256 * 1024) {
    if (!s.write(data.subarray(off, off + 256 * 1024))) await new Promise((r) => s.once("drain", r));
  }
  await done;
  return Buffer.concat(parts);
}

async function expectK8sError(p: Promise<unknown>, kind: string, pattern: RegExp): Promise<K8sError> {
  const e = await p.then(() => undefined, (e) => e);
  assert.ok(e instanceof K8sError, `expected a K8sError, got ${e}`);
  assert.equal(e.kind, kind, e.message);
  assert.match(e.message, pattern);
  return e;
}

Deno.test("openManagerStream() round-trips bytes to the manager's port through one WebSocket", async () => {
  const f = await fixture();
  try {
    const progress: string[] = [];
    const s = await openManagerStream({ kubeconfig: f.kubeconfig(), onProgress: (m) => progress.push(m) });
    assert.deepEqual(s.info, {
      context: "lab",
      server: f.double.url,
      namespace: "tp",
      pod: "tp-manager-6d5f",
      port: 8081,
    });
    for (const line of ["hello\n", "over the API server\n", "x".repeat(100_000)]) {
      const back = await roundTrip(s, Buffer.from(line));
      assert.equal(back.toString(), line);
    }
    assert.equal(f.double.webSocketUpgrades, 1);
    assert.equal(f.echo.connections, 1);
    assert.ok(progress.some((p) => p.includes('port-forward to pod "tp-manager-6d5f" port 8081')), progress.join());
    const ws = f.double.requests.filter((r) => r.path.includes("/portforward"));
    assert.deepEqual(ws.map((r) => [r.path, r.user, r.status]), [
      ["/api/v1/namespaces/tp/pods/tp-manager-6d5f/portforward?ports=8081", "alice", 101],
    ]);
    s.end();
    await closed(s);
  } finally {
    await f.close();
  }
});

Deno.test("20 MB through the port-forward arrive intact (SHA-256)", async () => {
  const f = await fixture();
  try {
    const s = await openManagerStream({ kubeconfig: f.kubeconfig() });
    const data = new Uint8Array(20 * 1024 * 1024);
    for (let off = 0; off < data.length; off += 65536) crypto.getRandomValues(data.subarray(off, off + 65536));
    const back = await roundTrip(s, data);
    assert.equal(back.length, data.length);
    assert.equal(await sha256(back), await sha256(data));
    assert.equal(s.counters.bytesOut, data.length);
    assert.equal(s.counters.bytesIn, data.length);
    assert.equal(f.double.webSocketUpgrades, 1);
    s.destroy();
    await closed(s);
  } finally {
    await f.close();
  }
});

Deno.test("node:http2 runs over the port-forward stream (createConnection), as the manager client will", async () => {
  const h2 = http2.createServer();
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.respond({ ":status": 200, "content-type": "text/plain" });
    stream.end(`you asked for ${headers[":path"]}`);
  });
  await new Promise<void>((r) => h2.listen(0, "127.0.0.1", r));
  const h2Port = (h2.address() as net.AddressInfo).port;
  const f = await fixture({ portForwardTarget: () => ({ host: "127.0.0.1", port: h2Port }) });
  try {
    const s = await openManagerStream({ kubeconfig: f.kubeconfig() });
    const client = http2.connect("http://tp-manager.tp", { createConnection: () => s });
    const bodies = await Promise.all([1, 2, 3].map((i) =>
      new Promise<string>((resolve, reject) => {
        const req = client.request({ ":path": `/call/${i}` });
        let body = "";
        req.setEncoding("utf8");
        req.on("data", (d: string) => body += d);
        req.on("end", () => resolve(body));
        req.on("error", reject);
        req.end();
      })
    ));
    assert.deepEqual(bodies, ["you asked for /call/1", "you asked for /call/2", "you asked for /call/3"]);
    assert.equal(f.double.webSocketUpgrades, 1, "three HTTP/2 streams share one port-forward");
    await new Promise<void>((r) => client.close(() => r()));
    s.destroy();
    await closed(s);
  } finally {
    await new Promise<void>((r) => h2.close(() => r()));
    await f.close();
  }
});

Deno.test("managerStreamFactory() opens a new port-forward per call (for reconnects)", async () => {
  const f = await fixture();
  try {
    const open = managerStreamFactory({ kubeconfig: f.kubeconfig() });
    const a = await open();
    a.destroy();
    await closed(a);
    const b = await open();
    assert.equal((await roundTrip(b, Buffer.from("again"))).toString(), "again");
    assert.equal(f.double.webSocketUpgrades, 2);
    b.destroy();
    await closed(b);
  } finally {
    await f.close();
  }
});

Deno.test("client certificates, certificate-authority files and insecure-skip-tls-verify authenticate as kubectl does", async () => {
  const f = await fixture({ authorize: (a) => a.user === "carol" });
  try {
    const cert = testPki().clientCert("carol", ["devs"]);
    for (const k of [{ clientCert: cert }, { clientCert: cert, caFile: true }, { clientCert: cert, insecure: true }]) {
      const s = await openManagerStream({ kubeconfig: f.kubeconfig(k) });
      assert.equal((await roundTrip(s, Buffer.from("cert"))).toString(), "cert");
      s.destroy();
      await closed(s);
    }
    assert.ok(f.double.requests.every((r) => r.user === "carol"));
  } finally {
    await f.close();
  }
});

Deno.test("an exec credential plugin's token is used", async () => {
  const f = await fixture();
  try {
    const plugin = `${f.dir}/plugin.sh`;
    Deno.writeTextFileSync(
      plugin,
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"token-alice"}}'\n`,
    );
    Deno.chmodSync(plugin, 0o755);
    const s = await openManagerStream({ kubeconfig: f.kubeconfig({ exec: { command: plugin, args: [] } }) });
    assert.equal((await roundTrip(s, Buffer.from("exec"))).toString(), "exec");
    s.destroy();
    await closed(s);
  } finally {
    await f.close();
  }
});

Deno.test("KUBECONFIG with several files: the first to set a context or current-context wins, --context picks", async () => {
  const f = await fixture();
  try {
    const a = f.kubeconfig({ token: "wrong", context: "other" }, "a");
    const b = f.kubeconfig({ token: "token-alice", context: "lab" }, "b");
    // Same cluster and user names in both files: kubectl keeps the first file's, so b's user gets its own name.
    Deno.writeTextFileSync(b, Deno.readTextFileSync(b).replaceAll('"tester"', '"alice"'));
    const env = { get: (n: string) => n === "KUBECONFIG" ? `${a}:${f.dir}/missing:${b}` : undefined, uid: () => 1000 };
    await expectK8sError(openManagerStream({ env }), "unauthorized", /context "other"/);
    const s = await openManagerStream({ env, context: "lab" });
    assert.equal(s.info.context, "lab");
    s.destroy();
    await closed(s);
  } finally {
    await f.close();
  }
});

Deno.test("errors say the fix: no kubeconfig, unknown context", async () => {
  const f = await fixture();
  try {
    await expectK8sError(
      openManagerStream({ kubeconfig: `${f.dir}/nope` }),
      "no-kubeconfig",
      /no kubeconfig: --kubeconfig ".*nope" does not exist\. Pass --kubeconfig <file> or set KUBECONFIG/,
    );
    const home = { get: (n: string) => n === "HOME" ? f.dir : undefined, uid: () => 1000 };
    await expectK8sError(openManagerStream({ env: home }), "no-kubeconfig", /there is no .*\/\.kube\/config/);
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig(), context: "prod" }),
      "unknown-context",
      /context "prod" is not in the kubeconfig .*its contexts are: lab/,
    );
  } finally {
    await f.close();
  }
});

Deno.test("errors say the fix: API server unreachable, untrusted certificate", async () => {
  const f = await fixture();
  try {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const path = `${f.dir}/dead`;
    Deno.writeTextFileSync(
      path,
      Deno.readTextFileSync(f.kubeconfig()).replace(f.double.url, `https://127.0.0.1:${port}`),
    );
    await expectK8sError(
      openManagerStream({ kubeconfig: path }),
      "unreachable",
      /cannot reach the API server of context "lab" at https:\/\/127\.0\.0\.1:\d+: .*check that the cluster is running/,
    );
    const untrusted = `${f.dir}/untrusted`;
    Deno.writeTextFileSync(
      untrusted,
      JSON.stringify({
        ...JSON.parse(Deno.readTextFileSync(f.kubeconfig())),
        clusters: [{ name: "double", cluster: { server: f.double.url } }],
      }),
    );
    await expectK8sError(openManagerStream({ kubeconfig: untrusted }), "unreachable", /certificate/i);
  } finally {
    await f.close();
  }
});

Deno.test("errors say the fix: wrong token and an exec plugin's expired credential (401)", async () => {
  const f = await fixture();
  try {
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig({ token: "stale" }) }),
      "unauthorized",
      /rejected tp's credentials \(bearer token; 401 Unauthorized\).*log in again/,
    );
    const plugin = `${f.dir}/expired.sh`;
    Deno.writeTextFileSync(
      plugin,
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"expired","expirationTimestamp":"2099-01-01T00:00:00Z"}}'\n`,
    );
    Deno.chmodSync(plugin, 0o755);
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig({ exec: { command: plugin, args: [] } }) }),
      "unauthorized",
      /exec plugin ".*expired\.sh" returned a credential the server does not accept/,
    );
  } finally {
    await f.close();
  }
});

Deno.test("errors say the fix: RBAC forbids listing pods, or the port-forward itself", async () => {
  const f = await fixture({ authorize: (a) => a.resource !== "pods" || a.verb !== "list" });
  try {
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig() }),
      "forbidden",
      /RBAC forbids tp to list pods in namespace "tp".*User "alice" cannot list resource "pods".*Role granting "list" on "pods"/,
    );
  } finally {
    await f.close();
  }
  const g = await fixture({ authorize: (a) => a.resource !== "pods/portforward" });
  try {
    const e = await expectK8sError(
      openManagerStream({ kubeconfig: g.kubeconfig() }),
      "forbidden",
      /RBAC forbids tp to create pods\/portforward in namespace "tp".*Role granting "create" on "pods\/portforward"/,
    );
    assert.equal(e.status, 403);
    assert.equal(g.double.webSocketUpgrades, 0);
  } finally {
    await g.close();
  }
});

Deno.test("errors say the fix: no manager pod (run tp install), manager pod not ready", async () => {
  const f = await fixture({ managerPod: false });
  try {
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig() }),
      "no-manager",
      /no traffic-manager in namespace "tp" of context "lab" .*run "tp install"/,
    );
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig(), managerNamespace: "ops" }),
      "no-manager",
      /run "tp install" --manager-namespace ops/,
    );
    f.double.addPod("tp", "tp-manager-pending", { labels: MANAGER_LABELS, ready: false, phase: "Pending" });
    await expectK8sError(
      openManagerStream({ kubeconfig: f.kubeconfig() }),
      "manager-not-ready",
      /pod "tp-manager-pending" in namespace "tp" is not ready \(Pending; main: ContainerCreating\).*describe pod/,
    );
  } finally {
    await f.close();
  }
});

Deno.test("a manager that refuses the connection fails the stream with the kubelet's words", async () => {
  const f = await fixture({ portForwardTarget: () => ({ host: "127.0.0.1", port: 9 }) });
  try {
    const s = await openManagerStream({ kubeconfig: f.kubeconfig() });
    const e = await new Promise<Error>((r) => s.once("error", r));
    assert.ok(e instanceof K8sError && e.kind === "port-forward", String(e));
    assert.match(
      e.message,
      /pod "tp-manager-6d5f" port 8081.*the kubelet says: an error occurred forwarding 8081 -> 8081/,
    );
    await closed(s);
  } finally {
    await f.close();
  }
});

Deno.test("the stream fails with a port-forward error when the API server goes away", async () => {
  const f = await fixture();
  try {
    const s = await openManagerStream({ kubeconfig: f.kubeconfig(), keepaliveMs: 100 });
    const errors: Error[] = [];
    s.on("error", (e) => errors.push(e));
    await f.double.close(); // the socket closes: the stream fails at once
    await closed(s);
    assert.match(errors[0]?.message ?? "", /port-forward to the traffic-manager .*(closed|failed|keepalive)/);
  } finally {
    await f.echo.close();
    Deno.removeSync(f.dir, { recursive: true });
  }
});
