/**
 * Injecting and removing the traffic-agent through the API server double (k8s/agent_install.ts): the objects before
 * and after are compared as the API server stores them.
 */
import assert from "node:assert/strict";
import { injectionYaml } from "../k8s/inject.ts";
import { findWorkload, injectAgent, planAgent, removeAgent, removeAllAgents } from "../k8s/agent_install.ts";
import { K8sError } from "../k8s/errors.ts";
import { loadKube } from "../k8s/kubeconfig.ts";
import type { ApiServerDouble } from "./k8s_apiserver_double.ts";
import { fixture } from "./k8s_fixture.ts";
import { ROOT } from "./lab.ts";

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

function app(kind: string, name: string): Obj {
  return {
    apiVersion: "apps/v1",
    kind,
    metadata: {
      name,
      namespace: "default",
      generation: 1,
      labels: { app: name },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": `{"kind":"${kind}"}` },
    },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{
            name: "app",
            image: "registry.test/echo:1",
            ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
            env: [{ name: "APP_GREETING", value: "hello" }],
            volumeMounts: [{ name: "config", mountPath: "/etc/app", readOnly: true }],
          }],
          volumes: [{ name: "config", configMap: { name: `${name}-config` } }],
        },
      },
    },
    status: { replicas: 1, readyReplicas: 1 },
  };
}

function service(name: string, selector: string, targetPort: number | string = "http"): Obj {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default", labels: { app: selector } },
    spec: {
      clusterIP: "10.96.0.50",
      clusterIPs: ["10.96.0.50"],
      selector: { app: selector },
      ports: [{ name: "http", port: 80, protocol: "TCP", targetPort }],
    },
  };
}

function seed(d: ApiServerDouble): void {
  d.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } });
  d.put({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "tp-manager", namespace: "tp", generation: 1 },
    spec: { template: { spec: { containers: [{ name: "manager", image: "registry.test/tp:9", args: ["manager"] }] } } },
  });
  d.put(app("Deployment", "echo"));
  d.put(service("echo", "echo"));
  d.put(service("echo-direct", "echo", 8080));
  d.put({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "kubernetes", namespace: "default" },
    spec: { ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: 6443 }] },
  });
}

/** An object without the fields the API server manages, as `kubectl diff` compares them. */
function userView(o: Obj | undefined): unknown {
  assert.ok(o, "the object exists");
  const c = structuredClone(o);
  for (const k of ["resourceVersion", "generation", "uid", "creationTimestamp", "managedFields"]) delete c.metadata[k];
  delete c.status;
  return c;
}

const NS = "default";

Deno.test("injectAgent() adds the agent, its Secret and re-points the Services; removeAgent() restores them exactly", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: NS });
    const before = {
      dep: userView(f.double.get("deployments", NS, "echo")),
      svc: userView(f.double.get("services", NS, "echo")),
      direct: userView(f.double.get("services", NS, "echo-direct")),
      other: structuredClone(f.double.get("services", NS, "kubernetes")),
    };
    const progress: string[] = [];
    const r = await injectAgent(t, NS, "echo", { onProgress: (m) => progress.push(m) });
    assert.deepEqual(r, {
      kind: "Deployment",
      name: "echo",
      namespace: NS,
      action: "injected",
      appContainer: "app",
      forward: [{ agentPort: 9900, appPort: 8080 }],
      services: ["echo", "echo-direct"],
    });
    assert.ok(progress.some((m) => /added container tp-agent/.test(m)), progress.join("\n"));

    const dep = f.double.get("deployments", NS, "echo")!;
    const containers = (dep.spec as { template: { spec: { containers: Record<string, unknown>[] } } }).template.spec
      .containers;
    assert.deepEqual(containers.map((c) => c.name), ["app", "tp-agent"]);
    const agent = containers[1]!;
    assert.equal(agent.image, "registry.test/tp:9", "the manager's image");
    const env = agent.env as { name: string; value?: string }[];
    assert.equal(env.find((e) => e.name === "TP_AGENT_MANAGER_URL")?.value, "http://tp-manager.tp:8082");
    assert.equal(env.find((e) => e.name === "APP_GREETING")?.value, "hello");
    assert.equal(dep.metadata.generation, 2);
    const svc = f.double.get("services", NS, "echo")!;
    assert.equal((svc.spec as { ports: { targetPort: unknown }[] }).ports[0]!.targetPort, 9900);
    assert.ok((svc.metadata.annotations as Record<string, string>)["tp.dev/original-target-ports"]);
    const secret = f.double.get("secrets", NS, "tp-agent-echo")!;
    const token = atob((secret.data as { token: string }).token);
    assert.ok(token.length >= 40, "a random token");
    const pods = f.double.list("pods", NS);
    assert.equal(pods.length, 1, "the double replaced the pod with one of the new template");
    assert.deepEqual(
      (pods[0]!.spec as { containers: { name: string }[] }).containers.map((c) => c.name),
      ["app", "tp-agent"],
    );
    const patches = f.double.requests.filter((q) => q.method === "PATCH");
    assert.ok(patches.length === 3 && patches.every((q) => q.contentType === "application/json-patch+json"));

    const removed = await removeAgent(t, NS, "echo");
    assert.deepEqual(removed, {
      kind: "Deployment",
      name: "echo",
      namespace: NS,
      action: "removed",
      services: ["echo", "echo-direct"],
    });
    assert.deepEqual(userView(f.double.get("deployments", NS, "echo")), before.dep);
    assert.deepEqual(userView(f.double.get("services", NS, "echo")), before.svc);
    assert.deepEqual(userView(f.double.get("services", NS, "echo-direct")), before.direct);
    assert.deepEqual(f.double.get("services", NS, "kubernetes"), before.other, "not even its resourceVersion moved");
    assert.equal(f.double.get("secrets", NS, "tp-agent-echo"), undefined);
    assert.equal((await removeAgent(t, NS, "echo")).action, "absent", "twice is harmless");
  } finally {
    await f.close();
  }
});

