/**
 * Intercepts end to end on the lab: a pod (its own namespace, tests/lab_pod.ts) runs the app and `tp agent`; the
 * workstation runs `tp connect` and a local stand-in of the app; clients in the cluster namespace (curl, socat) talk
 * to the pod's agent port. Real processes throughout: tp manager, tp agent, tp's daemon, curl, socat, getent.
 */
import assert from "node:assert/strict";
import { exec, LAB, requireRoot, requireTools, ROOT } from "./lab.ts";
import {
  type ClusterProcess,
  daemonPid,
  forceQuit,
  inNs,
  type LabManager,
  MANAGER_URL,
  startLabManager,
  startLocalApp,
  STATE_DIR,
  tp,
} from "./connect_fixture.ts";
import { type LabPod, startPod, waitFor, whoAnswers as answers } from "./lab_pod.ts";

const POD_IP = "198.19.128.20";
const HTTP = 8080, TCP = 7007; // the app's ports in the pod
const AGENT_HTTP = 9080, AGENT_TCP = 9007; // the agent's
const LOCAL_HTTP = 18080, LOCAL_TCP = 17007, LOCAL_CLOSED = 17999; // the workstation's

/** Which app answers at the pod's agent port ("web" in the pod, "laptop" here). */
const whoAnswers = () => answers(POD_IP, AGENT_HTTP, 10);

/** The processes of a network namespace whose command name is `name`, as "pid name". */
async function namedIn(ns: string, name: string): Promise<string[]> {
  const pids = (await exec(["ip", "netns", "pids", ns])).stdout.split(/\s+/).filter(Boolean);
  const out: string[] = [];
  for (const pid of pids) {
    const comm = (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "")).trim();
    if (comm === name) out.push(`${pid} ${comm}`);
  }
  return out;
}

