/**
 * Volume mounts end to end without the tunnel: the agent's sftp-server and the workstation's sshfs joined by an
 * in-memory ByteStream pair (and by one that cuts and delays chunks). Needs root, sshfs, sftp-server and FUSE.
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { listMounts, MountError, repairMounts } from "../cli/mount/mod.ts";
import { checkMountRequirements } from "../cli/mount/requirements.ts";
import type { ByteStream } from "../proto/byte_stream.ts";
import type { MemoryPairOptions } from "../proto/byte_stream_memory.ts";
import {
  processesMentioning,
  removeBase,
  running,
  sh,
  sha256,
  TOKEN,
  TOKEN_PATH,
  volumeFixture,
} from "./volumes_fixture.ts";

const MB = 1024 * 1024;
const NOBODY = { uid: 65534, gid: 65534 };
/** Cuts every write into pieces of 1..3000 bytes, each handed over a macrotask later. */
const SPLIT: MemoryPairOptions = { maxPiece: 3000, seed: 7, delay: () => new Promise((r) => setImmediate(r)) };

for (const [label, pair] of [["", {}], [" (chunks cut and delayed)", SPLIT]] as const) {
  Deno.test(`the pod's volumes are listed and read through the mount at their container paths${label}`, async () => {
    const f = await volumeFixture({ pair });
    try {
      assert.equal(await Deno.readTextFile(`${f.dir}/${TOKEN_PATH}`), TOKEN);
      const ls = await sh(`ls '${f.dir}' '${f.dir}/data'`);
      assert.match(ls.stdout, /data\n.*var/s);
      assert.match(ls.stdout, /config\.yaml/);
      const findmnt = await sh(`findmnt -n -o FSTYPE,SOURCE --mountpoint '${f.dir}'`);
      assert.equal(findmnt.stdout.trim().replace(/\s+/g, " "), "fuse.sshfs tp.test:");
    } finally {
      await f.close();
    }
  });

  Deno.test(`a 100 MB file read through the mount has the pod's sha256${label}`, async () => {
    const f = await volumeFixture({ pair });
    try {
      await sh(`head -c ${100 * MB} /dev/urandom > '${f.pod}/data/big.bin'`);
      assert.equal(await sha256(`${f.dir}/data/big.bin`), await sha256(`${f.pod}/data/big.bin`));
    } finally {
      await f.close();
    }
  });

  Deno.test(`a 100 MB file written through the mount appears in the pod with the same sha256${label}`, async () => {
    const f = await volumeFixture({ pair });
    try {
      await sh(`head -c ${100 * MB} /dev/urandom > '${f.base}/local.bin'`);
      const r = await sh(`cp '${f.base}/local.bin' '${f.dir}/data/up.bin'`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256(`${f.pod}/data/up.bin`), await sha256(`${f.base}/local.bin`));
    } finally {
      await f.close();
    }
  });

  Deno.test(`rename, delete, mkdir, chmod, symlink and append through the mount reach the pod${label}`, async () => {
    const f = await volumeFixture({ pair });
    try {
      const d = `${f.dir}/data`;
      const r = await sh([
        `mv '${d}/config.yaml' '${d}/renamed.yaml'`,
        `mkdir '${d}/sub'`,
        `echo one > '${d}/sub/log.txt'`,
        `echo two >> '${d}/sub/log.txt'`,
        `chmod 0640 '${d}/sub/log.txt'`,
        `ln -s sub/log.txt '${d}/link'`,
        `echo bye > '${d}/gone.txt'`,
        `rm '${d}/gone.txt'`,
      ].join(" && "));
      assert.equal(r.code, 0, r.stderr);
      const p = `${f.pod}/data`;
      assert.equal(await Deno.readTextFile(`${p}/renamed.yaml`), "answer: 42\n");
      await assert.rejects(Deno.stat(`${p}/config.yaml`), Deno.errors.NotFound);
      assert.equal(await Deno.readTextFile(`${p}/sub/log.txt`), "one\ntwo\n");
      assert.equal((await Deno.stat(`${p}/sub/log.txt`)).mode! & 0o777, 0o640);
      assert.equal(await Deno.readLink(`${p}/link`), "sub/log.txt");
      assert.equal(await Deno.readLink(`${d}/link`), "sub/log.txt", "a link is a link through the mount");
      assert.equal(await Deno.readTextFile(`${d}/link`), "one\ntwo\n");
      await assert.rejects(Deno.stat(`${p}/gone.txt`), Deno.errors.NotFound);
    } finally {
      await f.close();
    }
  });
}

