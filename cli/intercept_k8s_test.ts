import assert from "node:assert/strict";
import {
  AgentWaitTimeout,
  injectAndWait,
  isNoAgentError,
  kubeOptionsOf,
  type WaitClock,
  waitForAgent,
  workloadName,
} from "./intercept_k8s.ts";
import type { ConnectSettings } from "./daemon/settings.ts";
import { ControlError } from "./daemon/control.ts";
import { fixture } from "../tests/k8s_fixture.ts";

/** A clock that moves only when slept on. */
function fakeClock(): WaitClock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: (ms: number) => {
      c.t += ms;
      return Promise.resolve();
    },
  };
  return c;
}

Deno.test("isNoAgentError() knows the manager's NOT_FOUND for a workload without an agent, as the daemon passes it", () => {
  assert.ok(
    isNoAgentError(new ControlError("NOT_FOUND: No traffic-agent serves web in namespace default", "NOT_FOUND")),
  );
  assert.ok(
    !isNoAgentError(new ControlError("ALREADY_EXISTS: web port 8080 is already intercepted", "ALREADY_EXISTS")),
  );
  // Decided by the code, never by the words: the daemon's own failure, and words alone, are not the manager's.
  assert.ok(!isNoAgentError(new ControlError("not connected to the traffic-manager (reconnecting?)", undefined)));
  assert.ok(!isNoAgentError(new Error("NOT_FOUND: No traffic-agent serves web")));
});

Deno.test("workloadName() drops the kind of deployment/NAME", () => {
  assert.equal(workloadName("deployment/web"), "web");
  assert.equal(workloadName("web"), "web");
});

Deno.test("kubeOptionsOf() leaves out the kubeconfig the daemon took from KUBECONFIG or ~/.kube/config", () => {
  assert.deepEqual(kubeOptionsOf({ kubeconfig: "", context: "lab", namespace: "dev", managerNamespace: "tp" }), {
    context: "lab",
    namespace: "dev",
    managerNamespace: "tp",
  });
});

Deno.test("waitForAgent() asks until the agent registers, saying so every 5 s", async () => {
  const clock = fakeClock();
  const lines: string[] = [];
  let asked = 0;
  const ms = await waitForAgent(
    { ref: "deployment/web", namespace: "default", restarting: true },
    () => Promise.resolve(++asked > 25),
    { clock, onProgress: (l) => lines.push(l) },
  );
  assert.equal(asked, 26);
  assert.equal(ms, 12_500);
  assert.deepEqual(lines, [
    "waiting for web's pods to restart with the agent (0 s)",
    "waiting for web's pods to restart with the agent (5 s)",
    "waiting for web's pods to restart with the agent (10 s)",
  ]);
});

Deno.test("waitForAgent() gives up after its timeout, naming what to look at and --timeout", async () => {
  const clock = fakeClock();
  let asked = 0;
  await assert.rejects(
    waitForAgent({ ref: "deployment/web", namespace: "dev", restarting: false }, () => {
      asked++;
      return Promise.resolve(false);
    }, { clock, timeoutMs: 3_000, pollMs: 1_000 }),
    (e: Error) => {
      assert.ok(e instanceof AgentWaitTimeout);
      assert.match(e.message, /deployment\/web's pods did not register tp's traffic-agent .* within 3 s/);
      assert.match(e.message, /kubectl logs -n dev deployment\/web -c tp-agent/);
      assert.match(e.message, /--timeout/);
      return true;
    },
  );
  assert.equal(asked, 4, "at 0, 1, 2 and 3 s");
  assert.equal(clock.t, 3_000);
});

function seed(f: Awaited<ReturnType<typeof fixture>>): void {
  f.double.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } });
  f.double.put({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "default", generation: 1 },
    spec: {
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: { containers: [{ name: "app", image: "x", ports: [{ name: "http", containerPort: 8080 }] }] },
      },
    },
  });
  f.double.put({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "web", namespace: "default" },
    spec: { selector: { app: "web" }, ports: [{ port: 80, protocol: "TCP", targetPort: "http" }] },
  });
}

function settingsFor(kubeconfig: string): ConnectSettings {
  return {
    managerUrl: "",
    token: "",
    namespace: "default",
    kubeconfig,
    context: "lab",
    managerNamespace: "tp",
    alsoProxy: [],
    neverProxy: [],
    allowConflictingSubnets: [],
    warnPrefix: "8,32",
  };
}

Deno.test("injectAndWait() injects the agent as the kubeconfig's user, then waits until the manager knows it", async () => {
  const f = await fixture();
  try {
    seed(f);
    const lines: string[] = [];
    let asked = 0;
    const r = await injectAndWait(settingsFor(f.kubeconfig()), "web", {
      registered: (name) => {
        assert.equal(name, "web");
        return Promise.resolve(++asked > 1);
      },
      progress: (l) => lines.push(l),
      clock: fakeClock(),
    });
    assert.equal(r.action, "injected");
    assert.equal(lines[0], "injecting tp's traffic-agent into deployment/web");
    assert.ok(lines.some((l) => /patched deployment\/web: added container tp-agent/.test(l)), lines.join("\n"));
    assert.equal(lines.at(-1), "waiting for web's pods to restart with the agent (0 s)");
    assert.ok(f.double.get("secrets", "default", "tp-agent-web"));
  } finally {
    await f.close();
  }
});

Deno.test("injectAndWait() names the fix when RBAC forbids the change, or there is no such workload", async () => {
  const f = await fixture({ authorize: (a) => a.verb === "get" || a.verb === "list" });
  try {
    seed(f);
    const o = { registered: () => Promise.resolve(true), progress: () => {}, clock: fakeClock() };
    await assert.rejects(
      injectAndWait(settingsFor(f.kubeconfig()), "web", o),
      /cannot inject tp's traffic-agent into deployment\/web: RBAC forbids tp to create secrets in namespace "default".*Ask a cluster admin for a Role granting "create" on "secrets"/,
    );
    await assert.rejects(
      injectAndWait(settingsFor(f.kubeconfig()), "nosuch", o),
      /no deployment, statefulset or replicaset named "nosuch" in namespace "default"/,
    );
    assert.equal(f.double.requests.filter((q) => q.method === "PATCH").length, 0, "nothing patched");
    assert.equal(f.double.get("secrets", "default", "tp-agent-web"), undefined);
  } finally {
    await f.close();
  }
});
