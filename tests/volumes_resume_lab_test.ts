/**
 * A mounted volume across a broken workstation link, on the lab through the REAL tunnel (as volumes_lab_test.ts: `tp
 * manager`, a lab pod running the app and `tp agent --volume-root`, one workstation mount namespace, the mount for
 * nobody). A reader (as nobody) sits in the mount with two files open (`exec 3<big.bin 4<hello.txt`), has read the
 * first 8 MB of the 64 MB file, and reads the rest once told to, while the workstation's end of the link is down:
 * - within the manager's resume grace: the read waits through the cut and then finishes: the whole file's hash is the
 *   pod's, no "Transport endpoint is not connected", the other open file reads; the mount was never made again (the
 *   same sshfs, `tp status` says mounted, no "made again", nothing in the daemon's log about its stream ending), and
 *   tp counts the mount's stream among the connections that carried on;
 * - past the grace (--resume-grace 2s): today's fallback: the mount's stream is reset, the open files see "Transport
 *   endpoint is not connected", and the mount is made again once the link is back (the dead one detached lazily: the
 *   reader's shell still sits in it), where the file reads with the pod's hash.
 * Real processes throughout: tp manager, tp agent and its sftp-server, tp's daemon and sshfs, the kernel's FUSE.
 */
import assert from "node:assert/strict";
import { LAB, requireRoot, requireTools } from "./lab.ts";
import {
  type ClusterProcess,
  forceQuit,
  type LabManager,
  MANAGER_URL,
  setWorkstationLink,
  startLabManager,
  STATE_DIR,
} from "./connect_fixture.ts";
import { inNetns, processes } from "./volumes_fixture.ts";
import { sha256 as sha256Of } from "./manager_fixture.ts";
import { type LabPod, startPod, waitFor } from "./lab_pod.ts";
import { startWorkstationShell, type User, type WorkstationShell } from "./ws_shell.ts";

const MB = 1 << 20;
const NOBODY: User = { uid: 65534, gid: 65534 };
const POD = { index: 0, ip: "198.19.128.20" };
const HTTP = 8080, TCP = 7007, AGENT_HTTP = 9080, AGENT_TCP = 9007, LOCAL_HTTP = 18080;
const HELLO = "a file of web's volume\n";

/**
 * The reader, as nobody in the workstation's mount namespace: $1 the mount, $2 where its copy goes, $3 a FIFO that
 * tells it to read on. It says "started" once it holds both files and read the first 8 MB.
 */
const READER = `cd "$1/data" || exit 9
exec 3<big.bin 4<hello.txt || exit 9
dd bs=1M count=8 iflag=fullblock <&3 >"$2" 2>/dev/null || exit 9
echo started
read go <"$3"
cat <&3 >>"$2" || echo "read failed"
cat <&4 || echo "read failed"
echo end`;

/** The hex SHA-256 of `data`. */
const sha256 = (data: Uint8Array) => sha256Of([data]);

/** The first line a process writes to stdout; the rest of its output (with the first line) when it exits. */
function lines(child: Deno.ChildProcess) {
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  let text = "";
  const first = (async () => {
    while (!text.includes("\n")) {
      const r = await stdout.read();
      if (r.done) break;
      text += r.value;
    }
    return text.split("\n")[0]!;
  })();
  const all = first.then(async () => {
    for (let r = await stdout.read(); !r.done; r = await stdout.read()) text += r.value;
    return { stdout: text, stderr: await stderr, status: await child.status };
  });
  return { first, all };
}

