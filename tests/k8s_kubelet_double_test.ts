/**
 * The kubelet double's parts that need no lab: how it resolves a container's env, and what the API server double
 * tells it. Running pods is tested end to end in tests/intercept_k8s_test.ts.
 */
import assert from "node:assert/strict";
import { resolveEnv } from "./k8s_kubelet_double.ts";
import { fixture } from "./k8s_fixture.ts";
import { injectAgent } from "../k8s/agent_install.ts";
import { loadKube } from "../k8s/kubeconfig.ts";

const ctx = {
  namespace: "default",
  podName: "web-abc",
  podIp: "198.19.128.110",
  nodeName: "node-1",
  secret: (name: string, key: string) => name === "tp-agent-web" && key === "token" ? "s3cret" : undefined,
};

Deno.test("resolveEnv() gives plain values, the downward API's fields and Secret keys, as a kubelet does", () => {
  const env = resolveEnv({
    name: "tp-agent",
    env: [
      { name: "APP_GREETING", value: "hello" },
      { name: "EMPTY" },
      { name: "TP_AGENT_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "TP_AGENT_POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "TP_AGENT_POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
      { name: "TP_AGENT_TOKEN", valueFrom: { secretKeyRef: { name: "tp-agent-web", key: "token" } } },
      { name: "MAYBE", valueFrom: { secretKeyRef: { name: "nope", key: "k", optional: true } } },
    ],
  }, ctx);
  assert.deepEqual(env, {
    APP_GREETING: "hello",
    EMPTY: "",
    TP_AGENT_NAMESPACE: "default",
    TP_AGENT_POD_NAME: "web-abc",
    TP_AGENT_POD_IP: "198.19.128.110",
    TP_AGENT_TOKEN: "s3cret",
  });
});

Deno.test("resolveEnv() refuses what it cannot resolve, by name: a missing Secret key, a configMapKeyRef", () => {
  assert.throws(
    () => resolveEnv({ name: "app", env: [{ name: "X", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }] }, ctx),
    /couldn't find key k in Secret default\/s/,
  );
  assert.throws(
    () =>
      resolveEnv({ name: "app", env: [{ name: "X", valueFrom: { configMapKeyRef: { name: "c", key: "k" } } }] }, ctx),
    /env X: configMapKeyRef is not served/,
  );
});

Deno.test("with a kubelet attached, the double's Deployment pods start Pending, and the kubelet hears each pod event", async () => {
  const f = await fixture();
  const events: string[] = [];
  f.double.attachKubelet({
    podEvent: (type, pod) => {
      if (pod.metadata.namespace === "default") events.push(`${type} ${(pod.status as { phase: string }).phase}`);
    },
  });
  try {
    f.double.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } });
    const t = loadKube({ kubeconfig: f.kubeconfig(), namespace: "default" });
    await t.kc.makeApiClient((await import("@kubernetes/client-node")).AppsV1Api).createNamespacedDeployment({
      namespace: "default",
      body: {
        metadata: { name: "web" },
        spec: {
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: { containers: [{ name: "app", image: "x", ports: [{ name: "http", containerPort: 8080 }] }] },
          },
        },
      },
    });
    const [pod] = f.double.list("pods", "default");
    assert.equal((pod!.status as { podIP?: string }).podIP, undefined, "no IP before a kubelet reports one");
    await injectAgent(t, "default", "web");
    assert.deepEqual(events, ["ADDED Pending", "DELETED Pending", "ADDED Pending"]);
    const [next] = f.double.list("pods", "default");
    assert.deepEqual((next!.spec as { containers: { name: string }[] }).containers.map((c) => c.name), [
      "app",
      "tp-agent",
    ]);
  } finally {
    await f.close();
  }
});
