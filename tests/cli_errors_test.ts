/**
 * The errors a user meets before tp has done anything: each is one line naming the cause and the fix, and tp repairs
 * what it owns. Run as root, with tp run as the user nobody where the error is a non-root user's.
 */
import assert from "node:assert/strict";
import { exec, requireRoot, requireTools, ROOT } from "./lab.ts";
import { tpAsNobody } from "./as_user.ts";

/** A scratch directory that every user can enter, removed by `done`. */
async function scratch(): Promise<{ dir: string; done: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "tp-errors-" });
  await Deno.chmod(dir, 0o755);
  return { dir, done: () => Deno.remove(dir, { recursive: true }) };
}

function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  return lines[0]!;
}

const tpAsRoot = (args: string[], stateDir: string) =>
  exec([Deno.execPath(), "run", "--allow-all", "--quiet", "--cached-only", `${ROOT}/cli/main.ts`, ...args], {
    timeoutMs: 60_000,
    env: { ...Deno.env.toObject(), TP_STATE_DIR: stateDir, NO_COLOR: "1" },
  });

Deno.test("a state directory root left with mode 0700 is named with its fix, and sudo tp quit repairs it", async () => {
  const s = await scratch();
  try {
    const stateDir = `${s.dir}/state`;
    await Deno.mkdir(stateDir, { mode: 0o700 });
    await Deno.chmod(stateDir, 0o700);
    await Deno.writeTextFile(`${stateDir}/daemon.log`, "an earlier run as root\n");
    for (const cmd of ["status", "quit"]) {
      const r = await tpAsNobody([cmd], { stateDir, scratch: s.dir });
      assert.equal(r.code, 1, r.stderr);
      const line = oneLine(r.stderr);
      assert.ok(line.startsWith(`tp: cannot use tp's state directory ${stateDir} as uid 65534:`), line);
      assert.match(line, /belongs to root with mode 0700/);
      assert.match(line, new RegExp(`run "sudo tp quit", which repairs it, or "sudo chmod 755 ${stateDir}"`));
    }
    const root = await tpAsRoot(["quit"], stateDir);
    assert.equal(root.code, 0, root.stderr);
    assert.match(root.stderr, new RegExp(`repaired tp's state directory ${stateDir}: mode 0700 -> 0755`));
    assert.equal((await Deno.stat(stateDir)).mode! & 0o777, 0o755);
    const after = await tpAsNobody(["status"], { stateDir, scratch: s.dir });
    assert.equal(after.code, 3, after.stderr);
    assert.equal(after.stdout.trim(), "tp: not connected");
  } finally {
    await s.done();
  }
});

Deno.test("a non-root tp connect names a locked state directory, then why sudo cannot start the daemon", async () => {
  requireTools("sudo");
  const s = await scratch();
  try {
    const stateDir = `${s.dir}/state`;
    await Deno.mkdir(stateDir, { mode: 0o700 });
    await Deno.chmod(stateDir, 0o700);
    const r = await tpAsNobody(["connect", "--manager-url", "http://198.18.0.2:9"], { stateDir, scratch: s.dir });
    assert.equal(r.code, 1, r.stderr);
    const [dirLine, sudoLine, ...rest] = r.stderr.trimEnd().split("\n");
    assert.deepEqual(rest, [], r.stderr);
    assert.match(dirLine!, new RegExp(`^tp: cannot use tp's state directory ${stateDir} .*mode 0700.*; repairing it$`));
    assert.match(sudoLine!, /^tp: the daemon needs root, and sudo asks for a password but there is no terminal/);
  } finally {
    await s.done();
  }
});

Deno.test("a non-root tp connect without sudo says sudo is missing and what to do instead", async () => {
  const s = await scratch();
  try {
    const r = await tpAsNobody(["connect", "--manager-url", "http://198.18.0.2:9"], {
      stateDir: `${s.dir}/state`,
      scratch: s.dir,
      path: `${s.dir}/empty-path`,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      oneLine(r.stderr),
      "tp: the daemon needs root to create a network interface, and sudo is not installed (not on PATH): run tp " +
        "connect as root, or install sudo",
    );
  } finally {
    await s.done();
  }
});

Deno.test("a non-root tp connect whose sudo wants a password, with no terminal, says so in one line", async () => {
  requireTools("sudo");
  const s = await scratch();
  try {
    const r = await tpAsNobody(["connect", "--manager-url", "http://198.18.0.2:9"], {
      stateDir: `${s.dir}/state`,
      scratch: s.dir,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      oneLine(r.stderr),
      "tp: the daemon needs root, and sudo asks for a password but there is no terminal to type it at: run tp " +
        "connect in a terminal, run sudo -v first, or run tp connect as root",
    );
  } finally {
    await s.done();
  }
});

Deno.test("tp connect on a machine without /dev/net/tun fails at once, saying how to get it", async () => {
  requireRoot();
  requireTools("unshare", "mount");
  const s = await scratch();
  try {
    // A private mount namespace where /dev/net is an empty tmpfs: the machine's own /dev is untouched.
    const r = await exec([
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount -t tmpfs tmpfs /dev/net && exec "$@"',
      "sh",
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      "--cached-only",
      `${ROOT}/cli/main.ts`,
      "connect",
      "--foreground",
      "--manager-url",
      "http://198.18.0.2:9",
    ], { timeoutMs: 60_000, env: { ...Deno.env.toObject(), TP_STATE_DIR: `${s.dir}/state`, NO_COLOR: "1" } });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      oneLine(r.stderr),
      "tp: /dev/net/tun is missing: load the tun module (modprobe tun), or in a container run with --device " +
        "/dev/net/tun",
    );
  } finally {
    await s.done();
  }
});
