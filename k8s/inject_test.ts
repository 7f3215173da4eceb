import assert from "node:assert/strict";
import type { V1Deployment, V1Service } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { K8sError } from "./errors.ts";
import {
  agentManagerUrl,
  agentRecord,
  hasAgent,
  type InjectionPlan,
  injectionYaml,
  ORIGINAL_TARGET_PORTS_ANNOTATION,
  planInjection,
  planRemoval,
  serviceRecord,
} from "./inject.ts";
import { applyJsonPatch } from "./json_patch.ts";

// Shapes as `kubectl get deployment,service -o json` prints them (status and managedFields trimmed).
function deployment(): V1Deployment {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: "echo",
      namespace: "default",
      uid: "5b0e7a7c-3a43-4b1e-9d55-1c7e2f1c0a11",
      resourceVersion: "48213",
      generation: 3,
      labels: { app: "echo" },
      annotations: { "deployment.kubernetes.io/revision": "3", "team": "payments" },
    },
    spec: {
      replicas: 1,
      revisionHistoryLimit: 10,
      selector: { matchLabels: { app: "echo" } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: "25%", maxUnavailable: "25%" } },
      template: {
        metadata: { labels: { app: "echo", tier: "web" } },
        spec: {
          containers: [
            {
              name: "echo",
              image: "registry.test/echo:1.4",
              imagePullPolicy: "IfNotPresent",
              ports: [
                { name: "http", containerPort: 8080, protocol: "TCP" },
                { name: "tcp-echo", containerPort: 7007, protocol: "TCP" },
                { name: "udp-echo", containerPort: 7007, protocol: "UDP" },
              ],
              env: [
                { name: "APP_MODE", value: "cluster" },
                { name: "APP_SECRET", valueFrom: { secretKeyRef: { name: "echo-secret", key: "password" } } },
                { name: "APP_MEM", valueFrom: { resourceFieldRef: { resource: "limits.memory", divisor: "1Mi" } } },
                { name: "APP_URL", value: "http://$(APP_MODE).example" },
              ],
              envFrom: [{ configMapRef: { name: "echo-config" } }, { prefix: "DB_", secretRef: { name: "db" } }],
              volumeMounts: [
                { name: "config", mountPath: "/etc/echo", readOnly: true },
                { name: "data", mountPath: "/var/lib/echo" },
                { name: "shared", mountPath: "/shared", mountPropagation: "HostToContainer" },
              ],
              securityContext: { runAsUser: 1000, runAsGroup: 3000 },
              resources: { limits: { memory: "128Mi" } },
              terminationMessagePath: "/dev/termination-log",
              terminationMessagePolicy: "File",
            },
            {
              name: "metrics",
              image: "registry.test/exporter:2",
              ports: [{ name: "metrics", containerPort: 9900, protocol: "TCP" }],
            },
          ],
          volumes: [
            { name: "config", configMap: { name: "echo-config", defaultMode: 420 } },
            { name: "data", emptyDir: {} },
            { name: "shared", emptyDir: {} },
          ],
          restartPolicy: "Always",
          dnsPolicy: "ClusterFirst",
          terminationGracePeriodSeconds: 30,
        },
      },
    },
  };
}

function services(): V1Service[] {
  return [
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "echo", namespace: "default", resourceVersion: "48100", labels: { app: "echo" } },
      spec: {
        type: "ClusterIP",
        clusterIP: "10.96.0.10",
        clusterIPs: ["10.96.0.10"],
        selector: { app: "echo" },
        ports: [
          { name: "http", port: 80, protocol: "TCP", targetPort: "http" },
          { name: "tcp-echo", port: 7007, protocol: "TCP", targetPort: 7007 },
          { name: "udp-echo", port: 7007, protocol: "UDP", targetPort: 7007 },
          { name: "metrics", port: 9900, protocol: "TCP", targetPort: "metrics" },
        ],
        sessionAffinity: "None",
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: "echo-internal",
        namespace: "default",
        resourceVersion: "48101",
        annotations: { "prometheus.io/scrape": "false" },
      },
      spec: { selector: { tier: "web" }, ports: [{ port: 8080, protocol: "TCP", targetPort: 8080 }] },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "other", namespace: "default", resourceVersion: "48102" },
      spec: { selector: { app: "other" }, ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }] },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kubernetes", namespace: "default", resourceVersion: "17" },
      spec: { ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: 6443 }] },
    },
  ];
}

