/**
 * The sudo rule, end to end: a user who is not root (nobody) runs `tp connect`, which starts the root daemon through
 * the machine's real sudo (nobody's NOPASSWD rule lives in a sudoers file bind-mounted in a private mount namespace,
 * tests/as_user.ts), and everything the kubeconfig names is read and run as nobody: an auth-provider's command, token,
 * certificate, key and CA files only nobody may read, an exec plugin run again when the daemon reconnects. A
 * kubeconfig root could read but nobody cannot is refused. The API server is the test double in the lab's cluster
 * namespace (tests/k8s_lab_double.ts), port-forwarding to the lab's traffic-manager.
 */
import assert from "node:assert/strict";
import { asNobody, NOBODY, tpArgv, tpAsNobody } from "./as_user.ts";
import { forceQuit, LAB, startLabManager, STATE_DIR, tp } from "./connect_fixture.ts";
import { ensureLab } from "./lab.ts";
import { type Double, startDouble } from "./k8s_lab_double.ts";

/** A folder every user can enter, for nobody's files and the deno cache's mount point. */
async function scratch(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tp-as-user-" });
  await Deno.chmod(dir, 0o755);
  return dir;
}

/** Writes a file only nobody may read (mode 0600, or 0700 for a command). */
async function nobodysFile(path: string, text: string, mode = 0o600): Promise<string> {
  await Deno.writeTextFile(path, text);
  await Deno.chmod(path, mode);
  await Deno.chown(path, NOBODY, NOBODY);
  return path;
}

/** The bearer token the double takes (its kubeconfig's). */
async function doubleToken(double: Double): Promise<string> {
  return JSON.parse(await Deno.readTextFile(`${double.dir}/kubeconfig`)).users[0].user.token;
}

/** The double's kubeconfig with another user (and optionally another cluster entry), as nobody's file. */
async function kubeconfig(
  double: Double,
  path: string,
  user: Record<string, unknown>,
  cluster?: Record<string, unknown>,
): Promise<string> {
  const k = JSON.parse(await Deno.readTextFile(`${double.dir}/kubeconfig`));
  k.users[0].user = user;
  if (cluster) k.clusters[0].cluster = { server: k.clusters[0].cluster.server, ...cluster };
  return await nobodysFile(path, JSON.stringify(k));
}

/** `tp ARGS` as nobody in the lab's workstation namespace, sudo allowed. */
function nobodyTp(args: string[], dir: string) {
  return tpAsNobody(args, { stateDir: STATE_DIR, scratch: dir, sudo: true, netns: LAB.namespaces.workstation });
}

const connectArgs = (config: string) => ["connect", "--kubeconfig", config, "--context", "lab", "-n", "default"];

Deno.test("an auth-provider's command runs as the user who ran tp connect through sudo, never as root", async () => {
  const manager = await startLabManager();
  const double = await startDouble();
  const dir = await scratch();
  const owned = `/tmp/owned-${crypto.randomUUID()}`;
  try {
    const cmd = await nobodysFile(
      `${dir}/gcloud.sh`,
      `#!/bin/sh\ntouch ${owned}\necho '{"token":"${await doubleToken(double)}","expiry":"2099-01-01T00:00:00Z"}'\n`,
      0o700,
    );
    const config = await kubeconfig(double, `${dir}/config`, {
      "auth-provider": { name: "gcp", config: { "cmd-path": cmd, "token-key": "{.token}", "expiry-key": "{.expiry}" } },
    });
    const c = await nobodyTp(connectArgs(config), dir);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stderr, /starting it with sudo/);
    assert.match(c.stderr, /port-forward to pod "tp-manager-7c9d"/);
    const made = await Deno.stat(owned);
    assert.equal(made.uid, NOBODY, `the auth-provider's command ran as uid ${made.uid}`);
    const st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.equal(st.manager.portForward.context, "lab");
    assert.equal((await nobodyTp(["quit"], dir)).code, 0);
  } finally {
    await forceQuit();
    await double.stop();
    await manager.stop();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(owned).catch(() => {});
  }
});

