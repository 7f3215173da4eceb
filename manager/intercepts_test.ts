import assert from "node:assert/strict";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import { type AgentRecord, InterceptTable, MAX_INTERCEPTS_PER_SESSION } from "./intercepts.ts";

function agent(sessionId: string, workload = "web", ports: [number, number][] = [[9080, 8080]]): AgentRecord {
  return {
    sessionId,
    namespace: "default",
    workload,
    podName: `${workload}-${sessionId}`,
    podIp: "198.19.128.20",
    forwards: ports.map(([agentPort, appPort]) => ({ agentPort, appPort })),
    mounts: ["/data"],
    env: { APP: "1" },
    version: "test",
  };
}

const req = (sessionId: string, workload: string, appPort: number, localPort = 18080) => ({
  sessionId,
  clientName: `laptop-${sessionId}`,
  namespace: "default",
  workload,
  appPort,
  localPort,
});

function grpcCode(f: () => unknown): Status {
  try {
    f();
  } catch (e) {
    if (e instanceof GrpcError) return e.code;
    throw e;
  }
  throw new Error("did not throw");
}

Deno.test("InterceptTable.create() picks a workload's only port, and asks which when it has several", () => {
  const t = new InterceptTable();
  t.addAgent(agent("a1"));
  assert.equal(t.create(req("c1", "web", 0)).appPort, 8080);
  t.addAgent(agent("a2", "api", [[9080, 8080], [9007, 7007]]));
  assert.equal(grpcCode(() => t.create(req("c1", "api", 0))), Status.INVALID_ARGUMENT);
  assert.equal(t.create(req("c1", "api", 7007)).appPort, 7007);
  assert.equal(grpcCode(() => t.create(req("c1", "api", 1234))), Status.INVALID_ARGUMENT);
});

Deno.test("InterceptTable.create() refuses a workload without an agent and a port that is not a port", () => {
  const t = new InterceptTable();
  assert.equal(grpcCode(() => t.create(req("c1", "web", 8080))), Status.NOT_FOUND);
  t.addAgent(agent("a1"));
  assert.equal(grpcCode(() => t.create(req("c1", "web", 8080, 0))), Status.INVALID_ARGUMENT);
  assert.equal(grpcCode(() => t.create(req("c1", "web", 8080, 70000))), Status.INVALID_ARGUMENT);
});

Deno.test("a second workstation is refused with the first one's name; the same one again is idempotent", () => {
  const t = new InterceptTable();
  t.addAgent(agent("a1"));
  const first = t.create(req("c1", "web", 8080));
  assert.equal(t.create(req("c1", "web", 8080)).id, first.id);
  try {
    t.create(req("c2", "web", 8080));
    assert.fail("not refused");
  } catch (e) {
    assert.ok(e instanceof GrpcError);
    assert.equal(e.code, Status.ALREADY_EXISTS);
    assert.match(e.details, /already intercepted by laptop-c1/);
  }
  assert.equal(grpcCode(() => t.create(req("c1", "web", 8080, 19090))), Status.ALREADY_EXISTS);
  // The same workstation to another local port: the advice ends that one port, not the workload's others.
  assert.throws(() => t.create(req("c1", "web", 8080, 19090)), /tp leave web --port 8080 first/);
});

Deno.test("removing a session's intercepts frees the port for another workstation", () => {
  const t = new InterceptTable();
  t.addAgent(agent("a1"));
  t.create(req("c1", "web", 8080));
  assert.deepEqual(t.interceptedPorts("default", "web"), [8080]);
  assert.equal(t.remove("c1", "other").length, 0);
  assert.equal(t.remove("c1").length, 1);
  assert.deepEqual(t.interceptedPorts("default", "web"), []);
  assert.equal(t.create(req("c2", "web", 8080)).clientName, "laptop-c2");
});

Deno.test("InterceptTable.remove() with an app port ends only that port's intercept of the workload", () => {
  const t = new InterceptTable();
  t.addAgent(agent("a1", "api", [[9080, 8080], [9007, 7007]]));
  t.create(req("c1", "api", 8080));
  t.create(req("c1", "api", 7007, 17007));
  assert.equal(t.remove("c1", "api", 9999).length, 0);
  assert.deepEqual(t.remove("c1", "api", 7007).map((r) => r.appPort), [7007]);
  assert.deepEqual(t.interceptedPorts("default", "api"), [8080]);
  assert.equal(grpcCode(() => t.remove("c1", "", 8080)), Status.INVALID_ARGUMENT);
  assert.deepEqual(t.remove("c1", "api", 0).map((r) => r.appPort), [8080]);
});

Deno.test("a session holds at most MAX_INTERCEPTS_PER_SESSION intercepts", () => {
  const t = new InterceptTable();
  for (let i = 0; i <= MAX_INTERCEPTS_PER_SESSION; i++) t.addAgent(agent(`a${i}`, `w${i}`));
  for (let i = 0; i < MAX_INTERCEPTS_PER_SESSION; i++) t.create(req("c1", `w${i}`, 8080));
  assert.equal(grpcCode(() => t.create(req("c1", `w${MAX_INTERCEPTS_PER_SESSION}`, 8080))), Status.RESOURCE_EXHAUSTED);
});

Deno.test("info() carries the pod's environment only when asked", () => {
  const t = new InterceptTable();
  t.addAgent(agent("a1"));
  const r = t.create(req("c1", "web", 8080));
  assert.deepEqual(t.info(r, true).env, { APP: "1" });
  assert.deepEqual(t.info(r, false).env, {});
  assert.equal(t.info(r, true).podIp, "198.19.128.20");
});