const MANAGER_URL = agentManagerUrl("tp");

function plan(o: { dep?: V1Deployment; svcs?: V1Service[]; container?: string } = {}): InjectionPlan {
  return planInjection({
    kind: "Deployment",
    workload: o.dep ?? deployment(),
    services: o.svcs ?? services(),
    image: "ghcr.io/owner/tp:0.1.0",
    managerUrl: MANAGER_URL,
    token: "s3cret-token",
    container: o.container,
  });
}

/** The objects after a plan's patches, as the API server would store them. */
function applied(p: InjectionPlan, dep = deployment(), svcs = services()) {
  const d = applyJsonPatch(dep, p.workloadPatch.ops);
  const s = svcs.map((svc) => {
    const sp = p.servicePatches.find((x) => x.name === svc.metadata!.name);
    return sp ? applyJsonPatch(svc, sp.ops) : svc;
  });
  return { dep: d, svcs: s };
}

Deno.test("agentManagerUrl() is the manager Service's agent port in its namespace", () => {
  assert.equal(MANAGER_URL, "http://tp-manager.tp:8082");
});

Deno.test("planInjection() adds a tp-agent container that sees the app's env, envFrom and mounts", () => {
  const p = plan();
  assert.equal(p.appContainer, "echo");
  const c = p.container;
  assert.equal(c.name, "tp-agent");
  assert.equal(c.image, "ghcr.io/owner/tp:0.1.0");
  assert.deepEqual(c.args, ["agent"]);
  const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? e.valueFrom]));
  assert.equal(env.APP_MODE, "cluster");
  assert.deepEqual(env.APP_SECRET, { secretKeyRef: { name: "echo-secret", key: "password" } });
  assert.deepEqual(
    env.APP_MEM,
    { resourceFieldRef: { resource: "limits.memory", divisor: "1Mi", containerName: "echo" } },
    "a resourceFieldRef keeps meaning the app container's resources",
  );
  assert.equal(env.TP_AGENT_MANAGER_URL, "http://tp-manager.tp:8082");
  assert.deepEqual(env.TP_AGENT_TOKEN, { secretKeyRef: { name: "tp-agent-echo", key: "token" } });
  assert.deepEqual(env.TP_AGENT_NAMESPACE, { fieldRef: { fieldPath: "metadata.namespace" } });
  assert.deepEqual(env.TP_AGENT_POD_NAME, { fieldRef: { fieldPath: "metadata.name" } });
  assert.deepEqual(env.TP_AGENT_POD_IP, { fieldRef: { fieldPath: "status.podIP" } });
  assert.equal(env.TP_AGENT_WORKLOAD, "echo");
  assert.equal(env.TP_AGENT_FORWARD, "9901:8080,9902:7007");
  assert.equal(env.TP_AGENT_MOUNTS, "/etc/echo,/var/lib/echo,/shared");
  assert.deepEqual(
    c.env!.slice(0, 4).map((e) => e.name),
    ["APP_MODE", "APP_SECRET", "APP_MEM", "APP_URL"],
    "the app's env first, in its order, so $(VAR) references still resolve",
  );
  assert.deepEqual(c.envFrom, deployment().spec!.template.spec!.containers[0]!.envFrom);
  assert.deepEqual(c.volumeMounts, [
    { name: "config", mountPath: "/etc/echo", readOnly: true },
    { name: "data", mountPath: "/var/lib/echo" },
    { name: "shared", mountPath: "/shared" },
  ]);
  assert.deepEqual(c.securityContext, {
    runAsUser: 1000,
    runAsGroup: 3000,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
  });
  assert.ok(c.resources?.requests?.cpu && c.resources.limits?.memory);
  assert.deepEqual(c.ports, [{ name: "tp-agent-0", containerPort: 9901 }, { name: "tp-agent-1", containerPort: 9902 }]);
});

