/**
 * The API server double checked against the real client, kubectl (which must be on PATH: these tests fail naming
 * it), and `tp install` / `tp uninstall` against the double. kubectl needs no KUBECTL_* switch: its port-forward
 * tries a WebSocket tunnel first, which the double refuses, and falls back to SPDY, as against an older API server.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { exec, requireTools, ROOT } from "./lab.ts";
import { fixture, MANAGER_LABELS } from "./k8s_fixture.ts";

const TP = [`${ROOT}/scripts/deno`, "run", "--allow-all", `${ROOT}/cli/main.ts`];

function kubectl(kubeconfig: string, args: string[], stdin?: string) {
  requireTools("kubectl");
  return exec(["kubectl", "--kubeconfig", kubeconfig, ...args], {
    timeoutMs: 30_000,
    ...(stdin === undefined ? {} : { stdin }),
  });
}

Deno.test("kubectl version -o json reads the double's /version", async () => {
  const f = await fixture();
  try {
    const r = await kubectl(f.kubeconfig(), ["version", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const v = JSON.parse(r.stdout);
    assert.equal(v.serverVersion.gitVersion, "v1.32.0-tp-double");
    assert.match(v.clientVersion.gitVersion, /^v1\./);
  } finally {
    await f.close();
  }
});

Deno.test("kubectl get pods,nodes,svc -o json lists what the double holds (discovery, short names, lists)", async () => {
  const f = await fixture();
  try {
    f.double.addNode("node-1", ["10.244.0.0/24"]);
    f.double.put({ apiVersion: "v1", kind: "Service", metadata: { name: "api", namespace: "tp" }, spec: {} });
    const r = await kubectl(f.kubeconfig({ token: "token-alice", namespace: "tp" }), [
      "get",
      "pods,nodes,svc",
      "-o",
      "json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const items = JSON.parse(r.stdout).items as { kind: string; metadata: { name: string } }[];
    assert.deepEqual(items.map((i) => `${i.kind}/${i.metadata.name}`), [
      "Pod/tp-manager-6d5f",
      "Node/node-1",
      "Service/api",
    ]);
    const sel = await kubectl(f.kubeconfig(), [
      "get",
      "pods",
      "-n",
      "tp",
      "-l",
      "app.kubernetes.io/name=tp-manager",
      "-o",
      "name",
    ]);
    assert.equal(sel.code, 0, sel.stderr);
    assert.equal(sel.stdout, "pod/tp-manager-6d5f\n");
  } finally {
    await f.close();
  }
});

Deno.test("kubectl sees the double's 401 and 403 as it would a real API server's", async () => {
  const f = await fixture({ authorize: (a) => a.verb !== "list" || a.resource !== "nodes" });
  try {
    const bad = await kubectl(f.kubeconfig({ token: "nope" }), ["get", "pods", "-n", "tp"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /must be logged in to the server|Unauthorized/);
    const forbidden = await kubectl(f.kubeconfig(), ["get", "nodes"]);
    assert.notEqual(forbidden.code, 0);
    assert.match(forbidden.stderr, /nodes is forbidden: User "alice" cannot list resource "nodes"/);
  } finally {
    await f.close();
  }
});

Deno.test("the double answers an out-of-range clusterIP with the real error, which kubectl shows", async () => {
  const f = await fixture({ serviceCidrs: ["10.96.0.0/12"] });
  try {
    const svc = JSON.stringify({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "probe", namespace: "default" },
      spec: { clusterIP: "1.1.1.1", ports: [{ port: 443 }] },
    });
    const r = await kubectl(f.kubeconfig(), ["create", "--validate=false", "-f", "-"], svc);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /The range of valid IPs is 10\.96\.0\.0\/12/);
  } finally {
    await f.close();
  }
});

Deno.test("tp install --dry-run -o yaml parses and kubectl apply --dry-run=client --validate=false accepts it", async () => {
  const f = await fixture({ managerPod: false });
  try {
    const r = await exec([...TP, "install", "--dry-run", "-o", "yaml", "--image", "registry.test/tp:1"]);
    assert.equal(r.code, 0, r.stderr);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS());
    assert.deepEqual(docs.map((d) => d.kind), [
      "Namespace",
      "ServiceAccount",
      "ClusterRole",
      "ClusterRoleBinding",
      "Role",
      "RoleBinding",
      "Deployment",
      "Service",
    ]);
    const dep = docs.find((d) => d.kind === "Deployment");
    const c = dep.spec.template.spec.containers[0];
    assert.equal(c.image, "registry.test/tp:1");
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(dep.spec.template.spec.securityContext.runAsNonRoot, true);
    // Closed by default: the client API on the pod's loopback (port-forwards only), probes on the agent port.
    assert.equal(c.env.find((e: { name: string }) => e.name === "TP_MANAGER_LISTEN").value, "127.0.0.1:8081");
    assert.equal(c.readinessProbe.tcpSocket.port, "agent");
    assert.equal(c.livenessProbe.tcpSocket.port, "agent");
    const svc = docs.find((d) => d.kind === "Service" && d.metadata.name === "tp-manager");
    assert.deepEqual(svc.spec.ports.map((p: { name: string }) => p.name), ["agent"]);
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory);
    assert.deepEqual(
      dep.spec.template.metadata.labels["app.kubernetes.io/name"],
      MANAGER_LABELS["app.kubernetes.io/name"],
    );
    const apply = await kubectl(f.kubeconfig(), ["apply", "--dry-run=client", "--validate=false", "-f", "-"], r.stdout);
    assert.equal(apply.code, 0, apply.stderr);
    assert.equal(apply.stdout.trim().split("\n").length, 8);
    assert.match(apply.stdout, /deployment\.apps\/tp-manager created \(dry run\)/);
    assert.equal(f.double.created.length, 0, "a client dry run creates nothing");
  } finally {
    await f.close();
  }
});

Deno.test("tp install creates exactly the objects it prints; tp uninstall removes them", async () => {
  const f = await fixture({ managerPod: false });
  try {
    const kc = f.kubeconfig();
    const printed = await exec([...TP, "install", "--dry-run", "-o", "yaml", "--manager-namespace", "tp-x"]);
    const expected = parseAllDocuments(printed.stdout).map((d) => d.toJS());
    const r = await exec([...TP, "install", "--kubeconfig", kc, "--manager-namespace", "tp-x", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.ok(out.objects.every((o: { action: string }) => o.action === "created"), r.stdout);
    assert.match(out.pod, /^tp-manager-/, "install waits for the manager pod");
    assert.equal(f.double.created.length, expected.length);
    for (const [i, want] of expected.entries()) {
      const got = structuredClone(f.double.created[i]!);
      if (got.kind === "Service") {
        const spec = got.spec as Record<string, unknown>;
        delete spec.clusterIP; // allocated by the API server
        delete spec.clusterIPs;
      }
      assert.deepEqual(got, want, `object ${i} (${want.kind})`);
    }
    const again = await exec([...TP, "install", "--kubeconfig", kc, "--manager-namespace", "tp-x", "--no-wait"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /deployment\/tp-manager \(namespace tp-x\) exists/);

    const u = await exec([...TP, "uninstall", "--kubeconfig", kc, "--manager-namespace", "tp-x", "-o", "json"]);
    assert.equal(u.code, 0, u.stderr);
    assert.ok(JSON.parse(u.stdout).objects.every((o: { action: string }) => o.action === "deleted"), u.stdout);
    for (const plural of ["namespaces", "serviceaccounts", "clusterroles", "clusterrolebindings", "roles"]) {
      assert.deepEqual(f.double.list(plural).map((o) => o.metadata.name), [], plural);
    }
    for (const plural of ["rolebindings", "deployments", "services", "pods"]) {
      assert.deepEqual(f.double.list(plural).map((o) => o.metadata.name), [], plural);
    }
    const twice = await exec([...TP, "uninstall", "--kubeconfig", kc, "--manager-namespace", "tp-x"]);
    assert.equal(twice.code, 0, twice.stderr);
    assert.match(twice.stdout, /deployment\/tp-manager \(namespace tp-x\) absent/);
  } finally {
    await f.close();
  }
});

Deno.test("tp uninstall keeps a namespace tp did not create", async () => {
  const f = await fixture({ managerPod: false });
  try {
    f.double.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "ops" } });
    const kc = f.kubeconfig();
    const r = await exec([...TP, "install", "--kubeconfig", kc, "--manager-namespace", "ops", "--no-wait"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /namespace\/ops exists/);
    const u = await exec([...TP, "uninstall", "--kubeconfig", kc, "--manager-namespace", "ops"]);
    assert.equal(u.code, 0, u.stderr);
    assert.match(u.stdout, /namespace\/ops kept/);
    assert.ok(f.double.get("namespaces", undefined, "ops"));
  } finally {
    await f.close();
  }
});

Deno.test("tp install against a forbidden cluster exits 1 naming the verb and resource", async () => {
  const f = await fixture({ authorize: (a) => a.resource !== "clusterroles" });
  try {
    const r = await exec([...TP, "install", "--kubeconfig", f.kubeconfig(), "--no-wait"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tp: RBAC forbids tp to create clusterroles\.rbac\.authorization\.k8s\.io/);
  } finally {
    await f.close();
  }
});

/** Runs `kubectl port-forward`, sends a line through the local port it opens, returns the echo; kills kubectl by pid. */
async function kubectlPortForward(kubeconfig: string, env: Record<string, string>): Promise<string> {
  requireTools("kubectl");
  const child = new Deno.Command("kubectl", {
    args: [
      "--kubeconfig",
      kubeconfig,
      "port-forward",
      "-n",
      "tp",
      "--address",
      "127.0.0.1",
      "pod/tp-manager-6d5f",
      ":8081",
    ],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let out = "";
    const timeout = setTimeout(() => child.kill("SIGKILL"), 15_000);
    let port = 0;
    for (let i = 0; i < 50 && !port; i++) {
      const r = await reader.read();
      if (r.done) break;
      out += r.value;
      port = Number(out.match(/Forwarding from 127\.0\.0\.1:(\d+)/)?.[1] ?? 0);
    }
    clearTimeout(timeout);
    if (!port) {
      const err = await Promise.race([
        stderr.read(),
        new Promise<{ value: string }>((r) => setTimeout(() => r({ value: "" }), 2000)),
      ]);
      assert.fail(`kubectl port-forward printed no port: ${out} ${err.value ?? ""}`);
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const line = `through kubectl ${crypto.randomUUID()}\n`;
    await conn.write(new TextEncoder().encode(line));
    let back = "";
    const buf = new Uint8Array(4096);
    for (let i = 0; i < 100 && back.length < line.length; i++) {
      const n = await conn.read(buf);
      if (n === null) break;
      back += new TextDecoder().decode(buf.subarray(0, n));
    }
    conn.close();
    return back === line ? "echoed" : `got ${JSON.stringify(back)}`;
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* it ended already */ }
    await child.status;
    await reader.cancel().catch(() => {});
    await stderr.cancel().catch(() => {});
  }
}

Deno.test("kubectl port-forward through the double reaches the echo (SPDY, by kubectl's own fallback or forced)", async () => {
  const f = await fixture();
  try {
    const kc = f.kubeconfig();
    assert.equal(await kubectlPortForward(kc, {}), "echoed");
    assert.equal(await kubectlPortForward(kc, { KUBECTL_PORT_FORWARD_WEBSOCKETS: "false" }), "echoed");
    assert.equal(f.double.spdyUpgrades, 2);
    const upgrades = f.double.requests.filter((r) => r.status === 101).map((r) => r.path);
    assert.deepEqual(upgrades, [
      "/api/v1/namespaces/tp/pods/tp-manager-6d5f/portforward",
      "/api/v1/namespaces/tp/pods/tp-manager-6d5f/portforward",
    ]);
  } finally {
    await f.close();
  }
});