Deno.test("two mounts at once each show their own pod's volumes", async () => {
  const a = await volumeFixture({ name: "one" });
  try {
    const b = await volumeFixture({ name: "two" });
    try {
      await Deno.writeTextFile(`${a.pod}/data/who`, "pod one");
      await Deno.writeTextFile(`${b.pod}/data/who`, "pod two");
      const [ra, rb] = await Promise.all([sh(`cat '${a.dir}/data/who'`), sh(`cat '${b.dir}/data/who'`)]);
      assert.equal(ra.stdout, "pod one");
      assert.equal(rb.stdout, "pod two");
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
});

Deno.test("a file changed in the pod is seen through the mount", async () => {
  const f = await volumeFixture({ cacheTimeout: 1 });
  try {
    const path = `${f.dir}/data/config.yaml`;
    assert.equal(await Deno.readTextFile(path), "answer: 42\n");
    // The same size: each open reads the pod's bytes again (no kernel_cache), so the change shows at once.
    await Deno.writeTextFile(`${f.pod}/data/config.yaml`, "answer: 43\n");
    assert.equal(await Deno.readTextFile(path), "answer: 43\n");
    // A new size shows once the cached attributes expire (here 1 s): read until then, at most 100 times.
    await Deno.writeTextFile(`${f.pod}/data/config.yaml`, "answer: forty-four\n");
    let seen = "";
    for (let i = 0; i < 100 && seen !== "answer: forty-four\n"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      seen = await Deno.readTextFile(path);
    }
    assert.equal(seen, "answer: forty-four\n");
  } finally {
    await f.close();
  }
});

Deno.test("after unmount() no mount, record, sshfs or sftp-server is left", async () => {
  const f = await volumeFixture({ name: "teardown" });
  let closed = false;
  try {
    assert.equal((await listMounts(f.stateDir))[0]?.state, "mounted");
    const pids = [f.mount.pid, f.sftp.pid];
    assert.equal(await f.mount.unmount(), "unmounted");
    const end = await f.sftp.ended;
    assert.equal(end.stream, "closed", "sshfs's exit half-closes the stream and sftp-server ends cleanly");
    assert.equal((await sh(`findmnt --mountpoint '${f.dir}'`)).code, 1);
    assert.deepEqual(pids.filter(running), []);
    assert.deepEqual(processesMentioning("tp.teardown:"), []);
    assert.deepEqual(await listMounts(f.stateDir), []);
    await f.close();
    closed = true;
  } finally {
    if (!closed) await f.close();
  }
});

Deno.test("a mount for another user belongs to them: stat shows their uid, root is refused", async () => {
  const f = await volumeFixture({ user: NOBODY });
  try {
    assert.equal((await sh(`stat -c %u:%g '${f.dir}/${TOKEN_PATH}'`, NOBODY)).stdout.trim(), "65534:65534");
    assert.equal((await sh(`cat '${f.dir}/${TOKEN_PATH}'`, NOBODY)).stdout, TOKEN);
    assert.equal((await sh(`echo hi > '${f.dir}/data/from-nobody'`, NOBODY)).code, 0);
    assert.equal(await Deno.readTextFile(`${f.pod}/data/from-nobody`), "hi\n");
    const root = await sh(`stat '${f.dir}/data'`);
    assert.match(root.stderr, /Permission denied/);
    const opts = (await sh(`findmnt -n -o OPTIONS --mountpoint '${f.dir}'`)).stdout;
    assert.match(opts, /nosuid/);
    assert.match(opts, /nodev/);
    assert.match(opts, /user_id=65534/);
    const sshfsUser = (await sh(`ps -o user= -p ${f.mount.pid}`)).stdout.trim();
    assert.equal(sshfsUser, "nobody", "sshfs runs as the mount's user, not root");
  } finally {
    await f.close();
  }
});

/** The agent's end, reset by the agent once `after` bytes have come from the workstation. */
function resetAfter(after: number, onReset: () => void): (s: ByteStream) => ByteStream {
  return (s) => {
    let n = 0;
    return {
      async read() {
        const c = await s.read();
        n += c?.length ?? 0;
        if (n > after) {
          s.reset("agent gone");
          onReset();
        }
        return c;
      },
      write: (d) => s.write(d),
      drained: () => s.drained(),
      closeWrite: () => s.closeWrite(),
      reset: (r) => s.reset(r),
    };
  };
}

Deno.test("a stream reset mid-copy leaves a dead mount, which repairMounts() removes", async () => {
  let resetSeen!: () => void;
  const reset = new Promise<void>((r) => (resetSeen = r));
  const f = await volumeFixture({ name: "dead", user: NOBODY, agentStream: resetAfter(20 * MB, () => resetSeen()) });
  try {
    await sh(`head -c ${100 * MB} /dev/urandom > '${f.base}/local.bin' && chmod 644 '${f.base}/local.bin'`);
    const copy = await sh(`cp '${f.base}/local.bin' '${f.dir}/data/up.bin'`, NOBODY);
    await reset;
    assert.notEqual(copy.code, 0, "the copy fails");
    const end = await f.mount.ended;
    assert.equal(end.stream, "reset");
    // Both processes end on their own once the stream is gone; sftp-server may take a moment after sshfs.
    for (let i = 0; i < 100 && (running(f.mount.pid) || running(f.sftp.pid)); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(!running(f.mount.pid) && !running(f.sftp.pid), "sshfs or sftp-server still runs 5 s after the reset");
    const stat = await sh(`stat '${f.dir}'`, NOBODY);
    assert.match(stat.stderr, /Transport endpoint is not connected/);
    assert.equal((await listMounts(f.stateDir))[0]?.state, "dead");
    const written = (await Deno.stat(`${f.pod}/data/up.bin`)).size;
    assert.ok(written <= 20 * MB + MB, `no more than what passed before the reset was written (${written})`);

    // The next start:
    const repaired = await repairMounts(f.stateDir);
    assert.deepEqual(repaired, [{ dir: f.dir, name: "dead", was: "dead", unmounted: "unmounted" }]);
    assert.equal((await sh(`findmnt --mountpoint '${f.dir}'`)).code, 1);
    assert.deepEqual(await listMounts(f.stateDir), []);
    assert.deepEqual(processesMentioning("tp.dead:"), []);
  } finally {
    await f.close();
  }
});

Deno.test("mountSshfs() refuses a mount point that is not an empty directory, and resets the stream", async () => {
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-" });
  try {
    await Deno.mkdir(`${base}/full`);
    await Deno.writeTextFile(`${base}/full/x`, "");
    await Deno.writeTextFile(`${base}/file`, "");
    const { memoryByteStreamPair } = await import("../proto/byte_stream_memory.ts");
    const { mountSshfs } = await import("../cli/mount/mod.ts");
    for (const [dir, why] of [[`${base}/full`, /not empty/], [`${base}/file`, /not a directory/]] as const) {
      const [ws, agent] = memoryByteStreamPair();
      const e = await mountSshfs(ws, dir, { name: "bad", stateDir: `${base}/state` }).catch((e) => e);
      assert.ok(e instanceof MountError && e.code === "mount-point", String(e));
      assert.match(e.message, why);
      assert.match(e.message, /choose an empty directory/);
      await assert.rejects(agent.read()); // reset
    }
  } finally {
    await removeBase(base);
  }
});

Deno.test("mountSshfs() refuses a mount point the user could not mount on themselves", async () => {
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-" });
  try {
    await Deno.chmod(base, 0o755);
    await Deno.mkdir(`${base}/roots`); // root's, 0755: nobody cannot write to it
    await Deno.mkdir(`${base}/sticky`);
    await Deno.chmod(`${base}/sticky`, 0o1777); // writable by all, like /tmp, but not nobody's
    const { memoryByteStreamPair } = await import("../proto/byte_stream_memory.ts");
    const { mountSshfs } = await import("../cli/mount/mod.ts");
    const cases = [
      [`${base}/roots`, /uid 65534 cannot write to it/],
      [`${base}/sticky`, /sticky directory uid 65534 does not own/],
      [`${base}/roots/new`, /Cannot create the mount point as uid 65534: .*Permission denied/],
    ] as const;
    for (const [dir, why] of cases) {
      const [ws] = memoryByteStreamPair();
      const e = await mountSshfs(ws, dir, { name: "notyours", stateDir: `${base}/state`, user: NOBODY })
        .catch((e) => e);
      assert.ok(e instanceof MountError && e.code === "mount-point", String(e));
      assert.match(e.message, why);
      assert.equal((await sh(`findmnt --mountpoint '${dir}'`)).code, 1);
    }
    assert.deepEqual(await listMounts(`${base}/state`), []);
  } finally {
    await removeBase(base);
  }
});

Deno.test("an agent without sftp-server fails the mount with the agent's reason and leaves nothing behind", async () => {
  const base = await Deno.makeTempDir({ prefix: "tp-volumes-" });
  try {
    const { memoryByteStreamPair } = await import("../proto/byte_stream_memory.ts");
    const { mountSshfs } = await import("../cli/mount/mod.ts");
    const { serveSftp } = await import("../agent/sftp.ts");
    const [ws, agent] = memoryByteStreamPair();
    assert.throws(() => serveSftp(agent, { root: base, sftpServer: `${base}/no-sftp-server` }), /sftp-server/);
    const e = await mountSshfs(ws, `${base}/mnt`, { name: "noagent", stateDir: `${base}/state` }).catch((e) => e);
    assert.ok(e instanceof MountError && e.code === "agent", String(e));
    assert.match(e.message, /openssh-sftp-server/);
    assert.equal((await sh(`findmnt --mountpoint '${base}/mnt'`)).code, 1);
    assert.deepEqual(processesMentioning("tp.noagent:"), []);
    assert.deepEqual(await listMounts(`${base}/state`), []);
  } finally {
    await removeBase(base);
  }
});

Deno.test("checkMountRequirements() names the fix when sshfs or FUSE is missing", () => {
  assert.throws(() => checkMountRequirements(0, { path: "/nonexistent" }), (e) => {
    return e instanceof MountError && e.code === "no-sshfs" && /apt-get install sshfs/.test(e.message);
  });
  assert.throws(() => checkMountRequirements(0, { fuseDevice: "/nonexistent/fuse" }), (e) => {
    return e instanceof MountError && e.code === "no-fuse" && /modprobe fuse/.test(e.message);
  });
});

Deno.test("after kill -9 of the process that made the mount, repairMounts() removes the dead mount; no process is left", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("./volumes_kill_child.ts", import.meta.url).pathname, String(NOBODY.uid)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    line += value;
  }
  const info = JSON.parse(line) as {
    base: string;
    dir: string;
    pod: string;
    stateDir: string;
    pids: { sshfs: number; sftpServer: number; cp: number };
  };
  try {
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    // sshfs and sftp-server lose their pipes and exit on their own; they are not this test's children, so their end
    // is polled (at most 10 s).
    const pids = Object.values(info.pids);
    for (let i = 0; i < 200 && pids.some(running); i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(pids.filter(running), [], "sshfs, sftp-server and the copy ended");
    assert.match((await sh(`stat '${info.dir}'`, NOBODY)).stderr, /Transport endpoint is not connected/);
    const written = (await Deno.stat(`${info.pod}/data/up.bin`)).size;
    assert.ok(written < 100 * MB, `the copy stopped part way (${written} bytes in the pod)`);

    assert.deepEqual(await repairMounts(info.stateDir), [{
      dir: info.dir,
      name: "killed",
      was: "dead",
      unmounted: "unmounted",
    }]);
    assert.equal((await sh(`findmnt --mountpoint '${info.dir}'`)).code, 1);
    assert.deepEqual(processesMentioning("tp.killed:"), []);
  } finally {
    await removeBase(info.base);
  }
});
