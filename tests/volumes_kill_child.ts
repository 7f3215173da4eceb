/**
 * Stands for tp's daemon in volumes_test.ts's kill -9 test: mounts a pod's volumes (tests/volumes_fixture.ts), starts
 * copying a 100 MB file into the mount, prints the paths and pids as one JSON line once 10 MB have reached the agent,
 * and waits to be killed. Argument: the user's uid (the mount's owner).
 */
import type { ByteStream } from "../proto/byte_stream.ts";
import { volumeFixture } from "./volumes_fixture.ts";

const uid = Number(Deno.args[0] ?? "0");
const MB = 1024 * 1024;
let announce!: () => void;
const passed10MB = new Promise<void>((r) => (announce = r));
const counting = (s: ByteStream): ByteStream => {
  let n = 0;
  return {
    async read() {
      const c = await s.read();
      n += c?.length ?? 0;
      if (n > 10 * MB) announce();
      return c;
    },
    write: (d) => s.write(d),
    drained: () => s.drained(),
    closeWrite: () => s.closeWrite(),
    reset: (r) => s.reset(r),
  };
};
const f = await volumeFixture({ name: "killed", user: { uid, gid: uid }, agentStream: counting });
const src = `${f.base}/local.bin`;
await new Deno.Command("sh", { args: ["-c", `head -c ${100 * MB} /dev/urandom > '${src}' && chmod 644 '${src}'`] })
  .output();
const cp = new Deno.Command("cp", { args: [src, `${f.dir}/data/up.bin`], uid, gid: uid, stderr: "null" }).spawn();
await passed10MB;
console.log(JSON.stringify({
  base: f.base,
  dir: f.dir,
  pod: f.pod,
  stateDir: f.stateDir,
  pids: { sshfs: f.mount.pid, sftpServer: f.sftp.pid, cp: cp.pid },
}));
await new Promise(() => {}); // until killed
