import assert from "node:assert/strict";
import { mountAt, mountOption, parseMountinfo } from "./mountinfo.ts";

// Captured from this machine's /proc/self/mountinfo with a tp mount (the last line's path holds a space).
const captured = [
  "22 27 0:21 / /proc rw,relatime - proc proc rw",
  "27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw,discard",
  "46 27 0:40 / /tmp/vexp/mnt rw,nosuid,nodev,relatime - fuse.sshfs tp.exp: rw,user_id=65534,group_id=65534",
  "47 27 0:41 / /tmp/with\\040space rw,nosuid,nodev,relatime - fuse.sshfs tp.b: rw,user_id=0,group_id=0",
].join("\n") + "\n";

Deno.test("parseMountinfo() reads each field of captured lines, optional fields included", () => {
  const { entries, malformed } = parseMountinfo(captured);
  assert.equal(malformed, 0);
  assert.equal(entries.length, 4);
  assert.deepEqual(entries[1], {
    id: 27,
    parentId: 1,
    device: "254:0",
    mountPoint: "/",
    options: "rw,relatime",
    fstype: "ext4",
    source: "/dev/vda",
    superOptions: "rw,discard",
  });
  assert.equal(entries[2]!.fstype, "fuse.sshfs");
  assert.equal(entries[2]!.source, "tp.exp:");
  assert.equal(mountOption(entries[2]!.superOptions, "user_id"), "65534");
});

Deno.test("parseMountinfo() undoes octal escapes in mount points", () => {
  assert.equal(mountAt("/tmp/with space", parseMountinfo(captured).entries)?.source, "tp.b:");
});

Deno.test("parseMountinfo() skips and counts a line without the separator", () => {
  const { entries, malformed } = parseMountinfo("1 2 0:1 / /x rw shared:1\n" + captured);
  assert.equal(malformed, 1);
  assert.equal(entries.length, 4);
});