Deno.test("planInjection() re-points the Service ports that reach the app, by name or number, TCP only", () => {
  const p = plan();
  assert.deepEqual(p.forward, [{ agentPort: 9901, appPort: 8080 }, { agentPort: 9902, appPort: 7007 }]);
  assert.deepEqual(p.servicePatches.map((s) => s.name), ["echo", "echo-internal"]);
  const { svcs } = applied(p);
  assert.deepEqual(svcs[0]!.spec!.ports!.map((x) => x.targetPort), [9901, 9902, 7007, "metrics"]);
  assert.deepEqual(svcs[1]!.spec!.ports!.map((x) => x.targetPort), [9901]);
  assert.deepEqual(svcs[2], services()[2], "a Service selecting other pods is untouched");
  assert.deepEqual(serviceRecord(svcs[0]!), {
    workload: "deployment/echo",
    ports: [
      { port: 80, protocol: "TCP", targetPort: "http", agentPort: 9901 },
      { port: 7007, protocol: "TCP", targetPort: 7007, agentPort: 9902 },
    ],
  });
  assert.equal(svcs[1]!.metadata!.annotations!["prometheus.io/scrape"], "false");
});

Deno.test("planInjection() adds the container and a record of what it changed to the workload only", () => {
  const p = plan();
  const { dep } = applied(p);
  const before = deployment();
  const containers = dep.spec!.template.spec!.containers;
  assert.deepEqual(containers.slice(0, 2), before.spec!.template.spec!.containers);
  assert.deepEqual(containers[2], p.container);
  assert.deepEqual(dep.spec!.template.spec!.volumes, before.spec!.template.spec!.volumes);
  assert.equal(dep.metadata!.annotations!.team, "payments");
  assert.deepEqual(agentRecord(dep), {
    version: 1,
    container: "tp-agent",
    appContainer: "echo",
    secret: "tp-agent-echo",
    services: ["echo", "echo-internal"],
    forward: p.forward,
  });
  assert.ok(hasAgent(dep));
  assert.ok(!hasAgent(before));
});

Deno.test("planInjection() makes a Secret labelled as tp's and owned by the workload", () => {
  const s = plan().secret;
  assert.equal(s.metadata!.name, "tp-agent-echo");
  assert.equal(s.metadata!.namespace, "default");
  assert.equal(s.metadata!.labels!["app.kubernetes.io/managed-by"], "tp");
  assert.equal(atob(s.data!.token!), "s3cret-token");
  assert.deepEqual(s.metadata!.ownerReferences, [
    { apiVersion: "apps/v1", kind: "Deployment", name: "echo", uid: "5b0e7a7c-3a43-4b1e-9d55-1c7e2f1c0a11" },
  ]);
});

Deno.test("planRemoval() after planInjection() restores the workload and Services exactly", () => {
  const p = plan();
  const { dep, svcs } = applied(p);
  const r = planRemoval("Deployment", dep, svcs);
  assert.equal(r.secret, "tp-agent-echo");
  assert.deepEqual(applyJsonPatch(dep, r.workloadPatch!.ops), deployment());
  const restored = svcs.map((svc) => {
    const sp = r.servicePatches.find((x) => x.name === svc.metadata!.name);
    return sp ? applyJsonPatch(svc, sp.ops) : svc;
  });
  assert.deepEqual(restored, services());
});

Deno.test("planRemoval() restores objects that had no annotations to having none, and absent targetPorts", () => {
  const dep = deployment();
  delete dep.metadata!.annotations;
  const svc: V1Service = {
    metadata: { name: "bare", namespace: "default" },
    spec: { selector: { app: "echo" }, ports: [{ port: 8080 }] },
  };
  const p = plan({ dep, svcs: [svc] });
  const after = applied(p, dep, [svc]);
  assert.equal(after.svcs[0]!.spec!.ports![0]!.targetPort, 9901);
  const r = planRemoval("Deployment", after.dep, after.svcs);
  assert.deepEqual(applyJsonPatch(after.dep, r.workloadPatch!.ops), dep);
  assert.deepEqual(applyJsonPatch(after.svcs[0]!, r.servicePatches[0]!.ops), svc);
});