Deno.test("injectAgent() leaves a workload that has the agent as it is, and re-points a Service made since", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: NS });
    await injectAgent(t, NS, "deployment/echo");
    const rv = f.double.get("deployments", NS, "echo")!.metadata.resourceVersion;
    f.double.put(service("echo-late", "echo"));
    f.double.remove("secrets", NS, "tp-agent-echo");
    const again = await injectAgent(t, NS, "echo");
    assert.equal(again.action, "present");
    assert.deepEqual(again.forward, [{ agentPort: 9900, appPort: 8080 }]);
    assert.deepEqual(again.services.sort(), ["echo", "echo-direct", "echo-late"]);
    assert.equal(f.double.get("deployments", NS, "echo")!.metadata.resourceVersion, rv, "the workload untouched");
    const late = f.double.get("services", NS, "echo-late")!;
    assert.equal((late.spec as { ports: { targetPort: unknown }[] }).ports[0]!.targetPort, 9900);
    assert.ok(f.double.get("secrets", NS, "tp-agent-echo"), "a missing Secret is made again");
    await removeAgent(t, NS, "echo");
    assert.deepEqual(userView(f.double.get("services", NS, "echo-late")), userView(service("echo-late", "echo")));
  } finally {
    await f.close();
  }
});

Deno.test("injectAgent() reads again and retries when the workload changes between its read and its patch", async () => {
  const late: { double?: ApiServerDouble } = {}; // the double, once started, for its own authorize hook
  let meddled = false;
  const f = await fixture({
    authorize: (a) => {
      const double = late.double;
      if (a.verb === "patch" && a.resource === "deployments" && !meddled && double) {
        meddled = true; // someone else scales the Deployment just before tp's patch arrives
        const dep = structuredClone(double.get("deployments", NS, "echo")!);
        (dep.spec as { replicas: number }).replicas = 5;
        double.put(dep);
      }
      return true;
    },
  });
  late.double = f.double;
  try {
    seed(f.double);
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: NS });
    const progress: string[] = [];
    const r = await injectAgent(t, NS, "echo", { onProgress: (m) => progress.push(m) });
    assert.equal(r.action, "injected");
    assert.ok(meddled);
    assert.ok(progress.some((m) => /changed while tp patched them/.test(m)), progress.join("\n"));
    const dep = f.double.get("deployments", NS, "echo")!;
    assert.equal((dep.spec as { replicas: number }).replicas, 5, "the other change is kept");
    const failed = f.double.requests.filter((q) => q.method === "PATCH" && q.status === 422);
    assert.equal(failed.length, 1, "tp's first patch failed its resourceVersion test");
  } finally {
    await f.close();
  }
});

Deno.test("removeAllAgents() restores every injected workload and cleans what tp left without a workload", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    f.double.put(app("StatefulSet", "db"));
    f.double.put(service("db", "db"));
    f.double.put(app("Deployment", "gone"));
    f.double.put(service("gone", "gone"));
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: NS });
    const originals = ["echo", "echo-direct", "db", "gone"].map((n) => userView(f.double.get("services", NS, n)));
    const dep = userView(f.double.get("deployments", NS, "echo"));
    const sts = userView(f.double.get("statefulsets", NS, "db"));
    await injectAgent(t, NS, "echo");
    assert.equal((await injectAgent(t, NS, "sts/db")).kind, "StatefulSet");
    await injectAgent(t, NS, "gone");
    f.double.remove("deployments", NS, "gone"); // deleted with the agent still in it: its Service and Secret remain

    const out = await removeAllAgents(t, NS);
    assert.deepEqual(out.map((r) => `${r.kind}/${r.name}:${r.action}`), [
      "Deployment/echo:removed",
      "StatefulSet/db:removed",
    ]);
    assert.deepEqual(
      ["echo", "echo-direct", "db", "gone"].map((n) => userView(f.double.get("services", NS, n))),
      originals,
    );
    assert.deepEqual(userView(f.double.get("deployments", NS, "echo")), dep);
    assert.deepEqual(userView(f.double.get("statefulsets", NS, "db")), sts);
    assert.deepEqual(f.double.list("secrets", NS), []);
  } finally {
    await f.close();
  }
});

