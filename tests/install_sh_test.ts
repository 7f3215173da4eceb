/**
 * install.sh against a fake release (an executable per OS and CPU, and SHA256SUMS) served over HTTP by the test
 * (TP_RELEASE_URL): the right asset, a checksum mismatch refused with nothing installed, an upgrade in place, and an
 * install through sudo (a real sudo, for the user nobody) that leaves root's file with mode 0755.
 */
import assert from "node:assert/strict";
import { exec, LAB, requireRoot, requireTools, ROOT } from "./lab.ts";
import { NOBODY } from "./as_user.ts";

const ASSETS = ["tp-linux-x86_64", "tp-linux-aarch64", "tp-darwin-x86_64", "tp-darwin-aarch64"];

/** This machine's asset, named as install.sh names it. */
function thisAsset(): string {
  const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
  return `tp-${Deno.build.os}-${arch}`;
}

/** A stand-in for tp's executable: a script whose `version` names its release and asset. */
const fakeTp = (release: string, asset: string) => `#!/bin/sh\necho "tp ${release} (${asset})"\n`;

async function sha256(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface FakeRelease {
  url: string;
  /** Paths requested so far. */
  requests: string[];
  /** Serves this release from now on; `corrupt` makes SHA256SUMS disagree with this machine's asset. */
  publish(release: string, opts?: { corrupt?: boolean }): Promise<void>;
  close(): Promise<void>;
}

function fakeRelease(): FakeRelease {
  let files = new Map<string, string>();
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const body = files.get(path.replace(/^\/download\//, ""));
    return body === undefined ? new Response("not found", { status: 404 }) : new Response(body);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/download`,
    requests,
    async publish(release, opts = {}) {
      const next = new Map<string, string>();
      const sums: string[] = [];
      for (const a of ASSETS) {
        next.set(a, fakeTp(release, a));
        const sum = await sha256(opts.corrupt && a === thisAsset() ? "something else" : fakeTp(release, a));
        sums.push(`${sum}  ${a}`);
      }
      next.set("SHA256SUMS", sums.join("\n") + "\n");
      files = next;
    },
    close: () => server.shutdown(),
  };
}

const installSh = (release: FakeRelease, dir: string) =>
  exec(["sh", `${ROOT}/install.sh`], {
    timeoutMs: 30_000,
    env: { ...Deno.env.toObject(), TP_RELEASE_URL: release.url, TP_INSTALL_DIR: dir },
  });

Deno.test("install.sh installs this OS and CPU's executable, mode 0755, and upgrades it in place", async () => {
  requireTools("curl", "sha256sum");
  const release = fakeRelease();
  const dir = await Deno.makeTempDir({ prefix: "tp-install-sh-" });
  try {
    await release.publish("1.0.0");
    const first = await installSh(release, dir);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`tp: installed tp 1\\.0\\.0 \\(${thisAsset()}\\)`));
    assert.deepEqual(release.requests, [`/download/${thisAsset()}`, "/download/SHA256SUMS"]);
    assert.equal((await Deno.stat(`${dir}/tp`)).mode! & 0o777, 0o755);

    await release.publish("1.1.0");
    const again = await installSh(release, dir);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`tp: installed tp 1\\.1\\.0 \\(${thisAsset()}\\)`));
    assert.equal(await Deno.readTextFile(`${dir}/tp`), fakeTp("1.1.0", thisAsset()));
    assert.deepEqual(Array.from(Deno.readDirSync(dir), (e) => e.name), ["tp"]);
  } finally {
    await release.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install.sh refuses an executable whose checksum does not match, and installs nothing", async () => {
  requireTools("curl", "sha256sum");
  const release = fakeRelease();
  const dir = await Deno.makeTempDir({ prefix: "tp-install-sh-" });
  try {
    await release.publish("1.0.0", { corrupt: true });
    const fresh = await installSh(release, dir);
    assert.equal(fresh.code, 1);
    assert.match(fresh.stderr, new RegExp(`tp: checksum mismatch for ${thisAsset()}: not installed`));
    assert.deepEqual(Array.from(Deno.readDirSync(dir)), []);
    // Over an installed tp, a bad download leaves the old one as it was.
    await release.publish("1.0.0");
    assert.equal((await installSh(release, dir)).code, 0);
    await release.publish("2.0.0", { corrupt: true });
    assert.equal((await installSh(release, dir)).code, 1);
    assert.equal(await Deno.readTextFile(`${dir}/tp`), fakeTp("1.0.0", thisAsset()));
  } finally {
    await release.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install.sh run by a user installs through sudo into root's directory a file root owns, mode 0755", async () => {
  requireRoot();
  requireTools("curl", "sha256sum", "sudo", "visudo", "setpriv");
  const release = fakeRelease();
  const dir = `/run/tp-install-test-${LAB.id}/bin`; // under /run: no other user can put anything on this path
  // A real sudo, allowed to nobody for exactly the command install.sh runs (sudoers regular expression), for the
  // length of this test. visudo checks the rule before it is put in place.
  const rule = `/etc/sudoers.d/tp-install-test-${LAB.id}`;
  const draft = await Deno.makeTempFile({ prefix: "tp-sudoers-" });
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    await Deno.writeTextFile(
      draft,
      `nobody ALL=(root) NOPASSWD: /usr/bin/install ^-m 0755 /tmp/tmp[.][A-Za-z0-9]+/${thisAsset()} ${dir}/tp$\n`,
    );
    const check = await exec(["visudo", "-c", "-q", "-f", draft]);
    assert.equal(check.code, 0, `visudo refused the test's rule: ${check.stdout}${check.stderr}`);
    await Deno.chmod(draft, 0o440);
    await Deno.rename(draft, rule);
    await release.publish("1.0.0");
    const r = await exec([
      "setpriv",
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "--reset-env",
      "/usr/bin/env",
      `TP_RELEASE_URL=${release.url}`,
      `TP_INSTALL_DIR=${dir}`,
      "sh",
      "-c",
      `sh < '${ROOT}/install.sh'`, // as `curl ... | sh` runs it
    ], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`tp: installing to ${dir} with sudo\ntp: installed tp 1\\.0\\.0`));
    const st = await Deno.stat(`${dir}/tp`);
    assert.equal(st.uid, 0, "root owns the installed tp");
    assert.equal(st.gid, 0);
    assert.equal(st.mode! & 0o7777, 0o755);
  } finally {
    await Deno.remove(rule).catch(() => {});
    await Deno.remove(draft).catch(() => {});
    await release.close();
    await Deno.remove(`/run/tp-install-test-${LAB.id}`, { recursive: true }).catch(() => {});
  }
});
