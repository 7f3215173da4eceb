/**
 * Volumes end to end through the REAL tunnel: `tp manager` in the lab's cluster namespace, lab pods (their own
 * network namespaces, tests/lab_pod.ts) each running the app and `tp agent --volume-root DIR` (DIR stands for the
 * pod's filesystem: its volumes at their container paths), `tp connect` on the workstation, and `tp intercept
 * --mount`: the daemon opens a MountTunnel on its one HTTP/2 connection, the manager relays it to the agent, which
 * serves it with OpenSSH's sftp-server, and sshfs -o slave mounts it for the user. Real processes throughout.
 *
 * Every workstation command runs in ONE mount namespace (tests/ws_shell.ts says why `ip netns exec` alone would not
 * do): the daemon's mounts are seen by the commands that follow, `tp intercept -- CMD` and its CMD share them, and a
 * killed daemon's dead mount stays for `tp quit` to repair, as on a laptop.
 *
 * The mount belongs to the user who ran tp: `tp connect` gets SUDO_UID/SUDO_GID=65534 (what sudo sets when nobody runs
 * it), so the daemon mounts for nobody, and every look through the mount is made as nobody (root is refused by FUSE).
 */
import assert from "node:assert/strict";
import { exec, LAB, requireRoot, requireTools } from "./lab.ts";
import {
  type ClusterProcess,
  daemonPid,
  forceQuit,
  type LabManager,
  MANAGER_URL,
  startLabManager,
  startLocalApp,
  STATE_DIR,
} from "./connect_fixture.ts";
import { inNetns, processes } from "./volumes_fixture.ts";
import { type LabPod, startPod, waitFor, whoAnswers as answers } from "./lab_pod.ts";

/** Which app answers at a pod's agent port (the pod's own, or "laptop" here). */
const whoAnswers = (podIp: string) => answers(podIp, AGENT_HTTP);
import { startWorkstationShell, type User, type WorkstationShell } from "./ws_shell.ts";

const MB = 1024 * 1024;
const NOBODY: User = { uid: 65534, gid: 65534 };
const HTTP = 8080, TCP = 7007; // the apps' ports in each pod
const AGENT_HTTP = 9080, AGENT_TCP = 9007; // the agents'
const LOCAL_HTTP = 18080; // the workstation's stand-in app
const PODS = {
  web: { index: 0, ip: "198.19.128.20" },
  api: { index: 1, ip: "198.19.128.21" },
  bare: { index: 2, ip: "198.19.128.22" }, // its agent's --volume-root does not exist
};

