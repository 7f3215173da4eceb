/**
 * Intercepts and mounts across a broken link, on the lab through the REAL tunnel (as volumes_lab_test.ts: `tp
 * manager`, lab pods running the app and `tp agent --volume-root`, one workstation mount namespace, mounts for nobody).
 *
 * - Per-port leave: an explicit `--mount` that fails ends only the intercept it asked for; the workload's other port
 *   stays intercepted; `tp leave W --port P` ends one port.
 * - The link cut: the workstation's end of the lab's link goes down until tp notices, and comes back. The mount rides
 *   it out (its stream resumes with the session: tests/volumes_resume_lab_test.ts has a file held open and a read
 *   across the cut, and the remount past the grace): `tp status` says `mounted` throughout, the same sshfs serves it,
 *   a shell sitting in it carries on, the same file reads again and a file new in the pod shows up. An intercepted
 *   connection open across the cut carries on (tests/intercept_resume_lab_test.ts); a connection made during the cut
 *   is served after it; new ones are served soon after the link is back. A mount whose stream ends while the link is up (its sftp-server killed) comes back too, and so do the
 *   intercept and the mount after the manager restarts (the daemon retries intercepting until the workload's agent
 *   registered again). After `tp quit` nothing is left: no mount, no sshfs, no sftp-server.
 */
import assert from "node:assert/strict";
import { inNs, LAB, requireRoot, requireTools, ROOT } from "./lab.ts";
import {
  type ClusterProcess,
  forceQuit,
  type LabManager,
  MANAGER_URL,
  setWorkstationLink,
  startLabManager,
  startLocalApp,
  STATE_DIR,
} from "./connect_fixture.ts";
import { inNetns, processes } from "./volumes_fixture.ts";
import { type LabPod, startPod, waitFor, whoAnswers } from "./lab_pod.ts";
import { startWorkstationShell, type User, type WorkstationShell } from "./ws_shell.ts";

/** Where a process sits (the link itself: reading it does not enter a dead FUSE mount). */
function cwdOf(pid: number): string {
  try {
    return Deno.readLinkSync(`/proc/${pid}/cwd`);
  } catch {
    return "";
  }
}

const NOBODY: User = { uid: 65534, gid: 65534 };
const HTTP = 8080, TCP = 7007; // the apps' ports in each pod
const AGENT_HTTP = 9080, AGENT_TCP = 9007; // the agents'
const LOCAL_HTTP = 18080, LOCAL_TCP = 17007; // the workstation's stand-in app
const PODS = {
  web: { index: 0, ip: "198.19.128.20" },
  bare: { index: 2, ip: "198.19.128.22" }, // its agent's --volume-root does not exist
};

