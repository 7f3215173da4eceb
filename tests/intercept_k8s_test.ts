/**
 * `tp intercept` through Kubernetes, end to end on the lab: `tp connect` through the API server double's port-forward
 * (a process in the cluster namespace), a Deployment `web` and its Service created with kubectl, a kubelet double
 * running the Deployment's pod as a lab pod (tests/k8s_kubelet_double.ts), and the lab's traffic-manager with its agent
 * port, admitting agents by the Secret tp creates (it reads it from the double). `tp intercept` injects the agent as
 * the user's kubeconfig allows, the pod restarts with it, and the cluster's connections reach the workstation; `tp
 * uninstall --agent` restores the objects. No kube-proxy runs here: clients in the cluster namespace send what the
 * Service would carry to the pod IP and the Service's targetPort, both read back from the double, as kube-proxy does.
 */
import assert from "node:assert/strict";
import { ensureLab, LAB, requireRoot, requireTools } from "./lab.ts";
import {
  type ClusterProcess,
  forceQuit,
  inNs,
  type LabManager,
  startLabManager,
  startLocalApp,
  STATE_DIR,
  tp,
} from "./connect_fixture.ts";
import { waitFor, whoAnswers as podWhoAnswers } from "./lab_pod.ts";
import { type Double, startDouble } from "./k8s_lab_double.ts";
import { removeKubeletPods } from "./k8s_kubelet_double.ts";

const AGENT_LISTEN = `${LAB.manager.ip}:8082`; // where http://tp-manager.tp:8082 leads, as the manager's Service would
const LOCAL_HTTP = 18080;

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

/** The API server double with its kubelet: the manager's Service names lead to the lab's manager address. */
function startDoubleWithKubelet(): Promise<Double> {
  const names = `tp-manager.tp tp-manager.tp.svc tp-manager.tp.svc.${LAB.clusterDomain}`;
  return startDouble({ kubeletHosts: [`${LAB.manager.ip} ${names}`] });
}

/** kubectl against the double, from the cluster namespace. */
async function kubectl(d: Double, args: string[], stdin?: string) {
  return await inNs("cluster", ["kubectl", "--kubeconfig", d.kubeconfig, "-n", "default", ...args], {
    ...(stdin === undefined ? {} : { stdin }),
  });
}

async function getJson(d: Double, what: string[]): Promise<Obj> {
  const r = await kubectl(d, ["get", ...what, "-o", "json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** An object without the fields the API server manages, as `kubectl diff` compares them. */
function userView(o: Obj): unknown {
  const c = structuredClone(o);
  for (const k of ["resourceVersion", "generation", "uid", "creationTimestamp", "managedFields"]) delete c.metadata[k];
  delete c.status;
  return c;
}

const DEPLOYMENT = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web", labels: { app: "web" } },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: "web" } },
    template: {
      metadata: { labels: { app: "web" } },
      spec: {
        containers: [{
          name: "app",
          image: "registry.test/web:1",
          ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
          env: [{ name: "APP_GREETING", value: "hello from the pod" }],
        }],
      },
    },
  },
};

const SERVICE = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", labels: { app: "web" } },
  spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: "http" }] },
};

interface RunningPod {
  name: string;
  ip: string;
  containers: string[];
}