Deno.test("planAgent() + injectionYaml() is a dry run: nothing is written", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: NS });
    const yaml = injectionYaml(await planAgent(t, NS, "echo"));
    assert.match(yaml, /kind: Secret/);
    assert.match(yaml, /path: \/spec\/template\/spec\/containers\/-/);
    assert.deepEqual(f.double.requests.filter((q) => q.method !== "GET"), []);
  } finally {
    await f.close();
  }
});

Deno.test("findWorkload() and injectAgent() say what is wrong: no such workload, another kind, a foreign Secret", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: NS });
    await assert.rejects(
      findWorkload(t, NS, "nope"),
      (e) =>
        e instanceof K8sError &&
        /no deployment, statefulset or replicaset named "nope" in namespace "default"/.test(e.message),
    );
    await assert.rejects(findWorkload(t, NS, "cronjob/x"), /tp intercepts deployments, statefulsets and replicasets/);
    await assert.rejects(findWorkload(t, NS, "sts/echo"), /no statefulset\/echo in namespace "default"/);
    f.double.put({ apiVersion: "v1", kind: "Secret", metadata: { name: "tp-agent-echo", namespace: NS }, data: {} });
    await assert.rejects(injectAgent(t, NS, "echo"), /secret\/tp-agent-echo .* exists and is not tp's/);
  } finally {
    await f.close();
  }
});

/** Runs `tp ARGS` (scripts/tp) with no daemon to ask: a state directory that does not exist. */
async function tpCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(`${ROOT}/scripts/tp`, {
    args,
    env: { TP_STATE_DIR: `/nonexistent/tp-test-${Deno.pid}`, NO_COLOR: "1", TP_CONFIG: "/nonexistent" },
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("tp uninstall --agent WORKLOAD restores the workload and its Services, and says what it put back", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    const kubeconfig = f.kubeconfig();
    const t = loadKube({ kubeconfig, namespace: NS });
    const before = ["echo", "echo-direct"].map((n) => userView(f.double.get("services", NS, n)));
    const dep = userView(f.double.get("deployments", NS, "echo"));
    await injectAgent(t, NS, "echo");
    const r = await tpCli(["uninstall", "--agent", "echo", "--kubeconfig", kubeconfig, "-n", NS]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^restored service\/echo$/m);
    assert.match(r.stdout, /^restored deployment\/echo: removed container tp-agent$/m);
    assert.match(r.stdout, /^deleted secret\/tp-agent-echo$/m);
    assert.match(r.stdout, /^deployment\/echo: tp's traffic-agent removed$/m);
    assert.deepEqual(["echo", "echo-direct"].map((n) => userView(f.double.get("services", NS, n))), before);
    assert.deepEqual(userView(f.double.get("deployments", NS, "echo")), dep);
    assert.ok(f.double.get("deployments", "tp", "tp-manager"), "the manager is not touched");

    const again = await tpCli(["uninstall", "--agent", "echo", "--kubeconfig", kubeconfig, "-n", NS, "-o", "json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout).agents, [
      { kind: "Deployment", name: "echo", namespace: NS, action: "absent", services: [] },
    ]);
    const none = await tpCli(["uninstall", "--agent", "nope", "--kubeconfig", kubeconfig, "-n", NS]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no deployment, statefulset or replicaset named "nope" in namespace "default"/);
  } finally {
    await f.close();
  }
});

Deno.test("tp uninstall --all-agents restores every workload of the namespace, -o json listing them", async () => {
  const f = await fixture();
  try {
    seed(f.double);
    f.double.put(app("StatefulSet", "db"));
    f.double.put(service("db", "db"));
    const kubeconfig = f.kubeconfig();
    const t = loadKube({ kubeconfig, namespace: NS });
    await injectAgent(t, NS, "echo");
    await injectAgent(t, NS, "sts/db");
    const r = await tpCli(["uninstall", "--all-agents", "--kubeconfig", kubeconfig, "-n", NS, "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.namespace, NS);
    assert.deepEqual(
      out.agents.map((a: { kind: string; name: string; action: string }) => `${a.kind}/${a.name}:${a.action}`),
      [
        "Deployment/echo:removed",
        "StatefulSet/db:removed",
      ],
    );
    assert.deepEqual(f.double.list("secrets", NS), []);
    const both = await tpCli(["uninstall", "--all-agents", "--agent", "echo", "--kubeconfig", kubeconfig]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /not both/);
  } finally {
    await f.close();
  }
});
