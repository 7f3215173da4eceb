import assert from "node:assert/strict";
import { KeptMount, type LiveMount, type OpenedStream } from "./kept_mount.ts";
import type { UnmountResult } from "../mount/mod.ts";

/** A mount double: `end()` is sshfs exiting; `unmount()` records the call. */
class FakeMount implements LiveMount {
  exited = false;
  unmounted = 0;
  readonly ended: Promise<{ reason: string }>;
  #end!: (e: { reason: string }) => void;
  constructor(readonly dir: string, readonly n: number) {
    this.ended = new Promise((r) => (this.#end = r));
  }
  end(reason: string): void {
    this.exited = true;
    this.#end({ reason });
  }
  unmount(): Promise<UnmountResult> {
    this.unmounted++;
    if (!this.exited) this.end("unmounted");
    return Promise.resolve("unmounted");
  }
}

class FakeStream implements OpenedStream {
  resetWith: string | undefined;
  reset(reason: string): void {
    this.resetWith = reason;
  }
}

/** A KeptMount over doubles: `link` says whether the link is up, `opens` what each open does (the last repeats). */
function fixture(opts: { link?: boolean; opens?: ("ok" | string)[]; delays?: number[] } = {}) {
  const mounts = [new FakeMount("/mnt/web", 0)];
  const state = { link: opts.link ?? true, opened: 0, log: [] as string[] };
  const opens = opts.opens ?? ["ok"];
  const kept = new KeptMount<FakeStream, FakeMount>("default", "web", mounts[0]!, {
    open: () => {
      const what = opens[Math.min(state.opened++, opens.length - 1)]!;
      return what === "ok" ? Promise.resolve(new FakeStream()) : Promise.reject(new Error(what));
    },
    mount: (_stream, dir) => {
      const m = new FakeMount(dir, mounts.length);
      mounts.push(m);
      return Promise.resolve(m);
    },
    linkUp: () => state.link,
    log: (l) => state.log.push(l),
  }, opts.delays ?? [1, 1, 1]);
  return { kept, mounts, state };
}

async function until(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(f(), `timed out waiting for ${what}`);
}

Deno.test("KeptMount: a stream lost with the link waits in reconnecting, and linkBack mounts again at the same dir", async () => {
  const { kept, mounts, state } = fixture({ link: false });
  mounts[0]!.end("stream reset: session closed");
  await until("reconnecting", () => kept.state === "reconnecting");
  assert.match(kept.status().reason!, /session closed/);
  assert.equal(state.opened, 0, "nothing is tried while the link is down");
  state.link = true;
  kept.linkBack(true);
  await until("mounted again", () => kept.state === "mounted");
  assert.equal(mounts.length, 2);
  assert.equal(mounts[0]!.unmounted, 1, "the dead mount was unmounted");
  assert.equal(kept.current, mounts[1]);
  assert.equal(kept.dir, "/mnt/web");
  assert.deepEqual({ ...kept.status(), since: "" }, {
    namespace: "default",
    workload: "web",
    dir: "/mnt/web",
    state: "mounted",
    since: "",
    remounts: 1,
    alive: true,
  });
  assert.ok(state.log.some((l) => /mounted web's volumes again at \/mnt\/web/.test(l)), state.log.join("\n"));
  await kept.close();
  assert.equal(mounts[1]!.unmounted, 1);
});

Deno.test("KeptMount: linkBack before sshfs noticed its stream went remounts all the same", async () => {
  const { kept, mounts } = fixture();
  kept.linkBack(true);
  assert.equal(kept.state, "reconnecting");
  setTimeout(() => mounts[0]!.end("stream reset: session closed"), 20);
  await until("mounted again", () => kept.state === "mounted" && mounts.length === 2);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(mounts.length, 2, "one remount, not two");
  await kept.close();
});

Deno.test("KeptMount: linkBack leaves a mount whose stream rides the new connection alone", async () => {
  const { kept, mounts, state } = fixture();
  kept.linkBack(false);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(state.opened, 0);
  assert.equal(kept.state, "mounted");
  await kept.close();
  assert.equal(mounts[0]!.unmounted, 1);
});

Deno.test("KeptMount: a stream that ends while the link is up is retried; the dead mount stays until a new stream opens", async () => {
  const { kept, mounts, state } = fixture({ opens: ["no agent of web is connected", "still none", "ok"] });
  mounts[0]!.end("stream reset: agent gone");
  await until("mounted again", () => kept.state === "mounted" && mounts.length === 2);
  assert.equal(state.opened, 3);
  assert.equal(mounts[0]!.unmounted, 1);
  await kept.close();
});

Deno.test("KeptMount: after the last retry the mount has failed, with the reason, and the dead mount is kept for leave", async () => {
  const { kept, mounts, state } = fixture({ opens: ["the agent refused the mount"] });
  mounts[0]!.end("stream reset: sftp-server exited with code 1");
  await until("failed", () => kept.state === "failed");
  assert.equal(state.opened, 4, "the first try and three retries");
  assert.equal(kept.status().reason, "the agent refused the mount");
  assert.equal(kept.status().alive, false);
  assert.equal(mounts[0]!.unmounted, 0, "a dead mount says so (ENOTCONN) rather than showing an empty directory");
  await kept.close();
  assert.equal(mounts[0]!.unmounted, 1);
});

Deno.test("KeptMount: close() during the retries stops them and unmounts", async () => {
  const { kept, mounts, state } = fixture({ opens: ["not yet"], delays: [10_000] });
  mounts[0]!.end("stream reset");
  await until("the first try", () => state.opened === 1);
  await kept.close();
  assert.equal(state.opened, 1);
  assert.equal(mounts[0]!.unmounted, 1);
});

Deno.test("KeptMount: a stream opened for a remount is reset when the dead mount cannot be unmounted", async () => {
  const dead = new FakeMount("/mnt/web", 0);
  dead.unmount = () => {
    dead.unmounted++;
    return Promise.reject(new Error(`Cannot unmount "/mnt/web": device is busy`));
  };
  const streams: FakeStream[] = [];
  const kept = new KeptMount<FakeStream, FakeMount>("default", "web", dead, {
    open: () => {
      const s = new FakeStream();
      streams.push(s);
      return Promise.resolve(s);
    },
    mount: (stream) => {
      stream.reset("sshfs failed"); // as the hook's contract says: a mount that throws has reset its stream
      return Promise.reject(new Error("sshfs failed"));
    },
    linkUp: () => true,
    log: () => {},
  }, []);
  dead.end("stream reset: sftp-server exited");
  await until("failed", () => kept.state === "failed");
  assert.equal(streams.length, 1);
  assert.ok(streams[0]!.resetWith !== undefined, "the stream no mount rides is reset, not left open at the agent");
  assert.match(kept.status().reason!, /device is busy/);
  await kept.close().catch(() => {});
});

Deno.test("KeptMount: a dead mount that would not unmount is tried again on every attempt, and the last failure names it", async () => {
  const dead = new FakeMount("/mnt/web", 0);
  dead.unmount = () => {
    dead.unmounted++;
    return Promise.reject(new Error(`Cannot unmount "/mnt/web": device is busy`));
  };
  const kept = new KeptMount<FakeStream, FakeMount>("default", "web", dead, {
    open: () => Promise.resolve(new FakeStream()),
    mount: (stream) => {
      stream.reset("sshfs failed");
      return Promise.reject(new Error("sshfs: mountpoint is not empty"));
    },
    linkUp: () => true,
    log: () => {},
  }, [1, 1]);
  dead.end("stream reset: sftp-server exited");
  await until("failed", () => kept.state === "failed");
  assert.equal(dead.unmounted, 3, "each of the 3 attempts tried the unmount again, none ran sshfs over the dead mount");
  assert.match(kept.status().reason!, /device is busy/);
  await kept.close().catch(() => {});
});