/** Waits until web's one pod is a new one (not `old`), Running with an IP the kubelet reported. */
async function runningPod(d: Double, old?: string): Promise<RunningPod> {
  let seen = "";
  for (let i = 0; i < 120; i++) {
    const list = await getJson(d, ["pods", "-l", "app=web"]) as unknown as { items: Obj[] };
    const pods = list.items.filter((p) => p.metadata.name !== old);
    const p = pods[0];
    const st = p?.status as { phase?: string; podIP?: string } | undefined;
    seen = JSON.stringify(list.items.map((x) => [x.metadata.name, (x.status as { phase?: string }).phase]));
    if (pods.length === 1 && list.items.length === 1 && st?.phase === "Running" && st.podIP) {
      const containers = (p!.spec as { containers: { name: string }[] }).containers.map((c) => c.name);
      return { name: String(p!.metadata.name), ip: st.podIP, containers };
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`web's pod did not run within 30 s (pods: ${seen}):\n${d.log()}`);
}

/** kube-proxy's part: the Service's port 80, as the pod IP and the (resolved) targetPort the Service names now. */
async function serviceEndpoint(d: Double, pod: RunningPod): Promise<string> {
  const svc = await getJson(d, ["service", "web"]);
  const target = (svc.spec as { ports: { port: number; targetPort: number | string }[] }).ports[0]!.targetPort;
  if (typeof target === "number") return `${pod.ip}:${target}`;
  const p = await getJson(d, ["pod", pod.name]);
  const containers = (p.spec as { containers: { ports?: { name?: string; containerPort: number }[] }[] }).containers;
  const port = containers.flatMap((c) => c.ports ?? []).find((x) => x.name === target);
  assert.ok(port, `no container port named ${target}`);
  return `${pod.ip}:${port.containerPort}`;
}

/** GET / from the cluster namespace to "IP:PORT": which app answered ("web" in the pod, "laptop" on the workstation). */
function whoAnswers(endpoint: string): Promise<string> {
  const [ip, port] = endpoint.split(":");
  return podWhoAnswers(ip!, Number(port));
}

Deno.test({
  name:
    "tp intercept through Kubernetes injects the agent, the pod restarts with it, and tp uninstall --agent restores",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  requireRoot();
  requireTools("curl", "kubectl", "nsenter", "openssl");
  await ensureLab();
  await forceQuit();
  let double: Double | undefined;
  let manager: LabManager | undefined;
  let local: ClusterProcess | undefined;
  try {
    double = await startDoubleWithKubelet();
    const d = double;
    manager = await startLabManager(["--agent-listen", AGENT_LISTEN], { kubeconfig: d.kubeconfig });
    for (const o of [DEPLOYMENT, SERVICE]) {
      const r = await kubectl(d, ["create", "--validate=false", "-f", "-"], JSON.stringify(o));
      assert.equal(r.code, 0, r.stderr);
    }
    let pod = await runningPod(d);
    assert.deepEqual(pod.containers, ["app"]);
    const before = { dep: await getJson(d, ["deployment", "web"]), svc: await getJson(d, ["service", "web"]) };
    local = startLocalApp(LOCAL_HTTP, 17007);
    const c = await tp(["connect", "--kubeconfig", d.kubeconfig, "--context", "lab", "-n", "default"]);
    assert.equal(c.code, 0, c.stderr);

    await t.step("without an agent the pod's app serves the Service's port", async () => {
      const ep = await serviceEndpoint(d, pod);
      assert.equal(ep, `${pod.ip}:8080`);
      assert.equal(await whoAnswers(ep), "web");
    });

    await t.step("tp intercept --dry-run -o yaml prints the injection and changes nothing", async () => {
      const r = await tp(["intercept", "web", "--dry-run", "-o", "yaml"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^kind: Secret$/m);
      assert.match(r.stdout, /^ {2}name: tp-agent-web$/m);
      assert.match(r.stdout, /path: \/spec\/template\/spec\/containers\/-/);
      assert.match(r.stdout, /kubectl patch service\/web -n default --type json/);
      assert.doesNotMatch(r.stdout, /token:/, "no credential in a dry run");
      const dep = await getJson(d, ["deployment", "web"]), svc = await getJson(d, ["service", "web"]);
      assert.equal(dep.metadata.resourceVersion, before.dep.metadata.resourceVersion);
      assert.equal(svc.metadata.resourceVersion, before.svc.metadata.resourceVersion);
      assert.notEqual((await kubectl(d, ["get", "secret", "tp-agent-web"])).code, 0, "no Secret");
    });

    await t.step("tp intercept of a workload that does not exist says so", async () => {
      const r = await tp(["intercept", "nosuch", "--port", "18081", "--mount=false"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no deployment, statefulset or replicaset named "nosuch" in namespace "default"/);
    });

    await t.step("tp intercept injects the agent, waits for the pod to restart with it, and intercepts", async () => {
      const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:8080`, "--mount=false"]);
      assert.equal(r.code, 0, `${r.stderr}\n${d.log()}`);
      assert.match(r.stderr, /tp: injecting tp's traffic-agent into deployment\/web/);
      assert.match(r.stderr, /tp: created secret\/tp-agent-web/);
      assert.match(r.stderr, /tp: waiting for web's pods to restart with the agent \(\d+ s\)/);
      assert.match(r.stderr, /tp: intercepting web port 8080/);
      const old = pod.name;
      pod = await runningPod(d, old);
      assert.deepEqual(pod.containers, ["app", "tp-agent"]);
      assert.match(r.stderr, new RegExp(`pod ${pod.name}, ${pod.ip.replaceAll(".", "\\.")}`));
      const secret = await getJson(d, ["secret", "tp-agent-web"]);
      assert.ok((secret.data as { token?: string }).token);
      const ep = await serviceEndpoint(d, pod);
      assert.equal(ep, `${pod.ip}:9900`, "the Service's targetPort is the agent's port");
      await waitFor("the intercept", async () => await whoAnswers(ep) === "laptop");
      const l = JSON.parse((await tp(["list", "-o", "json"])).stdout);
      assert.deepEqual(l.workloads.map((w: { workload: string; pods: string[] }) => [w.workload, w.pods]), [[
        "web",
        [pod.name],
      ]]);
    });

    await t.step("tp leave: the app serves the Service's port again, through the agent", async () => {
      const l = await tp(["leave", "web"]);
      assert.equal(l.code, 0, l.stderr);
      assert.equal(await whoAnswers(await serviceEndpoint(d, pod)), "web");
    });

    await t.step("tp intercept again finds the agent and injects nothing", async () => {
      const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:8080`, "--mount=false"]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /injecting/);
      assert.equal(await whoAnswers(await serviceEndpoint(d, pod)), "laptop");
      assert.equal((await tp(["leave", "web"])).code, 0);
    });

    await t.step("tp uninstall --agent web restores the Deployment and the Service as they were", async () => {
      const r = await tp(["uninstall", "--agent", "web"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /in the connected context "lab", namespace default/);
      assert.match(r.stdout, /^restored service\/web$/m);
      assert.match(r.stdout, /^deployment\/web: tp's traffic-agent removed$/m);
      assert.deepEqual(userView(await getJson(d, ["deployment", "web"])), userView(before.dep));
      assert.deepEqual(userView(await getJson(d, ["service", "web"])), userView(before.svc));
      assert.notEqual((await kubectl(d, ["get", "secret", "tp-agent-web"])).code, 0, "the Secret is gone");
      pod = await runningPod(d, pod.name);
      assert.deepEqual(pod.containers, ["app"]);
      const ep = await serviceEndpoint(d, pod);
      assert.equal(ep, `${pod.ip}:8080`);
      assert.equal(await whoAnswers(ep), "web");
    });

    assert.equal((await tp(["quit"])).code, 0);
  } finally {
    await forceQuit();
    await local?.stop();
    await double?.stop();
    await manager?.stop();
    await removeKubeletPods();
    await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
  }
});
