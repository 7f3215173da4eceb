import assert from "node:assert/strict";
import { memoryByteStreamPair } from "../proto/byte_stream_memory.ts";
import { findSftpServer, serveSftp, sftpProblem, SftpServerMissingError } from "./sftp.ts";

Deno.test("findSftpServer() finds OpenSSH's sftp-server (openssh-sftp-server, installed by scripts/install_deps)", () => {
  assert.match(findSftpServer(), /\/sftp-server$/);
});

Deno.test("serveSftp() without an sftp-server resets the stream with the fix and throws it", async () => {
  const [agent, ws] = memoryByteStreamPair();
  assert.throws(() => serveSftp(agent, { root: "/", sftpServer: "/nonexistent/sftp-server" }), SftpServerMissingError);
  await assert.rejects(ws.read(), /apt-get install openssh-sftp-server/);
});

Deno.test("serveSftp() with a root that is not a directory resets the stream saying so, and how to fix it", async () => {
  const [agent, ws] = memoryByteStreamPair();
  assert.throws(() => serveSftp(agent, { root: "/nonexistent/volumes" }), /cannot serve volumes from/);
  await assert.rejects(ws.read(), /"\/nonexistent\/volumes": no such directory; start tp agent with --volume-root/);
});

Deno.test("sftpProblem() names the fix for a missing root, a root that is a file, and no sftp-server", () => {
  assert.match(sftpProblem({ root: "/nonexistent/volumes" })!, /no such directory; .*--volume-root/);
  assert.match(sftpProblem({ root: "/etc/hostname" })!, /not a directory; .*TP_AGENT_VOLUME_ROOT/);
  assert.equal(sftpProblem({ root: "/" }), undefined);
  assert.equal(
    sftpProblem({ root: "/", sftpServer: "/given/by/the/caller" }),
    undefined,
    "a given program is not looked up",
  );
});

Deno.test("serveSftp() answers an SFTP INIT with its VERSION and ends when the workstation half-closes", async () => {
  const [agent, ws] = memoryByteStreamPair();
  const session = serveSftp(agent, { root: "/" });
  // SSH_FXP_INIT (type 1), version 3: uint32 length 5, byte 1, uint32 3 (draft-ietf-secsh-filexfer-02 section 4).
  ws.write(new Uint8Array([0, 0, 0, 5, 1, 0, 0, 0, 3]));
  const reply = (await ws.read())!;
  assert.equal(reply[4], 2, "SSH_FXP_VERSION");
  ws.closeWrite();
  for (let c = await ws.read(); c; c = await ws.read()) { /* extensions, if split */ }
  const end = await session.ended;
  assert.equal(end.stream, "closed");
  assert.equal(end.status.code, 0);
});
