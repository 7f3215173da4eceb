import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { helperCommand, UserCredentials } from "./as_user.ts";
import { K8sError } from "./errors.ts";
import { KUBE_AS_USER_COMMAND } from "./options.ts";
import type { ResolvedCredential } from "./resolved.ts";
import { parseHelperReply } from "./resolved.ts";

const who = { name: "dev", uid: 1000, gid: 1001, home: "/home/dev" };

Deno.test("helperCommand() runs tp as the user who ran sudo, with their HOME and without tp's token", () => {
  const cmd = helperCommand(
    who,
    { kubeconfig: "/home/dev/k", context: "lab" },
    { PATH: "/usr/bin", HOME: "/root", TP_TOKEN: "secret", SUDO_UID: "1000", KUBECONFIG: "/a:/b", DENO_DIR: "/d" },
    ["/usr/local/bin/tp"],
  );
  assert.deepEqual(cmd.argv, [
    "setpriv",
    "--reuid=1000",
    "--regid=1001",
    "--init-groups",
    "--",
    "timeout",
    "--kill-after=5",
    "120",
    "/usr/local/bin/tp",
    KUBE_AS_USER_COMMAND,
    JSON.stringify({ kubeconfig: "/home/dev/k", context: "lab" }),
  ]);
  assert.deepEqual(cmd.env, {
    PATH: "/usr/bin",
    HOME: "/home/dev",
    USER: "dev",
    LOGNAME: "dev",
    KUBECONFIG: "/a:/b",
    DENO_DIR: "/d",
  });
});

Deno.test("UserCredentials keeps a credential until 10 s before it expires, then fetches one, once for all callers", async () => {
  let now = Date.parse("2030-01-01T00:00:00Z");
  const cred = (token: string, expires?: string): ResolvedCredential => ({
    headers: { Authorization: `Bearer ${token}` },
    ...(expires ? { expires } : {}),
  });
  let fetches = 0;
  let release = () => {};
  const fetch = async () => {
    fetches++;
    await new Promise<void>((r) => (release = r));
    return cred(`t${fetches + 1}`, "2030-01-01T01:00:00Z");
  };
  const c = new UserCredentials(cred("t1", "2030-01-01T00:01:00Z"), fetch, () => now);
  const header = async (p = c.credential()) => (await p).headers["Authorization"];
  assert.equal(await header(), "Bearer t1");
  now += 49_000;
  assert.equal(await header(), "Bearer t1");
  now += 1_000;
  const [a, b] = [c.credential(), c.credential()];
  await Promise.resolve();
  release();
  assert.deepEqual([await header(a), await header(b)], ["Bearer t2", "Bearer t2"]);
  assert.equal(fetches, 1);
  const forever = new UserCredentials(cred("static"), () => Promise.reject(new Error("never")), () => now);
  now += 10 * 365 * 86400_000;
  assert.equal(await header(forever.credential()), "Bearer static");
});

Deno.test("UserCredentials sets the headers, client certificate and key of client-node's options", async () => {
  const c = new UserCredentials(
    { headers: { Authorization: "Bearer x" }, certData: btoa("CERT"), keyData: btoa("KEY") },
    () => Promise.reject(new Error("never")),
  );
  const opts: { headers?: Record<string, string>; cert?: string | Buffer; key?: string | Buffer } = {
    headers: { Accept: "a" },
  };
  assert.ok(c.isAuthProvider({ name: "user", authProvider: { name: "tp-as-user" } }));
  assert.ok(!c.isAuthProvider({ name: "user", authProvider: { name: "gcp" } }));
  await c.applyAuthentication({ name: "user" }, opts);
  assert.deepEqual(opts.headers, { Accept: "a", Authorization: "Bearer x" });
  assert.equal(String(opts.cert), "CERT");
  assert.equal(String(opts.key), "KEY");
});

Deno.test("parseHelperReply() throws the helper's K8sError, and refuses a header that would add a line", () => {
  assert.throws(
    () => parseHelperReply(JSON.stringify({ error: { kind: "unknown-context", message: "no context x" } })),
    (e) => e instanceof K8sError && e.kind === "unknown-context" && e.message === "no context x",
  );
  const ok = {
    context: "lab",
    server: "https://127.0.0.1:6443",
    namespace: "default",
    managerNamespace: "tp",
    files: ["/k"],
    auth: "bearer token",
    cluster: { skipTLSVerify: false },
    credential: { headers: { Authorization: "Bearer x" } },
  };
  assert.equal(parseHelperReply(JSON.stringify({ ok })).credential.headers["Authorization"], "Bearer x");
  const bad = { ...ok, credential: { headers: { Authorization: "Bearer x\r\nX-Evil: 1" } } };
  assert.throws(() => parseHelperReply(JSON.stringify({ ok: bad })), SyntaxError);
  assert.throws(() => parseHelperReply("not json"), SyntaxError);
  assert.throws(() => parseHelperReply(JSON.stringify({ ok: { ...ok, server: "file:///etc/x" } })), SyntaxError);
});