Deno.test({
  name: "intercepts and mounts across a broken link, and per-port leave, through the real tunnel",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  requireRoot();
  requireTools("curl", "sshfs", "findmnt", "nsenter", "setpriv", "ss");
  let manager: LabManager | undefined;
  const pods: LabPod[] = [];
  const agents: ClusterProcess[] = [];
  let local: ClusterProcess | undefined;
  let shell: WorkstationShell | undefined;
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-reconnect-" });
  await Deno.chmod(base, 0o755);
  const root = `${base}/pod-web`; // web's filesystem (its agent's --volume-root)
  const home = `${base}/home`; // nobody's: mount points go here
  try {
    await Deno.mkdir(home);
    await Deno.chown(home, NOBODY.uid, NOBODY.gid);
    await Deno.mkdir(`${root}/data`, { recursive: true });
    await Deno.writeTextFile(`${root}/data/hello.txt`, "a file of web's volume\n");
    manager = await startLabManager(["--intercept-grace", "30s"]);
    shell = await startWorkstationShell();
    const sh = shell;
    const user = (cmd: string) => sh.run(["sh", "-c", cmd], { user: NOBODY, timeoutMs: 30_000 });
    const mountedAt = async (dir: string) => (await sh.run(["findmnt", "-n", "-o", "SOURCE", dir])).stdout.trim();
    const sshfsLeft = () => processes("sshfs", (pid) => sh.holds(pid));
    const sftpServers = () => processes("sftp-server", (pid) => inNetns(pid, `${LAB.id}-pod-web`));
    const tp = (args: string[]) => sh.tp(args);
    const status = async () => JSON.parse((await tp(["status", "-o", "json"])).stdout);
    const mountState = async (workload: string) =>
      ((await status()).intercepts?.mounts ?? []).find((m: { workload: string }) => m.workload === workload);
    const daemonLog = () => Deno.readTextFile(`${STATE_DIR}/daemon.log`).catch(() => "");
    await forceQuit();
    const startAgent = (pod: LabPod, name: string) =>
      pod.startAgent({
        managerUrl: MANAGER_URL,
        workload: name,
        forwards: [`${AGENT_HTTP}:${HTTP}`, `${AGENT_TCP}:${TCP}`],
        extra: ["--volume-root", name === "bare" ? `${base}/no-such-root` : root],
      });
    for (const [name, p] of Object.entries(PODS)) {
      const pod = await startPod({ name, index: p.index, podIp: p.ip, httpPort: HTTP, tcpPort: TCP });
      pods.push(pod);
      agents.push(await startAgent(pod, name));
    }
    local = startLocalApp(LOCAL_HTTP, LOCAL_TCP);
    const c = await sh.tp(["connect", "--manager-url", MANAGER_URL], {
      env: { SUDO_UID: String(NOBODY.uid), SUDO_GID: String(NOBODY.gid) },
    });
    assert.equal(c.code, 0, c.stderr);
    const webDir = `${home}/web`;

    await t.step("an explicit --mount that fails ends only its own intercept: the other port stays", async () => {
      const first = await tp(["intercept", "bare", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", "false"]);
      assert.equal(first.code, 0, first.stderr);
      const r = await tp(["intercept", "bare", "--port", `${LOCAL_TCP}:${TCP}`, "--mount", `${home}/bare`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /--volume-root/);
      const list = JSON.parse((await tp(["list", "-o", "json"])).stdout);
      const bare = list.workloads.find((w: { workload: string }) => w.workload === "bare");
      assert.deepEqual(bare.intercepted.map((i: { appPort: number }) => i.appPort), [HTTP]);
      assert.equal(await whoAnswers(PODS.bare.ip, AGENT_HTTP), "laptop", "the first intercept carries on");
      const l = await tp(["leave", "bare", "--port", String(TCP)]);
      assert.notEqual(l.code, 0, "port 7007 is not intercepted any more");
      assert.match(l.stderr, /bare port 7007 is not intercepted from this machine/);
      const l2 = await tp(["leave", "bare", "--port", String(HTTP)]);
      assert.equal(l2.code, 0, l2.stderr);
      await waitFor(
        "bare's own app to answer again",
        async () => await whoAnswers(PODS.bare.ip, AGENT_HTTP) === "bare",
      );
    });

    await t.step(
      "the mount rides out a link cut; intercepted connections carry on, new ones are served",
      async () => {
        const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", webDir]);
        assert.equal(r.code, 0, r.stderr);
        const r2 = await tp(["intercept", "web", "--port", `${LOCAL_TCP}:${TCP}`]);
        assert.equal(r2.code, 0, r2.stderr);
        assert.match(r2.stderr, new RegExp(`volumes are at ${webDir}`), "the second port shares the workload's mount");
        const read = await user(`cat '${webDir}/data/hello.txt'`);
        assert.equal(read.stdout, "a file of web's volume\n", read.stderr);
        // A shell sitting in the mount: it carries on (before mounts resumed, the dead mount was detached lazily).
        const sitter = sh.spawn(["sh", "-c", `cd '${webDir}/data' && exec sleep 120`], { user: NOBODY });
        const [sshfsBefore] = sshfsLeft();
        assert.ok(sshfsBefore, "sshfs serves the mount");
        // A connection through the intercept, open across the cut.
        const held = inNs("cluster", [
          Deno.execPath(),
          "run",
          "-A",
          "--cached-only",
          `${ROOT}/tests/hold_client.ts`,
          PODS.web.ip,
          String(AGENT_TCP),
          "30",
        ], { timeoutMs: 90_000 });
        await waitFor("the held connection to reach the laptop's echo", async () => {
          const s = await inNs("ws", ["ss", "-Htn", "state", "established", `( sport = :${LOCAL_TCP} )`]);
          return s.stdout.trim() !== "";
        });

        let upAt = 0, duringCut: Promise<string> | undefined;
        await setWorkstationLink("down");
        try {
          await waitFor("tp to notice the cut", async () => (await status()).manager.state === "reconnecting");
          // The mount's stream is suspended with the session's, not reset: sshfs waits, the mount stays.
          assert.equal((await mountState("web"))?.state, "mounted");
          const st = await tp(["status"]);
          assert.match(st.stdout, new RegExp(`web's volumes at ${webDir}: mounted$`, "m"));
          // A connection made during the cut waits for the workstation (the manager's join timeout, 10 s).
          duringCut = whoAnswers(PODS.web.ip, AGENT_HTTP, 25);
          await new Promise((r) => setTimeout(r, 1_000));
        } finally {
          await setWorkstationLink("up");
          upAt = Date.now();
        }

        // New intercepted connections are served soon after the link is back.
        await waitFor("a new connection to reach the laptop", async () => {
          return await whoAnswers(PODS.web.ip, AGENT_HTTP, 2) === "laptop";
        }, 20_000);
        const served = Date.now() - upAt;
        console.log(`link back -> new intercepted connection served: ${served} ms`);
        assert.ok(served < 5_000, `served ${served} ms after the link came back`);
        const left = await inNs("ws", ["ss", "-Htn", "state", "established", `( sport = :${LOCAL_TCP} )`]);
        assert.notEqual(left.stdout.trim(), "", "the laptop's end of the held connection is still open");
        // Announced on the workstation's old watch, it is announced again on the new one (the manager may hear of the
        // old connection's end first, its FIN or RST once the link is up: it then waits --intercept-grace, 30 s here).
        assert.equal(await duringCut, "laptop", "the connection made during the cut is served by the laptop after it");

        // The mount carried on at the same directory, served by the same sshfs: never made again.
        await waitFor("the session to resume", async () => (await status()).manager.resumes === 1, 30_000);
        assert.equal(await mountedAt(webDir), "tp.default.web:");
        const again = await user(`cat '${webDir}/data/hello.txt'`);
        assert.equal(again.stdout, "a file of web's volume\n", again.stderr);
        console.log(`link back -> a file read through the mount: ${Date.now() - upAt} ms`);
        await Deno.writeTextFile(`${root}/data/new.txt`, "written in the pod after the cut\n");
        const fresh = await user(`cat '${webDir}/data/new.txt'`);
        assert.equal(fresh.stdout, "written in the pod after the cut\n", fresh.stderr);
        const m = await mountState("web");
        assert.equal(m.state, "mounted");
        assert.equal(m.remounts, 0, "the mount was not made again");
        assert.match((await tp(["status"])).stdout, new RegExp(`web's volumes at ${webDir}: mounted$`, "m"));
        assert.match((await tp(["list"])).stdout, new RegExp(`web\\t.*volumes at ${webDir}: mounted`));
        const log = await daemonLog();
        assert.doesNotMatch(log, /mounted web's volumes again at|its stream ended/);
        assert.deepEqual(sshfsLeft(), [sshfsBefore], "the same sshfs");
        assert.equal(sftpServers().length, 1, "the same sftp-server in the pod");
        const sitting = processes("sleep", (pid) => sh.holds(pid) && cwdOf(pid) === `${webDir}/data`);
        assert.equal(sitting.length, 1, "the shell sitting in the mount is there");
        const sits = await user(`ls /proc/${sitting[0]}/cwd/`);
        assert.match(sits.stdout, /hello\.txt/, `the shell sitting in the mount carries on: ${sits.stderr}`);
        // The held connection carried on: open on both sides until the client's deadline (30 s): a
        // reset would have ended it early.
        const h = await held;
        assert.equal(h.code, 0, h.stderr);
        const out = JSON.parse(h.stdout);
        assert.equal(out.echoed, "hello\n");
        assert.equal(out.how, "open", `the cluster's client saw no reset (${JSON.stringify(out)})`);
        try {
          sitter.kill("SIGKILL");
        } catch { /* gone */ }
        await sitter.output();
      },
    );

    await t.step("a mount whose stream ends while the link is up (its sftp-server killed) comes back too", async () => {
      const [pid] = sftpServers();
      assert.ok(pid);
      Deno.kill(pid, "SIGKILL");
      await waitFor("the mount to be made again", async () => (await mountState("web"))?.remounts === 1, 30_000);
      assert.equal((await mountState("web")).state, "mounted");
      const again = await user(`cat '${webDir}/data/hello.txt'`);
      assert.equal(again.stdout, "a file of web's volume\n", again.stderr);
      assert.match(
        await daemonLog(),
        /volumes at .*: its stream ended \(stream reset: (agent reset: )?sftp-server was killed by SIGKILL\); mounting it again/,
      );
      assert.equal(sshfsLeft().length, 1);
    });

    await t.step(
      "the traffic-manager restarts, and web's agent comes back after tp: tp intercepts again once it is there, and mounts",
      async () => {
        await manager!.stop();
        await waitFor("the mount to say reconnecting", async () => (await mountState("web"))?.state === "reconnecting");
        await agents[0]!.stop(); // web's: it registers with the new manager only after tp reconnected
        manager = await startLabManager(["--intercept-grace", "30s"]);
        await waitFor(
          "a reconnection to the new manager",
          async () => (await status()).manager.lastReconnect?.kind === "manager-restarted",
          30_000,
        );
        await waitFor(
          "tp to retry intercepting web",
          async () => /cannot intercept web again yet/.test(await daemonLog()),
        );
        assert.equal((await mountState("web")).state, "reconnecting");
        agents[0] = await startAgent(pods[0]!, "web");
        await waitFor("the mount to be made again", async () => (await mountState("web"))?.remounts === 2, 30_000);
        assert.equal((await mountState("web")).state, "mounted");
        const again = await user(`cat '${webDir}/data/hello.txt'`);
        assert.equal(again.stdout, "a file of web's volume\n", again.stderr);
        await waitFor("the laptop to answer", async () => await whoAnswers(PODS.web.ip, AGENT_HTTP, 2) === "laptop");
        assert.equal(sshfsLeft().length, 1);
      },
    );

    await t.step("tp quit leaves no mount, no sshfs and no sftp-server", async () => {
      const q = await tp(["quit"]);
      assert.equal(q.code, 0, q.stderr);
      assert.equal(await mountedAt(webDir), "");
      await waitFor("sshfs to exit", () => sshfsLeft().length === 0);
      await waitFor("web's sftp-server to exit", () => sftpServers().length === 0);
      const table = await sh.run(["findmnt", "-n", "-t", "fuse.sshfs"]);
      assert.equal(table.stdout.trim(), "", "no dead mount left, not even a lazily detached one");
    });
  } finally {
    await setWorkstationLink("up").catch(() => {});
    await shell?.tp(["quit"], { timeoutMs: 15_000 });
    await forceQuit();
    await shell?.stop();
    await local?.stop();
    for (const a of agents) await a.stop();
    for (const p of pods) await p.stop();
    await manager?.stop();
    await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
});
