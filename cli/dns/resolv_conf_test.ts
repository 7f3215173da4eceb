import assert from "node:assert/strict";
import {
  applyResolvConf,
  isTornWrite,
  parseResolvConf,
  repairResolvConf,
  restoreResolvConf,
  rewriteResolvConf,
} from "./resolv_conf.ts";

const ORIGINAL = "# from DHCP\ndomain corp.example\nnameserver 198.18.2.53\nnameserver 198.18.2.54 # second\n" +
  "search home.test corp.example\noptions ndots:2 timeout:1\n";
const SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"];

Deno.test("parseResolvConf() reads nameservers, the last search or domain line, and options", () => {
  assert.deepEqual(parseResolvConf(ORIGINAL), {
    nameservers: ["198.18.2.53", "198.18.2.54"],
    search: ["home.test", "corp.example"],
    options: ["ndots:2", "timeout:1"],
  });
  assert.deepEqual(parseResolvConf("search a b\ndomain c\n").search, ["c"]);
  assert.deepEqual(parseResolvConf("; nothing\n").nameservers, []);
});

Deno.test("rewriteResolvConf() puts tp's nameserver only and its search domains first, keeping the rest", () => {
  const text = rewriteResolvConf(ORIGINAL, { dnsAddress: "198.19.255.53", searchDomains: SEARCH, backupPath: "/x" });
  const conf = parseResolvConf(text);
  assert.deepEqual(conf.nameservers, ["198.19.255.53"]);
  assert.deepEqual(conf.search, [...SEARCH, "home.test", "corp.example"]);
  assert.deepEqual(conf.options, ["ndots:2", "timeout:1"]);
  assert.match(text, /^# Written by tp/);
  assert.match(text, /# from DHCP/);
  assert.match(text, /# nameserver 198\.18\.2\.53 {2}\(tp forwards to it\)/);
  const empty = parseResolvConf(
    rewriteResolvConf("", { dnsAddress: "198.19.255.53", searchDomains: SEARCH, backupPath: "/x" }),
  );
  assert.deepEqual(empty, { nameservers: ["198.19.255.53"], search: SEARCH, options: [] });
});

async function withFiles(fn: (path: string, stateDir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "tp-dns-" });
  try {
    await Deno.writeTextFile(`${dir}/resolv.conf`, ORIGINAL);
    await fn(`${dir}/resolv.conf`, `${dir}/state`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("applyResolvConf() rewrites the same inode and restoreResolvConf() brings back every byte", async () => {
  await withFiles(async (path, stateDir) => {
    const ino = (await Deno.stat(path)).ino;
    const r = await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH });
    assert.deepEqual(r.upstreams, ["198.18.2.53", "198.18.2.54"]);
    assert.equal(r.repaired, null);
    assert.equal((await Deno.stat(path)).ino, ino);
    assert.equal(await Deno.readTextFile(`${stateDir}/resolv.conf.orig`), ORIGINAL);
    assert.deepEqual(parseResolvConf(await Deno.readTextFile(path)).nameservers, ["198.19.255.53"]);
    const back = await restoreResolvConf({ path, stateDir });
    assert.equal(back.action, "restored");
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
    assert.equal((await Deno.stat(path)).ino, ino);
    assert.deepEqual([...Deno.readDirSync(stateDir)], []);
    assert.equal((await restoreResolvConf({ path, stateDir })).action, "nothing-to-restore");
  });
});

Deno.test("repairResolvConf() restores after a crashed tp and leaves a running one alone", async () => {
  await withFiles(async (path, stateDir) => {
    await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH, pid: 4242 });
    assert.equal(await repairResolvConf(stateDir, { path, isRunning: () => true }), null);
    assert.notEqual(await Deno.readTextFile(path), ORIGINAL);
    const said = await repairResolvConf(stateDir, { path, isRunning: () => false });
    assert.match(said!, /tp found DNS settings left by a tp that is gone: restored the original .*pid 4242/);
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
    assert.equal(await repairResolvConf(stateDir, { path }), null);
  });
});

Deno.test("applyResolvConf() repairs a crashed tp's change first, then saves the true original", async () => {
  await withFiles(async (path, stateDir) => {
    // pid 2^22+1 is above Linux's pid_max: certainly gone.
    await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH, pid: 4194305 });
    const r = await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.54", searchDomains: SEARCH });
    assert.match(r.repaired!, /restored the original/);
    assert.deepEqual(r.upstreams, ["198.18.2.53", "198.18.2.54"]);
    assert.equal(await Deno.readTextFile(`${stateDir}/resolv.conf.orig`), ORIGINAL);
    await restoreResolvConf({ path, stateDir });
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
  });
});

Deno.test("restoreResolvConf() keeps a change someone else made after tp, and the backup", async () => {
  await withFiles(async (path, stateDir) => {
    await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH });
    await Deno.writeTextFile(path, "nameserver 198.18.7.7\n");
    const r = await restoreResolvConf({ path, stateDir });
    assert.equal(r.action, "kept-foreign-change");
    assert.equal(await Deno.readTextFile(path), "nameserver 198.18.7.7\n");
    assert.equal(await Deno.readTextFile(`${stateDir}/resolv.conf.orig`), ORIGINAL);
  });
});

Deno.test("applyResolvConf() refuses when another running tp manages the file", async () => {
  await withFiles(async (path, stateDir) => {
    // pid 1 always runs.
    await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH, pid: 1 });
    await assert.rejects(
      applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH }),
      /already managed by tp \(pid 1\)/,
    );
    await restoreResolvConf({ path, stateDir }, { isRunning: () => false });
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
  });
});

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("isTornWrite() knows the old, the new, and the new's first bytes over the old's rest, and nothing else", () => {
  const from = enc("nameserver 198.18.2.53\n"), to = enc("# tp\nnameserver 198.19.0.255\nsearch a b\n");
  for (let k = 0; k <= to.length; k++) {
    const torn = new Uint8Array(Math.max(from.length, k));
    torn.set(from);
    torn.set(to.subarray(0, k));
    assert.ok(isTornWrite(torn, from, to), `k=${k}`);
  }
  assert.ok(isTornWrite(from, from, to) && isTornWrite(to, from, to));
  assert.ok(isTornWrite(enc("nameserver 198.18.2.53\n"), to, from), "the shorter over the longer, not yet cut");
  assert.ok(!isTornWrite(enc("nameserver 198.18.7.7\n"), from, to), "someone else's file");
  assert.ok(!isTornWrite(enc(""), from, to));
  assert.ok(!isTornWrite(enc("# tp\nnameserver 198.18.2.53\n"), from, to), "the new's start, then a foreign rest");
});

Deno.test("restoreResolvConf() restores after a crash cut tp's write short, or left the file empty (an older tp)", async () => {
  for (const crash of ["torn", "empty", "untouched"] as const) {
    await withFiles(async (path, stateDir) => {
      await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.255.53", searchDomains: SEARCH, pid: 4194305 });
      const written = await Deno.readFile(path);
      const torn = enc(ORIGINAL);
      torn.set(written.subarray(0, 20));
      const left = { torn, empty: new Uint8Array(), untouched: enc(ORIGINAL) }[crash];
      await Deno.writeFile(path, left);
      const said = await repairResolvConf(stateDir, { path });
      assert.match(said!, crash === "untouched" ? /still held its original content/ : /restored the original/, crash);
      assert.equal(await Deno.readTextFile(path), ORIGINAL, crash);
      assert.deepEqual([...Deno.readDirSync(stateDir)], [], crash);
    });
  }
});
