import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { resolvedTarget } from "./as_user.ts";
import { resolveKube } from "./resolve.ts";
import { parseHelperReply } from "./resolved.ts";
import { openPortForward } from "./portforward.ts";
import { fixture, testPki, TOKEN } from "../tests/k8s_fixture.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Opens a port-forward with root's target built from `r` (as root builds it under sudo) and closes it. */
async function connectsAs(r: Awaited<ReturnType<typeof resolveKube>>): Promise<void> {
  const t = resolvedTarget(parseHelperReply(JSON.stringify({ ok: r })), () => Promise.reject(new Error("no refresh")));
  const s = await openPortForward(t, "tp-manager-6d5f", 8081);
  s.destroy();
}

Deno.test("resolveKube() inlines the CA, client certificate and key files: root's config names no file", async () => {
  const f = await fixture({ authorize: (a) => a.user === "carol" });
  try {
    const cert = testPki().clientCert("carol");
    const path = f.kubeconfig({ clientCert: cert, caFile: true });
    const r = await resolveKube({ kubeconfig: path });
    assert.equal(r.cluster.caData, b64(testPki().caCert));
    assert.equal(r.credential.certData, b64(cert.cert));
    assert.equal(r.credential.keyData, b64(cert.key));
    assert.equal(r.credential.expires, undefined);
    assert.deepEqual(r.files, [path]);
    const text = JSON.stringify({ ...r, files: [] });
    for (const file of [cert.certFile, cert.keyFile, testPki().caFile]) assert.ok(!text.includes(file), file);
    await connectsAs(r);
    assert.ok(f.double.requests.length > 0 && f.double.requests.every((q) => q.user === "carol"));
  } finally {
    await f.close();
  }
});

Deno.test("resolveKube() reads a token file (its newline is no part of the token)", async () => {
  const f = await fixture();
  try {
    Deno.writeTextFileSync(`${f.dir}/token`, `${TOKEN}\n`);
    const k = JSON.parse(Deno.readTextFileSync(f.kubeconfig()));
    k.users[0].user = { "token-file": `${f.dir}/token` };
    Deno.writeTextFileSync(`${f.dir}/config`, JSON.stringify(k));
    const r = await resolveKube({ kubeconfig: `${f.dir}/config` });
    assert.deepEqual(r.credential.headers, { Authorization: `Bearer ${TOKEN}` });
    await connectsAs(r);
  } finally {
    await f.close();
  }
});

Deno.test("resolveKube() runs an exec plugin and keeps its expirationTimestamp", async () => {
  const f = await fixture();
  try {
    const plugin = `${f.dir}/plugin.sh`;
    Deno.writeTextFileSync(
      plugin,
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",` +
        `"status":{"token":"${TOKEN}","expirationTimestamp":"2099-01-02T03:04:05Z"}}'\n`,
    );
    Deno.chmodSync(plugin, 0o755);
    const r = await resolveKube({ kubeconfig: f.kubeconfig({ exec: { command: plugin, args: [] } }) });
    assert.equal(r.credential.headers["Authorization"], `Bearer ${TOKEN}`);
    assert.equal(r.credential.expires, "2099-01-02T03:04:05.000Z");
    assert.equal(r.auth, `exec plugin "${plugin}"`);
  } finally {
    await f.close();
  }
});

Deno.test("resolveKube() runs a gcp auth-provider's cmd-path and keeps the expiry it reports", async () => {
  const f = await fixture();
  try {
    const cmd = `${f.dir}/gcloud.sh`;
    Deno.writeTextFileSync(
      cmd,
      `#!/bin/sh\necho "$1" > ${f.dir}/ran\necho '{"credential":{"access_token":"${TOKEN}",` +
        `"token_expiry":"2099-05-06T07:08:09Z"}}'\n`,
    );
    Deno.chmodSync(cmd, 0o755);
    const k = JSON.parse(Deno.readTextFileSync(f.kubeconfig()));
    k.users[0].user = {
      "auth-provider": {
        name: "gcp",
        config: {
          "cmd-path": cmd,
          "cmd-args": "config-helper",
          "token-key": "{.credential.access_token}",
          "expiry-key": "{.credential.token_expiry}",
        },
      },
    };
    Deno.writeTextFileSync(`${f.dir}/config`, JSON.stringify(k));
    const r = await resolveKube({ kubeconfig: `${f.dir}/config` });
    assert.equal(Deno.readTextFileSync(`${f.dir}/ran`), "config-helper\n");
    assert.equal(r.credential.headers["Authorization"], `Bearer ${TOKEN}`);
    assert.equal(r.credential.expires, "2099-05-06T07:08:09.000Z");
    assert.equal(r.auth, 'auth-provider "gcp"');
    await connectsAs(r);
  } finally {
    await f.close();
  }
});

Deno.test("resolveKube() takes a JWT's exp as the credential's expiry", async () => {
  const jwt = [{ alg: "none" }, { sub: "alice", exp: 4102444800 }].map((p) => b64(JSON.stringify(p))).join(".") + ".x";
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(
      `${dir}/config`,
      JSON.stringify({
        clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:6443" } }],
        users: [{ name: "u", user: { token: jwt } }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
        "current-context": "x",
      }),
    );
    const r = await resolveKube({ kubeconfig: `${dir}/config` });
    assert.equal(r.credential.expires, "2100-01-01T00:00:00.000Z");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
