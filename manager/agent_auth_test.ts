import assert from "node:assert/strict";
import { K8sError } from "../k8s/errors.ts";
import { loadKube } from "../k8s/kubeconfig.ts";
import { fixture } from "../tests/k8s_fixture.ts";
import type { ApiServerDouble } from "../tests/k8s_apiserver_double.ts";
import { anyAgentAuth, kubeSecretTokenReader, managerTokenAuth, secretAgentAuth } from "./agent_auth.ts";

function agentSecret(d: ApiServerDouble, namespace: string, workload: string, token: string): void {
  d.put({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: `tp-agent-${workload}`, namespace },
    type: "Opaque",
    data: { token: btoa(token) },
  });
}

/** GETs of Secrets the double answered. */
function secretReads(d: ApiServerDouble): number {
  return d.requests.filter((r) => r.method === "GET" && r.path.includes("/secrets/")).length;
}

Deno.test("managerTokenAuth() admits the manager's own token only", async () => {
  const auth = managerTokenAuth("lab-token");
  assert.equal(await auth.check("default", "echo", "lab-token"), true);
  assert.equal(await auth.check("default", "echo", "lab-token2"), false);
  assert.equal(await auth.check("default", "echo", ""), false);
});

Deno.test("secretAgentAuth() admits the token in the workload's Secret, and nothing else", async () => {
  const f = await fixture();
  try {
    agentSecret(f.double, "default", "echo", "echo-token");
    agentSecret(f.double, "default", "db", "db-token");
    const auth = secretAgentAuth(kubeSecretTokenReader(loadKube({ kubeconfig: f.kubeconfig() })));
    assert.equal(await auth.check("default", "echo", "echo-token"), true);
    assert.equal(await auth.check("default", "echo", "db-token"), false, "another workload's token");
    assert.equal(await auth.check("default", "echo", "echo-token-and-more"), false);
    assert.equal(await auth.check("other", "echo", "echo-token"), false, "the same name in another namespace");
    assert.equal(await auth.check("default", "nope", ""), false, "no Secret, and an empty token");
    const reads = secretReads(f.double);
    for (const [ns, w] of [["default", "../echo"], ["Default", "echo"], ["default", "a/b"], ["", "echo"]]) {
      assert.equal(await auth.check(ns!, w!, "echo-token"), false);
    }
    assert.equal(secretReads(f.double), reads, "names Kubernetes would refuse are refused without asking it");
  } finally {
    await f.close();
  }
});

Deno.test("secretAgentAuth() keeps answers for ttlMs, shares one read between concurrent checks", async () => {
  const f = await fixture();
  try {
    agentSecret(f.double, "default", "echo", "t1");
    let clock = 0;
    const auth = secretAgentAuth(kubeSecretTokenReader(loadKube({ kubeconfig: f.kubeconfig() })), {
      ttlMs: 1000,
      now: () => clock,
    });
    const all = await Promise.all([1, 2, 3, 4, 5].map(() => auth.check("default", "echo", "t1")));
    assert.deepEqual(all, [true, true, true, true, true]);
    assert.equal(secretReads(f.double), 1);
    agentSecret(f.double, "default", "echo", "t2"); // a new injection's token
    clock = 999;
    assert.equal(await auth.check("default", "echo", "t1"), true, "still the cached answer");
    assert.equal(secretReads(f.double), 1);
    clock = 1000;
    assert.equal(await auth.check("default", "echo", "t1"), false, "expired: read again");
    assert.equal(await auth.check("default", "echo", "t2"), true);
    assert.equal(secretReads(f.double), 2);
  } finally {
    await f.close();
  }
});

Deno.test("secretAgentAuth() bounds its cache and its reads in flight", async () => {
  const f = await fixture();
  try {
    for (const w of ["a", "b", "c"]) agentSecret(f.double, "default", w, `${w}-token`);
    const reader = kubeSecretTokenReader(loadKube({ kubeconfig: f.kubeconfig() }));
    const auth = secretAgentAuth(reader, { maxEntries: 2, now: () => 0 });
    for (const w of ["a", "b", "c"]) assert.equal(await auth.check("default", w, `${w}-token`), true);
    assert.equal(secretReads(f.double), 3);
    assert.equal(await auth.check("default", "c", "c-token"), true);
    assert.equal(secretReads(f.double), 3, "c is cached");
    assert.equal(await auth.check("default", "a", "a-token"), true);
    assert.equal(secretReads(f.double), 4, "a, the least recently used, had gone");

    const few = secretAgentAuth(reader, { maxLookups: 2 });
    const answers = await Promise.all(["a", "b", "c"].map((w) => few.check("default", w, `${w}-token`)));
    assert.deepEqual(answers, [true, true, false], "the third read had no room");
  } finally {
    await f.close();
  }
});

Deno.test("secretAgentAuth() refuses when RBAC forbids reading the Secret, says so once per check, caches nothing", async () => {
  const f = await fixture({ authorize: (a) => a.resource !== "secrets" });
  try {
    agentSecret(f.double, "default", "echo", "t1");
    const errors: unknown[] = [];
    const auth = secretAgentAuth(kubeSecretTokenReader(loadKube({ kubeconfig: f.kubeconfig() })), {
      onError: (e) => errors.push(e),
    });
    assert.equal(await auth.check("default", "echo", "t1"), false);
    assert.equal(await auth.check("default", "echo", "t1"), false);
    assert.equal(errors.length, 2, "not cached: each check asked again");
    assert.ok(errors[0] instanceof K8sError && errors[0].kind === "forbidden");
    assert.match(String((errors[0] as Error).message), /get secrets in namespace "default"/);
  } finally {
    await f.close();
  }
});

Deno.test("anyAgentAuth() admits what either admits (a manager with Kubernetes and a --token)", async () => {
  const f = await fixture();
  try {
    agentSecret(f.double, "default", "echo", "echo-token");
    const auth = anyAgentAuth(
      secretAgentAuth(kubeSecretTokenReader(loadKube({ kubeconfig: f.kubeconfig() }))),
      managerTokenAuth("lab-token"),
    );
    assert.equal(await auth.check("default", "echo", "echo-token"), true);
    assert.equal(await auth.check("default", "echo", "lab-token"), true);
    assert.equal(await auth.check("default", "echo", "neither"), false);
  } finally {
    await f.close();
  }
});