Deno.test("a token file, a client certificate and key, and a CA file that only the user may read still work", async () => {
  const manager = await startLabManager();
  const double = await startDouble();
  const dir = await scratch();
  try {
    const ca = await nobodysFile(`${dir}/ca.crt`, await Deno.readTextFile(`${double.dir}/ca.crt`));
    const token = await nobodysFile(`${dir}/token`, `${await doubleToken(double)}\n`);
    const cert = await nobodysFile(`${dir}/client.crt`, await Deno.readTextFile(`${double.dir}/client.crt`));
    const key = await nobodysFile(`${dir}/client.key`, await Deno.readTextFile(`${double.dir}/client.key`));
    const configs = [
      await kubeconfig(double, `${dir}/token-config`, { "token-file": token }, { "certificate-authority": ca }),
      await kubeconfig(double, `${dir}/cert-config`, { "client-certificate": cert, "client-key": key }, {
        "certificate-authority": ca,
      }),
    ];
    for (const config of configs) {
      const c = await nobodyTp(connectArgs(config), dir);
      assert.equal(c.code, 0, `${config}: ${c.stderr}`);
      assert.match(c.stderr, /starting it with sudo/);
      assert.equal((await nobodyTp(["quit"], dir)).code, 0);
    }
  } finally {
    await forceQuit();
    await double.stop();
    await manager.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a kubeconfig root could read but the user who ran sudo cannot is refused: root does not read it", async () => {
  await ensureLab();
  const dir = await scratch();
  const closed = `${dir}/root-only`;
  try {
    await Deno.mkdir(closed, { mode: 0o700 });
    await Deno.chmod(closed, 0o700);
    const config = `${closed}/config`;
    // Were root to read it, tp would go on to a port where nothing listens, in the lab's workstation namespace.
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:9" } }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [{ name: "lab", context: { cluster: "c", user: "u" } }],
        "current-context": "lab",
      }),
    );
    // `sudo tp connect`, and the daemon itself, which resolves the kubeconfig only when it dials.
    for (const extra of [[], ["--foreground"]]) {
      const r = await asNobody(
        [
          "sudo",
          "--non-interactive",
          "--preserve-env=DENO_DIR,TP_STATE_DIR",
          ...tpArgv([...connectArgs(config), ...extra]),
        ],
        { stateDir: `${dir}/state`, scratch: dir, sudo: true, netns: LAB.namespaces.workstation },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`cannot read kubeconfig "${config}" as nobody \\(uid ${NOBODY}\\): permission denied`),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("when the daemon reconnects, the exec plugin runs again as the user: a fresh credential, theirs", async () => {
  let manager = await startLabManager();
  const double = await startDouble();
  const dir = await scratch();
  const runs = `${dir}/runs`;
  try {
    await nobodysFile(runs, "");
    const plugin = await nobodysFile(
      `${dir}/plugin.sh`,
      `#!/bin/sh\nid -u >> ${runs}\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",` +
        `"status":{"token":"${await doubleToken(double)}","expirationTimestamp":"2099-01-01T00:00:00Z"}}'\n`,
      0o700,
    );
    const config = await kubeconfig(double, `${dir}/config`, {
      exec: { apiVersion: "client.authentication.k8s.io/v1", command: plugin, args: [], interactiveMode: "Never" },
    });
    const c = await nobodyTp(connectArgs(config), dir);
    assert.equal(c.code, 0, c.stderr);
    const before = (await Deno.readTextFile(runs)).trim().split("\n");
    assert.ok(before.length >= 1);
    await manager.stop();
    manager = await startLabManager();
    let st: { manager: { state: string; reconnects: number } } | undefined;
    for (let i = 0; i < 150; i++) {
      st = JSON.parse((await tp(["status", "-o", "json"])).stdout);
      if (st!.manager.state === "connected" && st!.manager.reconnects >= 1) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(st!.manager.state, "connected");
    assert.ok(st!.manager.reconnects >= 1);
    const after = (await Deno.readTextFile(runs)).trim().split("\n");
    assert.ok(after.length > before.length, `the plugin ran ${after.length} times, as before the reconnect`);
    assert.deepEqual([...new Set(after)], [String(NOBODY)], "every run of the plugin was nobody's");
  } finally {
    await forceQuit();
    await double.stop();
    await manager.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
