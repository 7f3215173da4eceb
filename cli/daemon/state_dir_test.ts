import assert from "node:assert/strict";
import { checkStateDir, noSymlinkAt, stateDirProblem } from "./state_dir.ts";

/** A scratch directory under /tmp (root's, mode 0700), removed by `done`; these tests run as root. */
async function scratch(): Promise<{ dir: string; done: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "tp-state-dir-" });
  return { dir, done: () => Deno.remove(dir, { recursive: true }) };
}

function requireRoot(): void {
  if (Deno.uid() !== 0) throw new Error("This test needs root (it gives files to other users): run it as root");
}

Deno.test({
  name: "stateDirProblem() accepts root's directories, missing ones under them, and a sticky /tmp as a parent",
  fn: async () => {
    requireRoot();
    const s = await scratch();
    try {
      assert.equal(stateDirProblem("/run"), null);
      assert.equal(stateDirProblem(s.dir), null);
      assert.equal(stateDirProblem(`${s.dir}/not/yet`), null);
    } finally {
      await s.done();
    }
  },
});

Deno.test({
  name: "stateDirProblem() names a directory, or a parent, that another user owns or may write, and a user's symlink",
  fn: async () => {
    requireRoot();
    const s = await scratch();
    try {
      await Deno.mkdir(`${s.dir}/theirs`);
      await Deno.chown(`${s.dir}/theirs`, 4242, 4242);
      assert.equal(stateDirProblem(`${s.dir}/theirs`), `it belongs to uid 4242`);
      assert.equal(stateDirProblem(`${s.dir}/theirs/state`), `its parent ${s.dir}/theirs belongs to uid 4242`);
      await Deno.mkdir(`${s.dir}/open`);
      await Deno.chmod(`${s.dir}/open`, 0o777);
      assert.equal(stateDirProblem(`${s.dir}/open`), `it may be written by other users (mode 0777)`);
      assert.equal(
        stateDirProblem(`${s.dir}/open/x`),
        `its parent ${s.dir}/open may be written by other users (mode 0777)`,
      );
      await Deno.chmod(`${s.dir}/open`, 0o1777);
      assert.equal(stateDirProblem(`${s.dir}/open/x`), null, "sticky: others cannot replace root's entry");
      await Deno.symlink(`${s.dir}/theirs`, `${s.dir}/link`);
      // No Deno.lchown: chown -h changes the symlink's own owner.
      await new Deno.Command("chown", { args: ["-h", "4242:4242", `${s.dir}/link`] }).output();
      assert.equal(stateDirProblem(`${s.dir}/link`), `${s.dir}/link is a symlink that belongs to uid 4242`);
      assert.equal(stateDirProblem("run/tp"), "it is not an absolute path");
      assert.equal(stateDirProblem("/run/../tmp"), `it has a ".." in it`);
      assert.throws(() => checkStateDir(`${s.dir}/theirs`), {
        name: "UnsafeStateDirError",
        message: new RegExp(`^refusing the state directory ${s.dir}/theirs \\(TP_STATE_DIR\\): it belongs to uid 4242`),
      });
    } finally {
      await s.done();
    }
  },
});

Deno.test("noSymlinkAt() removes a symlink so the write that follows creates a file, and leaves a file alone", async () => {
  const s = await scratch();
  try {
    await Deno.writeTextFile(`${s.dir}/target`, "keep");
    await Deno.symlink(`${s.dir}/target`, `${s.dir}/log`);
    noSymlinkAt(`${s.dir}/log`);
    await Deno.writeTextFile(`${s.dir}/log`, "new", { append: true });
    assert.equal(await Deno.readTextFile(`${s.dir}/target`), "keep");
    assert.ok((await Deno.lstat(`${s.dir}/log`)).isFile);
    noSymlinkAt(`${s.dir}/log`);
    noSymlinkAt(`${s.dir}/missing`);
    assert.equal(await Deno.readTextFile(`${s.dir}/log`), "new");
  } finally {
    await s.done();
  }
});