Deno.test({
  name: "tp intercept sends a pod's connections to the workstation, and tp leave gives them back to the app",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  requireRoot();
  requireTools("curl", "socat", "getent", "sha256sum");
  let manager: LabManager | undefined;
  let pod: LabPod | undefined;
  let local: ClusterProcess | undefined;
  let agent: ClusterProcess | undefined;
  // The pod's volumes as the agent sees them: its --volume-root, with a volume mounted at /data.
  const volumes = await Deno.makeTempDir({ prefix: "tp-pod-volumes-" });
  const mountDir = `/tmp/tp-test-mount-${LAB.id}`;
  try {
    await Deno.mkdir(`${volumes}/data`);
    await Deno.writeTextFile(`${volumes}/data/hello.txt`, "a file of the pod's volume\n");
    manager = await startLabManager(["--session-ttl", "3s"]);
    await forceQuit();
    pod = await startPod({
      name: "web",
      index: 0,
      podIp: POD_IP,
      httpPort: HTTP,
      tcpPort: TCP,
      hosts: ["198.19.128.77 legacy-db"],
      env: { APP_GREETING: "hello from the pod", APP_MODE: "cluster" },
    });
    agent = await pod.startAgent({
      managerUrl: MANAGER_URL,
      workload: "web",
      forwards: [`${AGENT_HTTP}:${HTTP}`, `${AGENT_TCP}:${TCP}`],
      extra: ["--volume-root", volumes],
    });
    local = startLocalApp(LOCAL_HTTP, LOCAL_TCP);
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);

    await t.step("without an intercept the pod's app answers through the agent", async () => {
      assert.equal(await whoAnswers(), "web");
    });

    await t.step("tp list shows the workload with its agent, not intercepted", async () => {
      const r = await tp(["list", "-o", "json"]);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout).workloads;
      assert.deepEqual(rows.map((w: { workload: string; ports: number[] }) => [w.workload, w.ports.sort()]), [[
        "web",
        [TCP, HTTP],
      ]]);
      assert.deepEqual(rows[0].intercepted, []);
    });

    await t.step(
      "with --manager-url, a workload without an agent is an error that says why tp cannot inject",
      async () => {
        const r = await tp(["intercept", "nosuch", "--port", `${LOCAL_HTTP}`, "--mount=false"]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /No traffic-agent serves nosuch in namespace default/);
        assert.match(r.stderr, /connected with --manager-url \(no Kubernetes\), so it cannot inject the agent/);
      },
    );

    await t.step("tp intercept: the cluster's requests reach the workstation's local app", async () => {
      const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount=false", "-o", "json"]);
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout);
      assert.equal(info.appPort, HTTP);
      assert.equal(info.podIp, POD_IP);
      await waitFor("the agent to send connections to the workstation", async () => await whoAnswers() === "laptop");
      const l = await tp(["list", "-o", "json"]);
      assert.equal(JSON.parse(l.stdout).workloads[0].intercepted[0].appPort, HTTP);
      const s = await tp(["status", "-o", "json"]);
      assert.equal(JSON.parse(s.stdout).intercepts.active[0].workload, "web");
    });

    await t.step("a 20 MB POST arrives at the local app intact", async () => {
      const file = await Deno.makeTempFile();
      try {
        await exec(["sh", "-c", `head -c 20000000 /dev/urandom > ${file}`]);
        const want = (await exec(["sha256sum", file])).stdout.split(" ")[0];
        const r = await inNs("cluster", [
          "curl",
          "-sS",
          "-m",
          "60",
          "--data-binary",
          `@${file}`,
          `http://${POD_IP}:${AGENT_HTTP}/upload`,
        ], { timeoutMs: 90_000 });
        assert.equal(r.code, 0, r.stderr);
        const body = JSON.parse(r.stdout);
        assert.equal(body.service, "laptop");
        assert.deepEqual(body.body, { length: 20_000_000, sha256: want });
      } finally {
        await Deno.remove(file);
      }
    });

    await t.step("a name only the pod knows resolves on the workstation while intercepted", async () => {
      const r = await inNs("ws", ["getent", "hosts", "legacy-db"]);
      assert.equal(r.code, 0, `getent: ${r.code} ${r.stderr}`);
      assert.match(r.stdout, /^198\.19\.128\.77\s+legacy-db/);
    });

    await t.step("TCP: bytes and the half-close travel both ways through the intercept", async () => {
      const r1 = await tp(["intercept", "web", "--port", `${LOCAL_TCP}:${TCP}`, "--mount=false"]);
      assert.equal(r1.code, 0, r1.stderr);
      const r = await inNs("cluster", ["socat", "-t", "5", "-", `TCP:${POD_IP}:${AGENT_TCP}`], {
        stdin: "ping through the intercept\n",
        timeoutMs: 20_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "ping through the intercept\n");
    });

    await t.step("a second workstation is refused, naming the first", async () => {
      // A second session from the cluster namespace: the manager sees another workstation.
      const r = await inNs("cluster", [
        Deno.execPath(),
        "run",
        "-A",
        `${ROOT}/tests/intercept_other_client.ts`,
        MANAGER_URL,
        "web",
        String(HTTP),
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /already intercepted by \S+/);
    });

    await t.step("tp leave gives the port back to the app, with no request failing across the switch", async () => {
      let failures = 0, laptop = 0, web = 0;
      const loop = (async () => {
        for (let i = 0; i < 60; i++) {
          const who = await whoAnswers();
          if (who === "laptop") laptop++;
          else if (who === "web") web++;
          else failures++;
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      const l = await tp(["leave", "web"]);
      assert.equal(l.code, 0, l.stderr);
      await loop;
      assert.equal(failures, 0, `${failures} requests failed (laptop ${laptop}, web ${web})`);
      assert.equal(await whoAnswers(), "web");
    });

    await t.step("after tp leave the pod-only name no longer resolves", async () => {
      await waitFor("tp's DNS cache to let the name go", async () => {
        const r = await inNs("ws", ["getent", "hosts", "legacy-db"]);
        return r.code !== 0;
      });
    });

    await t.step("a closed local port: the cluster's client gets a reset at once", async () => {
      const r1 = await tp(["intercept", "web", "--port", `${LOCAL_CLOSED}:${HTTP}`, "--mount=false"]);
      assert.equal(r1.code, 0, r1.stderr);
      await waitFor("the intercept to reach the agent", async () => {
        const r = await inNs("cluster", ["curl", "-sS", "-m", "10", `http://${POD_IP}:${AGENT_HTTP}/`]);
        return r.code !== 0;
      });
      const r = await inNs("cluster", ["curl", "-sS", "-m", "10", `http://${POD_IP}:${AGENT_HTTP}/`]);
      // The agent accepted the connection and resets it: curl says 56 ("Recv failure: Connection reset by peer"),
      // or 7 when the reset comes before it sent the request (curl then reports the connect as failed).
      assert.ok(r.code === 56 || r.code === 7, `curl exit ${r.code}: ${r.stderr}`);
      assert.ok(r.ms < 5_000, `the reset took ${r.ms} ms`);
      const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
      assert.ok(st.intercepts.refused >= 1, JSON.stringify(st.intercepts));
      await tp(["leave", "web"]);
    });

    await t.step("tp intercept -- CMD runs CMD with the pod's environment, returns its code, and leaves", async () => {
      const r = await tp([
        "intercept",
        "web",
        "--port",
        `${LOCAL_HTTP}:${HTTP}`,
        "--mount=false",
        "--",
        "sh",
        "-c",
        "env | grep '^APP_' | sort; exit 4",
      ]);
      assert.equal(r.code, 4, r.stderr);
      assert.equal(r.stdout, "APP_GREETING=hello from the pod\nAPP_MODE=cluster\n");
      const l = await tp(["list", "-o", "json"]);
      assert.deepEqual(JSON.parse(l.stdout).workloads[0].intercepted, []);
      assert.equal(await whoAnswers(), "web");
    });

    await t.step(
      "--mount: the pod's volumes appear under DIR, read and written through sshfs over the tunnel",
      async () => {
        await Deno.remove(mountDir, { recursive: true }).catch(() => {});
        const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", mountDir, "-o", "json"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout).mount.dir, mountDir);
        // The mount is the daemon's: it lives in the daemon's mount namespace (ip netns exec gives each command one).
        const pid = await daemonPid();
        const inDaemon = (cmd: string[]) => exec(["nsenter", "-t", String(pid), "-m", ...cmd]);
        assert.equal((await inDaemon(["cat", `${mountDir}/data/hello.txt`])).stdout, "a file of the pod's volume\n");
        const w = await inDaemon(["sh", "-c", `echo written on the laptop > ${mountDir}/data/new.txt`]);
        assert.equal(w.code, 0, w.stderr);
        assert.equal(await Deno.readTextFile(`${volumes}/data/new.txt`), "written on the laptop\n");
        await Deno.writeTextFile(`${volumes}/data/changed.txt`, "changed in the pod\n");
        assert.equal((await inDaemon(["cat", `${mountDir}/data/changed.txt`])).stdout, "changed in the pod\n");
        const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
        const mounts = st.intercepts.mounts.map((m: Record<string, unknown>) => ({ ...m, since: "" }));
        assert.deepEqual(mounts, [
          {
            namespace: "default",
            workload: "web",
            dir: mountDir,
            state: "mounted",
            since: "",
            remounts: 0,
            alive: true,
          },
        ]);
        const l = await tp(["leave", "web"]);
        assert.equal(l.code, 0, l.stderr);
        const f = await inDaemon(["findmnt", "-n", mountDir]);
        assert.equal(f.stdout.trim(), "", "a mount is left after tp leave");
        // Looked for where they ran (another lab on the machine may have its own): sshfs beside the daemon in the
        // workstation's namespace, sftp-server beside the agent in the pod's.
        const left = [
          ...await namedIn(LAB.namespaces.workstation, "sshfs"),
          ...await namedIn(pod!.netns, "sftp-server"),
        ];
        assert.deepEqual(left, [], `processes left: ${left.join(", ")}`);
      },
    );

    await t.step("tp quit ends the intercept at once: the app serves the port again", async () => {
      const r1 = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount=false"]);
      assert.equal(r1.code, 0, r1.stderr);
      await waitFor("the intercept", async () => await whoAnswers() === "laptop");
      const q = await tp(["quit"]);
      assert.equal(q.code, 0, q.stderr);
      assert.equal(await whoAnswers(), "web");
      const c = await tp(["connect", "--manager-url", MANAGER_URL]);
      assert.equal(c.code, 0, c.stderr);
    });

    await t.step("kill -9 of the daemon while intercepted: the app serves the port again", async () => {
      const r1 = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount=false"]);
      assert.equal(r1.code, 0, r1.stderr);
      await waitFor("the intercept", async () => await whoAnswers() === "laptop");
      const pid = await daemonPid();
      assert.ok(pid);
      Deno.kill(pid, "SIGKILL");
      await waitFor("the app to answer again", async () => await whoAnswers() === "web", 20_000);
      const q = await tp(["quit"]);
      assert.equal(q.code, 0, q.stderr);
    });
  } finally {
    await forceQuit();
    await local?.stop();
    await agent?.stop();
    await pod?.stop();
    await manager?.stop();
    await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
    await Deno.remove(volumes, { recursive: true }).catch(() => {});
    await Deno.remove(mountDir, { recursive: true }).catch(() => {});
  }
});
