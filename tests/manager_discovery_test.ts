/**
 * `tp manager --kubeconfig`: the manager learns the pod and service subnets from the cluster's API (here the API
 * server test double), hands them to clients in the cluster info, and tells them when the pod subnets change.
 */
import assert from "node:assert/strict";
import { connect } from "../proto/mod.ts";
import { fixture } from "./k8s_fixture.ts";
import { ROOT } from "./lab.ts";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("tp manager --kubeconfig learns the cluster's subnets and tells clients when they change", async () => {
  const f = await fixture({ serviceCidrs: ["198.19.0.0/24", "2001:db8:5::/112"], managerPod: false });
  f.double.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "tp" } }); // where the probe Service goes
  f.double.addNode("node-a", ["198.19.128.0/24", "2001:db8:6::/64"]);
  const port = freePort();
  const manager = new Deno.Command(`${ROOT}/scripts/tp`, {
    args: ["manager", "--kubeconfig", f.kubeconfig(), "--listen", `127.0.0.1:${port}`, "--dns-server", "127.0.0.1"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs = manager.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const drain = (async () => {
    for (;;) {
      const { value, done } = await logs.read();
      if (done) break;
      log += value;
    }
  })();
  try {
    let session;
    for (let i = 0; i < 100 && !session; i++) {
      session = await connect(`http://127.0.0.1:${port}`, undefined, { clientName: "test" }).catch(() => undefined);
      if (!session) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(session, `the manager did not serve:\n${log}`);
    try {
      assert.deepEqual(session.clusterInfo.podSubnets, ["198.19.128.0/24", "2001:db8:6::/64"]);
      assert.deepEqual(session.clusterInfo.serviceSubnets, ["198.19.0.0/24", "2001:db8:5::/112"]);
      const watch = session.watchClusterInfo();
      const first = await watch.next();
      assert.deepEqual(first.value?.podSubnets, ["198.19.128.0/24", "2001:db8:6::/64"]);
      f.double.addNode("node-b", ["198.19.129.0/24"]);
      const next = await Promise.race([
        watch.next(),
        new Promise<never>((_, no) => setTimeout(() => no(new Error(`no change reported:\n${log}`)), 10_000)),
      ]);
      assert.ok(next.value?.podSubnets.includes("198.19.129.0/24"), JSON.stringify(next.value));
      await watch.return(undefined);
    } finally {
      await session.depart();
    }
  } finally {
    manager.kill("SIGTERM");
    await manager.status;
    await drain;
    await f.close();
  }
});