Deno.test({
  name: "a pod's volumes through the real tunnel: big files both ways, file operations, two mounts, teardown, kill -9",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  requireRoot();
  requireTools("curl", "sha256sum", "sshfs", "findmnt", "nsenter", "setpriv");
  let manager: LabManager | undefined;
  const pods: LabPod[] = [];
  const agents: ClusterProcess[] = [];
  let local: ClusterProcess | undefined;
  let shell: WorkstationShell | undefined;
  // The pods' filesystems (each agent's --volume-root), and the user's files on the workstation.
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-lab-" });
  await Deno.chmod(base, 0o755);
  const root = (pod: string) => `${base}/pod-${pod}`;
  const home = `${base}/home`; // nobody's: mount points and local files go here
  try {
    await Deno.mkdir(home);
    await Deno.chown(home, NOBODY.uid, NOBODY.gid);
    for (const pod of ["web", "api"]) {
      await Deno.mkdir(`${root(pod)}/data`, { recursive: true });
      await Deno.writeTextFile(`${root(pod)}/data/hello.txt`, `a file of ${pod}'s volume\n`);
    }
    // A mount's stream outlives a killed daemon for the resume grace (the manager cannot tell a kill -9 from a broken
    // link): 3 s here, so that the pod's sftp-server ends within the kill -9 step's wait.
    manager = await startLabManager(["--session-ttl", "3s", "--resume-grace", "3s"]);
    shell = await startWorkstationShell();
    const sh = shell;
    // Runs a shell command as nobody in the workstation's namespace, where the daemon's mounts are.
    const user = (cmd: string, timeoutMs = 120_000) => sh.run(["sh", "-c", cmd], { user: NOBODY, timeoutMs });
    const mountedAt = async (dir: string) => (await sh.run(["findmnt", "-n", "-o", "SOURCE", dir])).stdout.trim();
    const sshfsLeft = () => processes("sshfs", (pid) => sh.holds(pid));
    const sftpServersIn = (pod: string) => processes("sftp-server", (pid) => inNetns(pid, `${LAB.id}-pod-${pod}`));
    const tp = (args: string[]) => sh.tp(args);
    await forceQuit();
    for (const [name, p] of Object.entries(PODS)) {
      const pod = await startPod({ name, index: p.index, podIp: p.ip, httpPort: HTTP, tcpPort: TCP });
      pods.push(pod);
      agents.push(
        await pod.startAgent({
          managerUrl: MANAGER_URL,
          workload: name,
          forwards: [`${AGENT_HTTP}:${HTTP}`, `${AGENT_TCP}:${TCP}`],
          extra: ["--volume-root", name === "bare" ? `${base}/no-such-root` : root(name)],
        }),
      );
    }
    local = startLocalApp(LOCAL_HTTP, 17007);
    // As sudo would start it for nobody: the daemon mounts for SUDO_UID.
    const c = await sh.tp(["connect", "--manager-url", MANAGER_URL], {
      env: { SUDO_UID: String(NOBODY.uid), SUDO_GID: String(NOBODY.gid) },
    });
    assert.equal(c.code, 0, c.stderr);
    const webDir = `${home}/web`, apiDir = `${home}/api`;

    await t.step("tp intercept --mount DIR mounts web's volumes at DIR, for the user", async () => {
      const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", webDir, "-o", "json"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).mount.dir, webDir);
      assert.equal(await mountedAt(webDir), "tp.default.web:");
      const st = await user(`stat -c %u '${webDir}/data/hello.txt' && cat '${webDir}/data/hello.txt'`);
      assert.equal(st.stdout, "65534\na file of web's volume\n", st.stderr);
    });

    await t.step("a 100 MB file of the pod read through the mount has the pod's sha256", async () => {
      await exec(["sh", "-c", `head -c ${100 * MB} /dev/urandom > '${root("web")}/data/big.bin'`]);
      const want = (await exec(["sha256sum", `${root("web")}/data/big.bin`])).stdout.split(" ")[0];
      const r = await user(`sha256sum '${webDir}/data/big.bin'`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split(" ")[0], want);
    });

    await t.step("a 100 MB file written through the mount appears in the pod with the same sha256", async () => {
      const r = await user(
        `head -c ${100 * MB} /dev/urandom > '${home}/up.bin' && cp '${home}/up.bin' '${webDir}/data/'`,
      );
      assert.equal(r.code, 0, r.stderr);
      const want = (await exec(["sha256sum", `${home}/up.bin`])).stdout.split(" ")[0];
      assert.equal((await exec(["sha256sum", `${root("web")}/data/up.bin`])).stdout.split(" ")[0], want);
      await Deno.remove(`${home}/up.bin`);
    });

    await t.step("rename, delete, mkdir, chmod, symlink and append through the mount reach the pod", async () => {
      const d = `${webDir}/data`, p = `${root("web")}/data`;
      const r = await user([
        `mv '${d}/hello.txt' '${d}/renamed.txt'`,
        `mkdir '${d}/sub'`,
        `echo one > '${d}/sub/log.txt'`,
        `echo two >> '${d}/sub/log.txt'`,
        `chmod 0640 '${d}/sub/log.txt'`,
        `ln -s sub/log.txt '${d}/link'`,
        `echo bye > '${d}/gone.txt'`,
        `rm '${d}/gone.txt' '${d}/big.bin' '${d}/up.bin'`,
      ].join(" && "));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(`${p}/renamed.txt`), "a file of web's volume\n");
      await assert.rejects(Deno.stat(`${p}/hello.txt`), Deno.errors.NotFound);
      assert.equal(await Deno.readTextFile(`${p}/sub/log.txt`), "one\ntwo\n");
      assert.equal((await Deno.stat(`${p}/sub/log.txt`)).mode! & 0o777, 0o640);
      assert.equal(await Deno.readLink(`${p}/link`), "sub/log.txt");
      for (const f of ["gone.txt", "big.bin", "up.bin"]) {
        await assert.rejects(Deno.stat(`${p}/${f}`), Deno.errors.NotFound);
      }
      const back = await user(`readlink '${d}/link' && cat '${d}/link' && stat -c %a '${d}/sub/log.txt'`);
      assert.equal(back.stdout, "sub/log.txt\none\ntwo\n640\n", back.stderr);
      await Deno.rename(`${p}/renamed.txt`, `${p}/hello.txt`);
    });

    await t.step("two workloads mounted at once each show their own pod's volumes", async () => {
      const r = await tp(["intercept", "api", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", apiDir]);
      assert.equal(r.code, 0, r.stderr);
      const both = await user(`cat '${webDir}/data/hello.txt' '${apiDir}/data/hello.txt'`);
      assert.equal(both.stdout, "a file of web's volume\na file of api's volume\n", both.stderr);
      assert.equal(await mountedAt(apiDir), "tp.default.api:");
      const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
      assert.deepEqual(st.intercepts.mounts.map((m: { workload: string }) => m.workload).sort(), ["api", "web"]);
    });

    await t.step("tp leave unmounts: no mount, no sshfs, no sftp-server left for it", async () => {
      assert.equal(sftpServersIn("web").length, 1);
      const l = await tp(["leave", "web"]);
      assert.equal(l.code, 0, l.stderr);
      assert.equal(await mountedAt(webDir), "");
      await waitFor("web's sftp-server to exit", () => sftpServersIn("web").length === 0);
      assert.equal(await mountedAt(apiDir), "tp.default.api:", "the other workload's mount stays");
      assert.equal(sshfsLeft().length, 1);
      const l2 = await tp(["leave", "api"]);
      assert.equal(l2.code, 0, l2.stderr);
      assert.equal(await mountedAt(apiDir), "");
      assert.deepEqual(sshfsLeft(), []);
      await waitFor("api's sftp-server to exit", () => sftpServersIn("api").length === 0);
    });

    await t.step(
      "tp intercept -- CMD: CMD gets TP_ROOT, reads a pod file through it, and the mount ends with it",
      async () => {
        // No --mount: the default directory, under the user's XDG_RUNTIME_DIR. CMD is the user's (setpriv: tp runs
        // as root here only because the test does; the mount is nobody's and FUSE refuses root).
        const r = await sh.tp([
          "intercept",
          "web",
          "--port",
          `${LOCAL_HTTP}:${HTTP}`,
          "--",
          "setpriv",
          `--reuid=${NOBODY.uid}`,
          `--regid=${NOBODY.gid}`,
          "--clear-groups",
          "--",
          "sh",
          "-c",
          'echo "$TP_ROOT"; cat "$TP_ROOT/data/hello.txt"; exit 3',
        ], { env: { XDG_RUNTIME_DIR: `${home}/run` } });
        assert.equal(r.code, 3, r.stderr);
        assert.equal(r.stdout, `${home}/run/tp/web\na file of web's volume\n`);
        assert.equal(await mountedAt(`${home}/run/tp/web`), "");
        assert.deepEqual(sshfsLeft(), []);
        await waitFor("web's sftp-server to exit", () => sftpServersIn("web").length === 0);
      },
    );

    await t.step("tp quit unmounts: no mount, no sshfs, no sftp-server left", async () => {
      const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", webDir]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await mountedAt(webDir), "tp.default.web:");
      const q = await tp(["quit"]);
      assert.equal(q.code, 0, q.stderr);
      assert.equal(await mountedAt(webDir), "");
      assert.deepEqual(sshfsLeft(), []);
      await waitFor("web's sftp-server to exit", () => sftpServersIn("web").length === 0);
      const c = await sh.tp(["connect", "--manager-url", MANAGER_URL], {
        env: { SUDO_UID: String(NOBODY.uid), SUDO_GID: String(NOBODY.gid) },
      });
      assert.equal(c.code, 0, c.stderr);
    });

    await t.step(
      "kill -9 of the daemon mid-copy: tp quit cleans up; the pod holds only what the copy flushed",
      async () => {
        const r = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", webDir]);
        assert.equal(r.code, 0, r.stderr);
        const src = `${home}/src.bin`;
        const made = await user(`head -c ${100 * MB} /dev/urandom > '${src}'`);
        assert.equal(made.code, 0, made.stderr);
        // A copy paced at 1 MB per 20 ms, so that it is surely still going when the daemon dies.
        const copy = sh.spawn([
          "sh",
          "-c",
          `for i in $(seq 0 99); do dd if='${src}' bs=1M skip=$i count=1 status=none || exit 1; sleep 0.02; done ` +
          `> '${webDir}/data/copy.bin'`,
        ], { user: NOBODY });
        const inPod = `${root("web")}/data/copy.bin`;
        const size = () => Deno.stat(inPod).then((s) => s.size, () => 0);
        await waitFor("20 MB to reach the pod", async () => await size() >= 20 * MB, 60_000);
        const pid = await daemonPid();
        assert.ok(pid);
        Deno.kill(pid, "SIGKILL");
        const out = await copy.output();
        assert.notEqual(out.code, 0, "the copy fails once the daemon is gone");
        await waitFor("sshfs to exit", () => sshfsLeft().length === 0);
        // The manager holds the mount's stream for its resume grace (3 s), then resets it: sftp-server ends.
        await waitFor("web's sftp-server to exit", () => sftpServersIn("web").length === 0);
        const dead = await user(`stat '${webDir}'`);
        assert.match(dead.stderr, /Transport endpoint is not connected/);

        const q = await tp(["quit"]);
        assert.equal(q.code, 0, q.stderr);
        assert.match(q.stderr, /cleaned up after a daemon that ended without tp quit/);
        assert.match(q.stderr, new RegExp(`dead mount ${webDir}`));
        assert.equal(await mountedAt(webDir), "");
        assert.deepEqual(sshfsLeft(), []);
        const n = await size();
        assert.ok(n >= 20 * MB && n < 100 * MB, `the copy stopped part way (${n} bytes in the pod)`);
        const prefix = await exec(["sh", "-c", `head -c ${n} '${src}' | sha256sum`]);
        const pod = await exec(["sha256sum", inPod]);
        assert.equal(
          pod.stdout.split(" ")[0],
          prefix.stdout.split(" ")[0],
          "the pod's file is the source's first bytes",
        );
        const c = await sh.tp(["connect", "--manager-url", MANAGER_URL], {
          env: { SUDO_UID: String(NOBODY.uid), SUDO_GID: String(NOBODY.gid) },
        });
        assert.equal(c.code, 0, c.stderr);
      },
    );

    await t.step("a default mount the agent cannot serve only warns, and the intercept carries traffic", async () => {
      const r = await sh.tp(["intercept", "bare", "--port", `${LOCAL_HTTP}:${HTTP}`], {
        env: { XDG_RUNTIME_DIR: `${home}/run` },
      });
      assert.equal(r.code, 0, r.stderr);
      const warning = r.stderr.split("\n").filter((l) => l.includes("warning"));
      assert.equal(warning.length, 1, r.stderr);
      assert.match(warning[0]!, /--volume-root/);
      await waitFor(
        "bare's connections to reach the workstation",
        async () => await whoAnswers(PODS.bare.ip) === "laptop",
      );
      const l = await tp(["leave", "bare"]);
      assert.equal(l.code, 0, l.stderr);
    });

    await t.step("an explicit --mount DIR the agent cannot serve fails with one line naming the fix", async () => {
      const r = await tp(["intercept", "bare", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", `${home}/bare`]);
      assert.notEqual(r.code, 0);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /--volume-root/);
      assert.equal(await whoAnswers(PODS.bare.ip), "bare", "no intercept is left behind");
      assert.equal(await mountedAt(`${home}/bare`), "");
      // The agent refused the mount in its answer: the daemon started no sshfs and made no mount point.
      await assert.rejects(Deno.stat(`${home}/bare`), Deno.errors.NotFound);
    });
  } finally {
    await shell?.tp(["quit"], { timeoutMs: 15_000 }); // in the namespace of the daemon's mounts: repairs them too
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
