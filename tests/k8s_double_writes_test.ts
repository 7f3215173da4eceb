/**
 * The API server double's writes (PATCH, PUT, secrets) checked against the real client, kubectl (which must be on
 * PATH: these tests fail naming it), as tests/k8s_install_test.ts checks its reads.
 */
import assert from "node:assert/strict";
import { exec, requireTools } from "./lab.ts";
import { fixture } from "./k8s_fixture.ts";

function kubectl(kubeconfig: string, args: string[], stdin?: string) {
  requireTools("kubectl");
  return exec(["kubectl", "--kubeconfig", kubeconfig, "-n", "default", ...args], {
    timeoutMs: 30_000,
    ...(stdin === undefined ? {} : { stdin }),
  });
}

const DEPLOYMENT = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "echo", namespace: "default", labels: { app: "echo" } },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: "echo" } },
    template: {
      metadata: { labels: { app: "echo" } },
      spec: { containers: [{ name: "echo", image: "registry.test/echo:1", ports: [{ containerPort: 8080 }] }] },
    },
  },
};

const SERVICE = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "echo", namespace: "default" },
  spec: { selector: { app: "echo" }, ports: [{ name: "http", port: 80, targetPort: 8080 }] },
};

async function getJson(kc: string, what: string) {
  const r = await kubectl(kc, ["get", what, "-o", "json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test("kubectl patch --type merge changes a Deployment and bumps generation and resourceVersion", async () => {
  const f = await fixture();
  try {
    const kc = f.kubeconfig();
    const c = await kubectl(kc, ["create", "--validate=false", "-f", "-"], JSON.stringify(DEPLOYMENT));
    assert.equal(c.code, 0, c.stderr);
    const before = await getJson(kc, "deployment/echo");
    assert.equal(before.metadata.generation, 1);
    const r = await kubectl(kc, ["patch", "deployment", "echo", "--type", "merge", "-p", '{"spec":{"replicas":3}}']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deployment\.apps\/echo patched/);
    const after = await getJson(kc, "deployment/echo");
    assert.equal(after.spec.replicas, 3);
    assert.equal(after.metadata.generation, 2);
    assert.ok(Number(after.metadata.resourceVersion) > Number(before.metadata.resourceVersion));
    assert.equal(after.metadata.uid, before.metadata.uid, "server-set fields survive");
    assert.equal(after.metadata.creationTimestamp, before.metadata.creationTimestamp);

    const label = await kubectl(kc, [
      "patch",
      "deployment",
      "echo",
      "--type",
      "merge",
      "-p",
      '{"metadata":{"labels":{"x":"1"}}}',
    ]);
    assert.equal(label.code, 0, label.stderr);
    const labelled = await getJson(kc, "deployment/echo");
    assert.equal(labelled.metadata.generation, 2, "a metadata change leaves generation alone");
    assert.deepEqual(labelled.metadata.labels, { app: "echo", x: "1" });

    const same = await kubectl(kc, ["patch", "deployment", "echo", "--type", "merge", "-p", '{"spec":{"replicas":3}}']);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /patched \(no change\)/, "kubectl sees an unchanged resourceVersion");
    const unset = await kubectl(kc, [
      "patch",
      "deployment",
      "echo",
      "--type",
      "merge",
      "-p",
      '{"metadata":{"labels":{"x":null}}}',
    ]);
    assert.equal(unset.code, 0, unset.stderr);
    assert.deepEqual((await getJson(kc, "deployment/echo")).metadata.labels, { app: "echo" }, "null removes");
  } finally {
    await f.close();
  }
});

