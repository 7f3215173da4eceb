import assert from "node:assert/strict";
import { checkResolvConf, checkResolvedLink, linkDnsAddresses, parseResolvectlDns } from "./system_resolver.ts";

Deno.test("checkResolvConf() reads the file as it is: tp's nameserver first, someone else's, or none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tp-sysres-" });
  try {
    const path = `${dir}/resolv.conf`;
    await Deno.writeTextFile(path, "# tp\nnameserver 198.19.0.255\nsearch svc.cluster.local\n");
    assert.deepEqual(await checkResolvConf(path, "198.19.0.255"), {
      pointsAtTp: true,
      detail: `${path} names tp's 198.19.0.255 first`,
    });
    await Deno.writeTextFile(path, "nameserver 198.18.2.54\nnameserver 198.19.0.255\n");
    assert.deepEqual(await checkResolvConf(path, "198.19.0.255"), {
      pointsAtTp: false,
      detail: `${path} names 198.18.2.54, 198.19.0.255, not tp's 198.19.0.255`,
    });
    await Deno.writeTextFile(path, "");
    assert.match((await checkResolvConf(path, "198.19.0.255")).detail, /names no nameserver/);
    await Deno.remove(path);
    const gone = await checkResolvConf(path, "198.19.0.255");
    assert.equal(gone.pointsAtTp, false);
    assert.match(gone.detail, /^cannot read .*resolv\.conf: No such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("linkDnsAddresses() reads a Link's DNS property, a(iay), IPv4 and IPv6", () => {
  const v6 = Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 5, ...new Array(9).fill(0), 0x10]);
  assert.deepEqual(linkDnsAddresses([[2, Uint8Array.from([198, 19, 0, 255])], [10, v6], "junk"]), [
    "198.19.0.255",
    "2001:db8:5:0:0:0:0:10",
  ]);
  assert.deepEqual(linkDnsAddresses(undefined), []);
});

Deno.test("parseResolvectlDns() reads `resolvectl dns LINK`'s line", () => {
  assert.deepEqual(parseResolvectlDns("Link 7 (tp0): 198.19.0.255 fe80::1%tp0\n"), ["198.19.0.255", "fe80::1"]);
  assert.deepEqual(parseResolvectlDns("Link 7 (tp0):\n"), []);
});

Deno.test("checkResolvedLink() asks resolvectl when tp configured the link with it (a test double)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tp-sysres-" });
  try {
    // A TEST DOUBLE for resolvectl: prints what the real one prints for `resolvectl dns tp0`.
    const fake = `${dir}/resolvectl`;
    await Deno.writeTextFile(fake, `#!/bin/sh\necho "Link 7 ($2): $(cat ${dir}/servers)"\n`);
    await Deno.chmod(fake, 0o755);
    await Deno.writeTextFile(`${dir}/servers`, "2001:db8:5::10");
    const yes = await checkResolvedLink("tp0", "2001:db8:5:0::10", { resolvectl: fake });
    assert.deepEqual(yes.pointsAtTp, true, yes.detail);
    await Deno.writeTextFile(`${dir}/servers`, "");
    assert.deepEqual(await checkResolvedLink("tp0", "198.19.0.255", { resolvectl: fake }), {
      pointsAtTp: false,
      detail: "systemd-resolved's DNS servers for tp0 are none, not tp's 198.19.0.255",
    });
    const none = await checkResolvedLink("tp0", "198.19.0.255", { busAddress: `unix:path=${dir}/no-bus` });
    assert.equal(none.pointsAtTp, false);
    assert.match(none.detail, /^cannot ask systemd-resolved about tp0: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