/** A manager with `extra` flags, the pod and its agent, tp connected for nobody, web intercepted with its mount. */
async function setUp(extra: string[]) {
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-resume-" });
  await Deno.chmod(base, 0o755);
  const root = `${base}/pod-web`, home = `${base}/home`;
  await Deno.mkdir(`${root}/data`, { recursive: true });
  await Deno.mkdir(home);
  await Deno.chown(home, NOBODY.uid, NOBODY.gid);
  const big = new Uint8Array(64 * MB);
  for (let o = 0; o < big.length; o += 65536) crypto.getRandomValues(big.subarray(o, o + 65536));
  await Deno.writeFile(`${root}/data/big.bin`, big);
  await Deno.writeTextFile(`${root}/data/hello.txt`, HELLO);
  const fifo = `${home}/go`;
  let manager: LabManager | undefined, pod: LabPod | undefined, agent: ClusterProcess | undefined;
  let shell: WorkstationShell | undefined;
  const tearDown = async () => {
    await setWorkstationLink("up").catch(() => {});
    await shell?.tp(["quit"], { timeoutMs: 15_000 });
    await forceQuit();
    await shell?.stop();
    await agent?.stop();
    await pod?.stop();
    await manager?.stop();
    await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
    await Deno.remove(base, { recursive: true }).catch(() => {});
  };
  try {
    manager = await startLabManager(extra);
    shell = await startWorkstationShell();
    const sh = shell;
    await forceQuit();
    pod = await startPod({ name: "web", index: POD.index, podIp: POD.ip, httpPort: HTTP, tcpPort: TCP });
    agent = await pod.startAgent({
      managerUrl: MANAGER_URL,
      workload: "web",
      forwards: [`${AGENT_HTTP}:${HTTP}`, `${AGENT_TCP}:${TCP}`],
      extra: ["--volume-root", root],
    });
    const c = await sh.tp(["connect", "--manager-url", MANAGER_URL], {
      env: { SUDO_UID: String(NOBODY.uid), SUDO_GID: String(NOBODY.gid) },
    });
    assert.equal(c.code, 0, c.stderr);
    const dir = `${home}/web`;
    const r = await sh.tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount", dir]);
    assert.equal(r.code, 0, r.stderr);
    const mkfifo = await sh.run(["mkfifo", fifo], { user: NOBODY });
    assert.equal(mkfifo.code, 0, mkfifo.stderr);
    const status = async () => JSON.parse((await sh.tp(["status", "-o", "json"])).stdout);
    return {
      sh,
      dir,
      copy: `${home}/copy.bin`,
      bigHash: await sha256(big),
      status,
      mountState: async () => (await status()).intercepts?.mounts?.[0],
      sshfs: () => processes("sshfs", (pid) => sh.holds(pid)),
      sftpServers: () => processes("sftp-server", (pid) => inNetns(pid, `${LAB.id}-pod-web`)),
      daemonLog: () => Deno.readTextFile(`${STATE_DIR}/daemon.log`).catch(() => ""),
      /** Starts the reader and waits until it holds the files. */
      reader: async () => {
        const child = sh.spawn(["sh", "-c", READER, "reader", dir, `${home}/copy.bin`, fifo], { user: NOBODY });
        let exited = false;
        child.status.then(() => (exited = true));
        const out = lines(child);
        assert.equal(await out.first, "started", "the reader holds the files");
        return { all: out.all, exited: () => exited, readOn: () => Deno.writeTextFile(fifo, "go\n") };
      },
      /** A shell that sits in the mount (its working directory) until killed. */
      sitter: () => sh.spawn(["sh", "-c", `cd '${dir}/data' && exec sleep 300`], { user: NOBODY }),
      tearDown,
    };
  } catch (e) {
    await tearDown();
    throw e;
  }
}