Deno.test("kubectl patch --type json applies RFC 6902 ops; a failing test op changes nothing and kubectl says why", async () => {
  const f = await fixture();
  try {
    const kc = f.kubeconfig();
    assert.equal((await kubectl(kc, ["create", "--validate=false", "-f", "-"], JSON.stringify(SERVICE))).code, 0);
    const before = await getJson(kc, "service/echo");
    assert.equal(before.spec.ports[0].protocol, "TCP", "the server's defaults");
    const ok = await kubectl(kc, [
      "patch",
      "service",
      "echo",
      "--type",
      "json",
      "-p",
      JSON.stringify([
        { op: "test", path: "/spec/ports/0/targetPort", value: 8080 },
        { op: "replace", path: "/spec/ports/0/targetPort", value: 9900 },
        { op: "add", path: "/metadata/annotations", value: { "tp.dev/x": "y" } },
      ]),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const after = await getJson(kc, "service/echo");
    assert.equal(after.spec.ports[0].targetPort, 9900);
    assert.deepEqual(after.metadata.annotations, { "tp.dev/x": "y" });
    assert.equal(after.spec.clusterIP, before.spec.clusterIP, "the clusterIP stays");

    const stale = await kubectl(kc, [
      "patch",
      "service",
      "echo",
      "--type",
      "json",
      "-p",
      JSON.stringify([
        { op: "remove", path: "/metadata/annotations" },
        { op: "test", path: "/spec/ports/0/targetPort", value: 8080 },
      ]),
    ]);
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, /test failed/);
    assert.deepEqual(await getJson(kc, "service/echo"), after, "all or nothing");
  } finally {
    await f.close();
  }
});

Deno.test("kubectl patch's default strategic merge gets the real 415; kubectl replace with a stale resourceVersion gets 409", async () => {
  const f = await fixture();
  try {
    const kc = f.kubeconfig();
    assert.equal((await kubectl(kc, ["create", "--validate=false", "-f", "-"], JSON.stringify(DEPLOYMENT))).code, 0);
    const smp = await kubectl(kc, ["patch", "deployment", "echo", "-p", '{"spec":{"replicas":2}}']);
    assert.notEqual(smp.code, 0);
    assert.match(smp.stderr, /unknown format - accepted media types include: application\/json-patch\+json/);

    const live = await getJson(kc, "deployment/echo");
    const edited = structuredClone(live);
    edited.spec.replicas = 4;
    const put = await kubectl(kc, ["replace", "--validate=false", "-f", "-"], JSON.stringify(edited));
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, /deployment\.apps\/echo replaced/);
    const now = await getJson(kc, "deployment/echo");
    assert.equal(now.spec.replicas, 4);
    assert.equal(now.metadata.generation, 2);
    const again = await kubectl(kc, ["replace", "--validate=false", "-f", "-"], JSON.stringify(edited));
    assert.notEqual(again.code, 0, "the resourceVersion it carries is stale now");
    assert.match(again.stderr, /the object has been modified; please apply your changes to the latest version/);
  } finally {
    await f.close();
  }
});

Deno.test("secrets: kubectl create secret generic, get -o json (data base64), stringData folded into data, delete", async () => {
  const f = await fixture();
  try {
    const kc = f.kubeconfig();
    // kubectl's typed `create secret` sends protobuf, which the double does not read: its JSON goes through -f.
    const typed = await kubectl(kc, ["create", "secret", "generic", "s1", "--from-literal=token=abc"]);
    assert.notEqual(typed.code, 0);
    assert.match(typed.stderr, /JSON request bodies only/);
    const made = await kubectl(kc, [
      "create",
      "secret",
      "generic",
      "s1",
      "--from-literal=token=abc",
      "--dry-run=client",
      "-o",
      "json",
    ]);
    assert.equal(made.code, 0, made.stderr);
    const c = await kubectl(kc, ["create", "--validate=false", "-f", "-"], made.stdout);
    assert.equal(c.code, 0, c.stderr);
    const s1 = await getJson(kc, "secret/s1");
    assert.equal(s1.data.token, btoa("abc"));
    const s2 = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s2", namespace: "default" },
      stringData: { token: "xyz" },
    };
    assert.equal((await kubectl(kc, ["create", "--validate=false", "-f", "-"], JSON.stringify(s2))).code, 0);
    const got = await getJson(kc, "secret/s2");
    assert.deepEqual(got.data, { token: btoa("xyz") });
    assert.equal(got.stringData, undefined);
    const d = await kubectl(kc, ["delete", "secret", "s1", "s2"]);
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(f.double.list("secrets", "default"), []);
  } finally {
    await f.close();
  }
});

Deno.test("statefulsets and replicasets are served; a Deployment's pod is replaced when its template changes", async () => {
  const f = await fixture();
  try {
    const kc = f.kubeconfig();
    for (const kind of ["StatefulSet", "ReplicaSet"]) {
      const o = { ...structuredClone(DEPLOYMENT), kind, metadata: { name: `echo-${kind.toLowerCase()}` } };
      assert.equal((await kubectl(kc, ["create", "--validate=false", "-f", "-"], JSON.stringify(o))).code, 0);
    }
    const list = await kubectl(kc, ["get", "sts,rs", "-o", "name"]);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stdout, "statefulset.apps/echo-statefulset\nreplicaset.apps/echo-replicaset\n");

    assert.equal((await kubectl(kc, ["create", "--validate=false", "-f", "-"], JSON.stringify(DEPLOYMENT))).code, 0);
    const pods = () => f.double.list("pods", "default");
    assert.equal(pods().length, 1);
    const first = pods()[0]!.metadata.name;
    const r = await kubectl(kc, [
      "patch",
      "deployment",
      "echo",
      "--type",
      "json",
      "-p",
      JSON.stringify([{
        op: "add",
        path: "/spec/template/spec/containers/-",
        value: { name: "side", image: "registry.test/side:1" },
      }]),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(pods().length, 1);
    const pod = pods()[0]!;
    assert.notEqual(pod.metadata.name, first, "a new pod");
    assert.deepEqual((pod.spec as { containers: { name: string }[] }).containers.map((c) => c.name), ["echo", "side"]);
    const scaled = await kubectl(kc, [
      "patch",
      "deployment",
      "echo",
      "--type",
      "merge",
      "-p",
      '{"spec":{"replicas":2}}',
    ]);
    assert.equal(scaled.code, 0, scaled.stderr);
    assert.equal(pods()[0]!.metadata.name, pod.metadata.name, "a change outside the template keeps the pod");
  } finally {
    await f.close();
  }
});
