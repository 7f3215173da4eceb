import assert from "node:assert/strict";
import { DEFAULT_AGENT_PORT } from "./defaults.ts";
import { agentManagerUrl } from "./inject.ts";
import { managerManifests } from "./manifests.ts";

const objects = managerManifests({ namespace: "tp", image: "registry.test/tp:1" });
const byKind = (kind: string) => objects.find((o) => o.kind === kind)! as Record<string, unknown>;

Deno.test("managerManifests() lets the manager get secrets (agents' credentials), and nothing more on them", () => {
  const rules = byKind("ClusterRole").rules as { resources: string[]; verbs: string[] }[];
  const onSecrets = rules.filter((r) => r.resources.includes("secrets"));
  assert.deepEqual(onSecrets.map((r) => r.verbs), [["get"]]);
});

Deno.test("managerManifests() exposes the agent port on the manager's container and Service, where agents dial", () => {
  const svc = byKind("Service") as { metadata: { name: string }; spec: { ports: { name: string; port: number }[] } };
  // The client API is not in the Service: it listens on the pod's loopback, for port-forwards only.
  assert.deepEqual(svc.spec.ports.map((p) => `${p.name}:${p.port}`), [`agent:${DEFAULT_AGENT_PORT}`]);
  const dep = byKind("Deployment") as {
    spec: {
      template: { spec: { containers: { env: { name: string; value?: string }[]; ports: { name: string }[] }[] } };
    };
  };
  const c = dep.spec.template.spec.containers[0]!;
  assert.ok(c.ports.some((p) => p.name === "agent"));
  assert.equal(c.env.find((e) => e.name === "TP_MANAGER_AGENT_LISTEN")?.value, "0.0.0.0:8082");
  assert.equal(agentManagerUrl("tp"), `http://${svc.metadata.name}.tp:${DEFAULT_AGENT_PORT}`);
});