Deno.test({
  name: "files held open in a mounted volume keep working across a short link cut: the mount only pauses",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  requireRoot();
  requireTools("sshfs", "findmnt", "nsenter", "setpriv", "mkfifo", "dd");
  const x = await setUp([]);
  try {
    const [sshfsBefore] = x.sshfs();
    assert.ok(sshfsBefore, "sshfs serves the mount");
    const r = await x.reader();
    let upAt = 0;
    await setWorkstationLink("down");
    try {
      await waitFor("tp to notice the cut", async () => (await x.status()).manager.state === "reconnecting");
      await r.readOn(); // the rest of the file is read while the link is down
      // The mount's stream is suspended, not reset: sshfs waits, and so does the read.
      assert.equal((await x.mountState()).state, "mounted");
      await new Promise((res) => setTimeout(res, 2_000)); // the cut's length (no assertion waits on it)
      assert.equal(r.exited(), false, "the read waits for the link, it does not fail");
      assert.equal((await x.mountState()).state, "mounted");
    } finally {
      await setWorkstationLink("up");
      upAt = Date.now();
    }
    const out = await r.all;
    console.log(`link back -> the held file's read finished: ${Date.now() - upAt} ms`);
    assert.equal(out.status.code, 0, out.stderr);
    assert.doesNotMatch(out.stderr, /Transport endpoint is not connected/);
    assert.equal(out.stdout, `started\n${HELLO}end\n`, `no read failed: ${out.stderr}`);
    assert.equal(await sha256(await Deno.readFile(x.copy)), x.bigHash, "the file read across the cut is the pod's");
    const st = await x.status();
    assert.equal(st.manager.lastReconnect?.kind, "resumed");
    assert.ok(Number(st.manager.streamsResumed) >= 1, "the mount's stream carried on");
    assert.equal(st.manager.streamsLost, 0);
    const m = await x.mountState();
    assert.equal(m.state, "mounted");
    assert.equal(m.remounts, 0, "the mount was not made again");
    assert.match((await x.sh.tp(["status"])).stdout, new RegExp(`web's volumes at ${x.dir}: mounted$`, "m"));
    assert.doesNotMatch(await x.daemonLog(), /its stream ended|mounted web's volumes again/);
    assert.deepEqual(x.sshfs(), [sshfsBefore], "the same sshfs serves it");
    assert.equal(x.sftpServers().length, 1, "one sftp-server in the pod");
    const again = await x.sh.run(["sha256sum", `${x.dir}/data/big.bin`], { user: NOBODY });
    assert.equal(again.stdout.split(" ")[0], x.bigHash, again.stderr);
  } finally {
    await x.tearDown();
  }
});

Deno.test({
  name: "a mounted volume whose link stays down past the resume grace is made again once the link is back",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  requireRoot();
  requireTools("sshfs", "findmnt", "nsenter", "setpriv", "mkfifo", "dd");
  const x = await setUp(["--resume-grace", "2s"]);
  const sitter = x.sitter();
  try {
    const r = await x.reader();
    await setWorkstationLink("down");
    try {
      await waitFor("tp to notice the cut", async () => (await x.status()).manager.state === "reconnecting");
      await r.readOn();
      // Past the grace the daemon resets what cannot resume: sshfs exits, the mount is dead.
      await waitFor(
        "the mount to say reconnecting",
        async () => (await x.mountState()).state === "reconnecting",
        30_000,
      );
      assert.match((await x.mountState()).reason, /its stream ended/);
    } finally {
      await setWorkstationLink("up");
    }
    const out = await r.all;
    console.log(`the reader's errors: ${out.stderr.trim()}`);
    // Both open files fail: a read under way when the stream went fails (EIO from sshfs, or aborted when it exits),
    // and the mount is dead after (ENOTCONN).
    assert.equal(out.stdout.match(/read failed/g)?.length, 2, out.stdout);
    assert.match(
      out.stderr,
      /Input\/output error|Software caused connection abort|Transport endpoint is not connected/,
    );
    await waitFor("the mount to be made again", async () => (await x.mountState()).remounts === 1, 30_000);
    assert.equal((await x.mountState()).state, "mounted");
    const log = await x.daemonLog();
    assert.match(log, /mounted web's volumes again at/);
    assert.match(log, /detached lazily/, "the reader's shell sat in the dead mount");
    assert.equal(x.sshfs().length, 1, "one sshfs: the dead one is gone");
    const again = await x.sh.run(["sha256sum", `${x.dir}/data/big.bin`], { user: NOBODY });
    assert.equal(again.stdout.split(" ")[0], x.bigHash, again.stderr);
  } finally {
    try {
      sitter.kill("SIGKILL");
    } catch { /* gone */ }
    await sitter.output();
    await x.tearDown();
  }
});