Deno.test("planRemoval() keeps a targetPort someone changed after injection, and drops tp's annotation", () => {
  const p = plan();
  const { svcs } = applied(p);
  svcs[0]!.spec!.ports![0]!.targetPort = 8081;
  const r = planRemoval("Deployment", applied(p).dep, svcs);
  const echo = applyJsonPatch(svcs[0]!, r.servicePatches[0]!.ops);
  assert.deepEqual(echo.spec!.ports!.map((x) => x.targetPort), [8081, 7007, 7007, "metrics"]);
  assert.equal(echo.metadata!.annotations?.[ORIGINAL_TARGET_PORTS_ANNOTATION], undefined);
});

Deno.test("planRemoval() of a workload without the agent changes nothing", () => {
  const r = planRemoval("Deployment", deployment(), services());
  assert.equal(r.workloadPatch, undefined);
  assert.deepEqual(r.servicePatches, []);
});

Deno.test("planInjection() picks the app container the Services target, or the one named", () => {
  const dep = deployment();
  const cs = dep.spec!.template.spec!.containers;
  dep.spec!.template.spec!.containers = [cs[1]!, cs[0]!];
  assert.equal(plan({ dep }).appContainer, "echo", "the container a Service targets, not the first");
  const m = plan({ container: "metrics" });
  assert.equal(m.appContainer, "metrics");
  assert.deepEqual(m.forward, [{ agentPort: 9901, appPort: 9900 }]);
  assert.throws(() => plan({ container: "nope" }), /has no container "nope"/);
});

Deno.test("planInjection() refuses a workload with the agent, an owned ReplicaSet, and a Service another workload holds", () => {
  const { dep } = applied(plan());
  assert.throws(
    () => plan({ dep }),
    (e) => e instanceof K8sError && e.kind === "agent" && /already has/.test(e.message),
  );
  const rs = deployment();
  rs.metadata!.ownerReferences = [{
    apiVersion: "apps/v1",
    kind: "Deployment",
    name: "echo",
    uid: "u",
    controller: true,
  }];
  assert.throws(
    () =>
      planInjection({
        kind: "ReplicaSet",
        workload: rs,
        services: [],
        image: "i",
        managerUrl: MANAGER_URL,
        token: "t",
      }),
    /managed by deployment\/echo/,
  );
  const held = services();
  held[0]!.metadata!.annotations = {
    [ORIGINAL_TARGET_PORTS_ANNOTATION]: JSON.stringify({ workload: "deployment/echo-canary", ports: [] }),
  };
  assert.throws(() => plan({ svcs: held }), /already routes to tp's agent in deployment\/echo-canary/);
});

Deno.test("a Service changed between reading and patching makes the patch fail, not overwrite", () => {
  const p = plan();
  const changed = services();
  changed[0]!.spec!.ports![0]!.targetPort = 8081;
  assert.throws(() => applyJsonPatch(changed[0]!, p.servicePatches[0]!.ops), /test failed/);
});

Deno.test("injectionYaml() prints the Secret without its token and each object's JSON patch", () => {
  const text = injectionYaml(plan());
  assert.ok(!text.includes("s3cret-token") && !text.includes(btoa("s3cret-token")), "no token in a dry run");
  const docs = parseAllDocuments(text).map((d) => d.toJS());
  assert.deepEqual(docs.map((d) => `${d.kind}/${d.metadata.name}`), [
    "Secret/tp-agent-echo",
    "Deployment/echo",
    "Service/echo",
    "Service/echo-internal",
  ]);
  assert.equal(docs[1].patchType, "application/json-patch+json");
  assert.equal(docs[1].patch[0].value.name, "tp-agent");
  assert.match(text, /# kubectl patch deployment\/echo -n default --type json/);
  assert.equal(JSON.parse(docs[1].patch[1].value).appContainer, "echo", "the record is the annotation's JSON text");
});
